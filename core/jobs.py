"""The job plumbing on django-q2: queues, enqueueing, retries with backoff, and the run record.

A job is a module-level function decorated with `@job(queue=...)`, enqueued by dotted path with
primitive arguments:

    @job(queue="analytics", retry=RetryPolicy(max_attempts=5))
    def aggregate_day(day: str) -> dict: ...

    enqueue("analytics.tasks.aggregate_day", "2024-03-10")

What the decorator adds around the body, in the worker:

- a `JobRun` row written when the job starts (and finished when it ends), with structured log
  lines carrying the same fields;
- retries: when the body raises a transient error and attempts remain, the next attempt is
  enqueued after an exponential backoff with jitter, through a one-off django-q `Schedule` on
  the job's cluster (django-q itself only redelivers after a fixed delay). The failed attempt is
  acknowledged (`ack_failures`), so the broker never delivers it again as well;
- redelivery after a worker died: django-q delivers an unacknowledged task again once its lock
  expires, but counts only attempts that saved a result, so a job that kills its worker would
  loop for ever. Each delivery here is a JobRun attempt; past the policy's maximum the job is
  given up and the staff are told once.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.exceptions import TimeoutException

logger = logging.getLogger("pastq.jobs")

RETRY_SCHEDULE_PREFIX = "pastq:retry:"
# A reserved keyword argument the plumbing adds and the job body never sees:
# {"chain": ..., "attempt": ...} on retries, {"queue": ...} when a job runs on another queue.
META_KWARG = "_job"


class TransientError(Exception):
    """Raise from a job for a failure worth retrying (a remote service down, a lock timeout)."""


def default_transient() -> tuple[type[BaseException], ...]:
    return (TransientError, OperationalError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    min(max_delay, base·2ⁿ⁻¹) seconds. `base_delay=None` takes PASTQ_RETRY_BASE_SECONDS."""

    max_attempts: int = 5
    base_delay: float | None = None
    max_delay: float = 3600.0
    transient: tuple[type[BaseException], ...] = field(default_factory=default_transient)

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        base = settings.PASTQ_RETRY_BASE_SECONDS if self.base_delay is None else self.base_delay
        ceiling = min(self.max_delay, base * 2 ** (failed_attempt - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transient)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class JobSpec:
    name: str
    queue: str
    retry: RetryPolicy
    func: Callable

    @property
    def time_limit(self) -> int:
        return settings.PASTQ_QUEUES[self.queue]["timeout"]

    def on_queue(self, queue: str | None) -> JobSpec:
        """The same job run on another queue (a schedule row may name one, e.g. heartbeats)."""
        if not queue or queue == self.queue:
            return self
        if queue not in settings.PASTQ_QUEUES:
            raise ValueError(f"Unknown queue {queue!r}")
        return JobSpec(name=self.name, queue=queue, retry=self.retry, func=self.func)


JOBS: dict[str, JobSpec] = {}


def job(*, queue: str, retry: RetryPolicy = RetryPolicy()):
    """Declare a task function a job of `queue`, with its retry policy."""
    if queue not in settings.PASTQ_QUEUES:
        raise ValueError(f"Unknown queue {queue!r}; queues: {', '.join(settings.PASTQ_QUEUES)}")

    def decorate(func):
        name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return _execute(JOBS[name], args, kwargs)

        JOBS[name] = JobSpec(name=name, queue=queue, retry=retry, func=func)
        wrapper.job_spec = JOBS[name]
        return wrapper

    return decorate


def job_spec(path: str) -> JobSpec:
    """The spec of a job by dotted path (importing its module registers it)."""
    if path not in JOBS:
        target = import_string(path)
        if not hasattr(target, "job_spec"):
            raise ValueError(f"{path} is not a job (decorate it with @core.jobs.job).")
    return JOBS[path]


# --- Routing --------------------------------------------------------------------------------


def cluster_for(queue: str) -> str | None:
    """The django-q cluster that serves a queue: itself with routing on; with routing off the
    one default cluster (None, which django-q reads as its own name)."""
    return queue if settings.PASTQ_QUEUE_ROUTING else None


def broker_key_for(queue: str) -> str:
    """The OrmQ `key` a queue's tasks are stored under."""
    return cluster_for(queue) or settings.PASTQ_CLUSTER


def task_options(spec: JobSpec) -> dict:
    """django-q options for one task of this job: its queue's cluster and time limit."""
    return {"cluster": cluster_for(spec.queue), "timeout": spec.time_limit, "group": spec.name}


def enqueue(path: str, *args, queue: str | None = None, **kwargs) -> str | None:
    """Queue a job by dotted path (on its own queue, or `queue`). Inside a transaction it is
    sent when the transaction commits (so the job never sees uncommitted rows, nor runs for a
    rolled-back change), and None is returned; otherwise the django-q task id."""
    from django_q.tasks import async_task

    spec = job_spec(path).on_queue(queue)
    if queue:
        kwargs[META_KWARG] = {"queue": queue}

    def send():
        return async_task(path, *args, q_options=task_options(spec), **kwargs)

    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(send)
        return None
    return send()


# --- Execution ------------------------------------------------------------------------------

_current_task: dict | None = None


def remember_current_task(sender, func=None, task=None, **kwargs):
    """django-q's pre_execute signal, in the worker process: the task being run (its id tells
    one delivery from another)."""
    global _current_task
    _current_task = task


def forget_current_task(sender, **kwargs):
    global _current_task
    _current_task = None


def _log(event: str, run, **extra) -> None:
    fields = {"event": event, "job": run.job, "queue": run.queue, "chain": run.chain,
              "attempt": run.attempt, "task_id": run.task_id, "outcome": run.outcome,
              "duration_ms": run.duration_ms, **extra}
    level = logging.ERROR if run.outcome in ("failed", "gave_up", "lost") else logging.INFO
    logger.log(level, " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "")),
               extra={"job_run": fields})


def _execute(spec: JobSpec, args: tuple, kwargs: dict):
    from core.models import JobRun

    meta = kwargs.pop(META_KWARG, None) or {}
    spec = spec.on_queue(meta.get("queue"))
    # The django-q task this worker is running, when it is this job (not a job body calling
    # another job's function directly).
    current = _current_task or {}
    task = current if current.get("func") == spec.name else {}
    task_id = task.get("id", "")
    now = timezone.now()

    # Earlier deliveries of this very task (one query; none in the common case): a worker
    # died running it, or another worker is running it now.
    earlier = list(JobRun.objects.filter(task_id=task_id)) if task_id else []
    if _is_duplicate_delivery(earlier, spec, now):
        logger.warning("event=duplicate job=%s task_id=%s: another worker is running it",
                       spec.name, task_id)
        return {"skipped": "duplicate delivery"}
    if earlier:
        chain, attempt = earlier[0].chain, max(r.attempt for r in earlier) + 1
    else:
        chain = meta.get("chain") or task_id or uuid.uuid4().hex
        attempt = meta.get("attempt", 1)
    base = dict(job=spec.name, queue=spec.queue, chain=chain, attempt=attempt, task_id=task_id,
                args=list(args), kwargs=kwargs, host=socket.gethostname(), pid=os.getpid(),
                enqueued_at=task.get("started"), started_at=now)

    if attempt > spec.retry.max_attempts:
        # Only a job whose worker died gets here: retries stop at the maximum by themselves.
        run = JobRun.objects.create(
            **base, outcome=JobRun.Outcome.GAVE_UP, finished_at=now, duration_ms=0,
            error=f"Gave up: delivered {attempt} times, at most {spec.retry.max_attempts} "
                  "allowed; earlier deliveries died with their worker.")
        _log("gave_up", run)
        _tell_staff_gave_up(run)
        return {"gave_up": True, "attempts": attempt - 1}

    try:
        run = JobRun.objects.create(**base)
    except IntegrityError:
        # Another delivery of the same chain claimed this attempt number first.
        logger.warning("event=duplicate job=%s chain=%s attempt=%s", spec.name, chain, attempt)
        return {"skipped": "duplicate delivery"}
    _log("started", run)

    try:
        result = spec.func(*args, **kwargs)
    except Exception as exc:
        _finish_failed(run, spec, exc, args, kwargs)
        raise
    except TimeoutException:
        # django-q raises it (a SystemExit) from SIGALRM at the time limit; the worker is
        # replaced after this. Not retried: a job that ran out of time once will again.
        _finish(run, JobRun.Outcome.FAILED,
                error=f"Timed out: exceeded its queue's time limit of {spec.time_limit}s.")
        _log("timed_out", run)
        raise
    _finish(run, JobRun.Outcome.SUCCEEDED)
    _log("finished", run)
    return result


def _is_duplicate_delivery(earlier: list, spec: JobSpec, now) -> bool:
    """Earlier deliveries of this task still marked running: if one is within its time limit
    another worker is on it (skip this one); otherwise its worker died (mark it lost)."""
    from core.models import JobRun

    # A redelivery comes only after the broker's lock expired (`retry`, several time limits),
    # by which time the guard has killed any delivery that ran past its limit. An earlier
    # delivery still "running" within its limit means two workers got the same task (a
    # misconfigured retry, clock skew between machines): leave it to that worker.
    grace = spec.time_limit + 5
    duplicate = False
    for run in earlier:
        if run.outcome != JobRun.Outcome.RUNNING:
            continue
        if (now - run.started_at).total_seconds() < grace and run.pid != os.getpid():
            duplicate = True
            continue
        run.outcome = JobRun.Outcome.LOST
        run.finished_at = now
        run.error = "The worker running it died, or its time limit passed with no result."
        run.save(update_fields=["outcome", "finished_at", "error"])
        _log("lost", run)
    return duplicate


def _finish(run, outcome, **fields) -> None:
    run.finished_at = timezone.now()
    run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    run.outcome = outcome
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()


def _finish_failed(run, spec: JobSpec, exc: Exception, args, kwargs) -> None:
    from core.models import JobRun

    error = "".join(traceback.format_exception(exc))[-8000:]
    if spec.retry.is_transient(exc) and run.attempt < spec.retry.max_attempts:
        delay = spec.retry.delay(run.attempt)
        retry_at = timezone.now() + timezone.timedelta(seconds=delay)
        _schedule_retry(spec, run, args, kwargs, retry_at)
        _finish(run, JobRun.Outcome.RETRYING, error=error, retry_delay_s=round(delay, 3),
                retry_at=retry_at)
        _log("retry_scheduled", run, retry_in_s=round(delay, 1))
        return
    gave_up = spec.retry.is_transient(exc)
    _finish(run, JobRun.Outcome.GAVE_UP if gave_up else JobRun.Outcome.FAILED, error=error)
    _log("failed", run, error=type(exc).__name__)
    if gave_up:
        _tell_staff_gave_up(run)


def _schedule_retry(spec: JobSpec, run, args, kwargs, retry_at) -> None:
    from django_q.models import Schedule

    retry_kwargs = {**kwargs, META_KWARG: {"chain": run.chain, "attempt": run.attempt + 1,
                                           "queue": spec.queue},
                    # django-q's scheduler passes q_options on to async_task: the time limit.
                    "q_options": {"timeout": spec.time_limit}}
    Schedule.objects.create(
        name=f"{RETRY_SCHEDULE_PREFIX}{run.chain[:16]}:{run.attempt + 1}"[:100],
        func=spec.name, args=repr(tuple(args)) if args else None, kwargs=repr(retry_kwargs),
        schedule_type=Schedule.ONCE, repeats=-1, next_run=retry_at,
        cluster=cluster_for(spec.queue),
    )


def _tell_staff_gave_up(run) -> None:
    from core.ops import alert_open

    alert_open(
        key=f"job-gave-up:{run.chain}",
        summary=f"Job {run.job} gave up after {run.attempt} attempts",
        detail=f"Queue: {run.queue}\nChain: {run.chain}\nArguments: {run.args} {run.kwargs}\n\n"
               f"{run.error}",
    )

