"""The job plumbing without a worker: policy, routing, records, retries, redelivery."""

import random

import pytest
from django.db import transaction
from django_q.models import OrmQ, Schedule

from core import jobs
from core.jobs import RetryPolicy, enqueue, job_spec
from core.models import JobRun

pytestmark = pytest.mark.django_db

NOOP = "core.tests.jobs_for_tests.noop"
FLAKY = "core.tests.jobs_for_tests.flaky"


def test_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    policy = RetryPolicy(base_delay=60, max_delay=600)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 60), (2, 120), (3, 240), (4, 480), (5, 600), (9, 600)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed
    settings.PASTQ_RETRY_BASE_SECONDS = 2
    assert 1 <= RetryPolicy().delay(1) <= 2


def test_job_on_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="Unknown queue"):
        jobs.job(queue="nowhere")


def test_enqueue_routes_to_the_one_cluster_by_default(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(NOOP, 1)
    row = OrmQ.objects.get()
    task_id = row.task["id"]
    row = OrmQ.objects.get()
    assert row.key == "pastq" and row.task["id"] == task_id
    assert row.task["timeout"] == job_spec(NOOP).time_limit
    assert row.task["group"] == NOOP


def test_enqueue_routes_to_the_job_queue_with_routing_on(
        settings, django_capture_on_commit_callbacks):
    settings.PASTQ_QUEUE_ROUTING = True
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(NOOP, 1)
        enqueue("core.tests.jobs_for_tests.session_insert_slowly", 1, "f", 0)
    assert sorted(OrmQ.objects.values_list("key", flat=True)) == ["analytics", "notifications"]


def test_enqueue_inside_a_transaction_waits_for_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        assert enqueue(NOOP, 1) is None
        assert not OrmQ.objects.exists()
    assert len(callbacks) == 1


def test_enqueue_rejects_a_function_that_is_not_a_job():
    with pytest.raises(ValueError, match="not a job"):
        enqueue("core.services.catalogue_load")


def _deliver(path, *args, task_id="t" * 32, **kwargs):
    """Run a job the way a worker does: django-q announces the task, then calls the function."""
    from django.utils.module_loading import import_string

    jobs.remember_current_task(None, task={"id": task_id, "func": path, "started": None})
    try:
        return import_string(path)(*args, **kwargs)
    finally:
        jobs.forget_current_task(None)


def test_a_run_is_recorded_from_start_to_end():
    assert _deliver(NOOP, 7) == {"value": 7}
    run = JobRun.objects.get()
    assert (run.job, run.queue, run.attempt, run.outcome) == (NOOP, "analytics", 1, "succeeded")
    assert run.chain == run.task_id == "t" * 32
    assert run.args == [7] and run.duration_ms is not None and run.finished_at


def test_transient_failure_schedules_a_delayed_retry_on_the_right_cluster(settings, caplog):
    settings.PASTQ_QUEUE_ROUTING = True
    with pytest.raises(jobs.TransientError):
        _deliver(FLAKY, "k-unit-1", 5)
    run = JobRun.objects.get()
    assert run.outcome == "retrying" and 30 <= run.retry_delay_s <= 60
    retry = Schedule.objects.get()
    assert retry.name.startswith("pastq:retry:") and retry.schedule_type == Schedule.ONCE
    assert retry.cluster == "analytics" and retry.func == FLAKY
    assert retry.next_run == run.retry_at
    assert "'_job': {'chain': '" + run.chain in retry.kwargs and "'attempt': 2" in retry.kwargs
    assert "event=retry_scheduled" in caplog.text and f"chain={run.chain}" in caplog.text


def test_retry_attempts_share_the_chain_and_stop_at_the_maximum(mailoutbox, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    chain = "c" * 32
    for attempt in (1, 2, 3):
        with pytest.raises(jobs.TransientError):
            _deliver(FLAKY, "k-unit-2", 9, task_id=f"{attempt}" * 32,
                     _job={"chain": chain, "attempt": attempt})
    outcomes = list(JobRun.objects.filter(chain=chain).order_by("attempt")
                    .values_list("attempt", "outcome"))
    assert outcomes == [(1, "retrying"), (2, "retrying"), (3, "gave_up")]
    assert Schedule.objects.count() == 2  # no retry after the last attempt
    assert len(mailoutbox) == 1 and "gave up after 3 attempts" in mailoutbox[0].subject


def test_permanent_failure_is_recorded_and_not_retried():
    with pytest.raises(ValueError):
        _deliver("core.tests.jobs_for_tests.broken")
    assert JobRun.objects.get().outcome == "failed"
    assert not Schedule.objects.exists()


def test_redelivery_after_a_dead_worker_marks_the_lost_run_and_runs_again():
    from django.utils import timezone

    JobRun.objects.create(job=NOOP, queue="analytics", chain="d" * 32, attempt=1,
                          task_id="d" * 32, started_at=timezone.now() - timezone.timedelta(
                              seconds=job_spec(NOOP).time_limit + 60), pid=999999)
    # noop allows one attempt: the redelivery is attempt 2, so it is given up, not run.
    result = _deliver(NOOP, 1, task_id="d" * 32)
    assert result == {"gave_up": True, "attempts": 1}
    assert list(JobRun.objects.order_by("attempt").values_list("outcome", flat=True)) == [
        "lost", "gave_up"]


def test_a_delivery_another_worker_is_still_running_is_skipped():
    from django.utils import timezone

    JobRun.objects.create(job=NOOP, queue="analytics", chain="e" * 32, attempt=1,
                          task_id="e" * 32, started_at=timezone.now(), pid=999999)
    assert _deliver(NOOP, 1, task_id="e" * 32) == {"skipped": "duplicate delivery"}
    assert JobRun.objects.get().outcome == "running"


def test_a_job_can_run_on_another_queue():
    _deliver("core.tasks.heartbeat", queue="analytics", _job={"queue": "analytics"})
    run = JobRun.objects.get()
    assert run.queue == "analytics"
    from core.models import QueueHeartbeat
    assert QueueHeartbeat.objects.get().queue == "analytics"


def test_the_run_record_costs_three_queries(django_assert_num_queries):
    # Look for earlier deliveries, insert the run, finish it: whatever the job does besides.
    with django_assert_num_queries(3):
        _deliver(NOOP, 1, task_id="f" * 32)
