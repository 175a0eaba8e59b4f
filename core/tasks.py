"""django-q entry points of the core app: thin, primitive arguments, a small dict back."""

import time

from core import processing
from core.ai.types import ProviderUnavailable
from core.jobs import RetryPolicy, enqueue, job, job_spec

PROCESSING_RETRY = RetryPolicy(max_attempts=6, max_delay=1800)


def _run(question_ids=None, steps=None) -> dict:
    # Leave the rest for the next run well inside the queue's time limit.
    budget = job_spec("core.tasks.process_pending_questions").time_limit * 0.6
    summary = processing.pending_process(
        steps=steps or processing.STEP_ORDER, question_ids=question_ids,
        deadline=time.monotonic() + budget)
    result = {"batches": summary.batches, "failed": summary.failed,
              **{step: r.done + r.skipped for step, r in summary.steps.items()}}
    if summary.quota_exhausted:  # the next scheduled run tries again; no alarm for a cap
        return {**result, "deferred": "a daily cap is reached; the steps stay pending"}
    if summary.transient_error:
        raise ProviderUnavailable(summary.transient_error)  # retried with backoff
    if summary.out_of_time:
        result["continued"] = enqueue("core.tasks.process_pending_questions")
    return result


@job(queue="question_processing", retry=PROCESSING_RETRY)
def process_pending_questions() -> dict:
    """Every 10 minutes: run every pending AI step (embedding, metadata, explanation, similar)
    in batches; with more work than fits its time, it queues itself again."""
    return _run()


@job(queue="question_processing", retry=PROCESSING_RETRY)
def process_question_batch(question_ids: list[int], steps: list[str] | None = None) -> dict:
    """The pending steps of these questions (admin actions, process_questions --async)."""
    return _run(question_ids=question_ids, steps=steps)

