"""The job plumbing without a worker: policy, enqueueing, run records, retries, redeliveries.

A delivery is simulated as django-q's worker makes it: the pre_execute signal announces the
task package, then the function is called (core.tests.conftest.deliver)."""

import datetime
import random

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ

from core import jobs
from core.jobs import RetryPolicy, enqueue, job_spec
from core.jobs.models import JobRun
from core.jobs.packages import PACKAGE_KEY
from core.tests.conftest import deliver
from maintenance.models import OpsAlert

pytestmark = pytest.mark.django_db

NOOP = "core.tests.jobs_for_tests.noop"
FLAKY = "core.tests.jobs_for_tests.flaky"
ECHO = "core.tests.jobs_for_tests.echo_options"


@pytest.fixture
def queued(django_capture_on_commit_callbacks):
    """enqueue(), with the test's transaction standing in for a commit: the row is stored."""

    def put(path, **options):
        with django_capture_on_commit_callbacks(execute=True):
            return enqueue(path, **options)

    return put


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


@pytest.mark.parametrize("routing", [False, True])
def test_tasks_are_stored_under_their_queue_in_both_routing_modes(settings, routing, queued):
    settings.PASTQ_QUEUE_ROUTING = routing
    queued(NOOP, args=[1])
    queued("core.tests.jobs_for_tests.session_insert_slowly", args=[1, "f", 0])
    rows = {row.key: row.task for row in OrmQ.objects.all()}
    assert set(rows) == {"analytics", "notifications"}
    assert rows["analytics"]["timeout"] == job_spec(NOOP).time_limit
    assert rows["analytics"]["group"] == NOOP and rows["analytics"]["args"] == (1,)


def test_enqueue_inside_a_transaction_waits_for_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        task_id = enqueue(NOOP, args=[1])
        assert not OrmQ.objects.exists()
    assert len(callbacks) == 1 and len(task_id) == 32


def test_enqueue_rejects_what_is_not_a_job_and_arguments_that_are_not_json():
    with pytest.raises(ValueError, match="not a job"):
        enqueue("core.services.catalogue_load")
    with pytest.raises(ValueError, match="cannot be imported"):
        enqueue("core.nowhere.nothing")
    with pytest.raises(ValueError, match="JSON"):
        enqueue(NOOP, args=[object()])
    assert not OrmQ.objects.exists()


def test_a_job_keeps_every_argument_named_like_a_plumbing_option(queued):
    """The job's arguments and the plumbing's options never share a namespace: django-q's
    async_task would take `timeout`, `hook`, `group`, `task_name`, ... for itself."""
    options = {name: f"value of {name}" for name in (
        "queue", "args", "kwargs", "path", "run_at", "q_options", "task_name", "hook", "group",
        "save", "sync", "cached", "ack_failure", "iter_count", "iter_cached", "chain", "broker",
        "cluster", "timeout", "pastq")}
    queued(ECHO, kwargs=options, queue="maintenance")
    package = OrmQ.objects.get().task
    assert package["kwargs"] == options
    assert package[PACKAGE_KEY]["queue"] == "maintenance"
    assert deliver(package) == options
    assert JobRun.objects.get().queue == "maintenance"


def test_a_run_is_recorded_from_start_to_end(queued):
    queued(NOOP, args=[7])
    assert deliver(OrmQ.objects.get().task) == {"value": 7}
    run = JobRun.objects.get()
    assert (run.job, run.queue, run.attempt, run.outcome) == (NOOP, "analytics", 1, "succeeded")
    assert run.chain == run.task_id and run.identity.startswith(f"call:{NOOP}:")
    assert run.args == [7] and run.duration_ms is not None and run.finished_at


def test_the_run_record_costs_four_queries(django_assert_num_queries):
    # Look for earlier deliveries, insert the run, finish it, resolve a matching alert.
    package = {"id": "f" * 32, "func": NOOP, "args": (1,), "kwargs": {}}
    with django_assert_num_queries(4):
        deliver(package)


def test_transient_failure_queues_a_delayed_retry_carrying_its_chain(
        caplog, queued, django_capture_on_commit_callbacks):
    queued(FLAKY, args=["k-unit-1", 5])
    first = OrmQ.objects.get()
    with pytest.raises(jobs.TransientError), django_capture_on_commit_callbacks(execute=True):
        deliver(first.task)
    run = JobRun.objects.get()
    assert run.outcome == "retrying" and 30 <= run.retry_delay_s <= 60
    retry = OrmQ.objects.exclude(pk=first.pk).get()
    assert retry.key == "analytics" and retry.lock == run.retry_at  # invisible until then
    meta = retry.task[PACKAGE_KEY]
    assert meta["chain"] == run.chain and meta["attempt"] == 2
    assert meta["identity"] == run.identity
    assert "event=retry_scheduled" in caplog.text and f"chain={run.chain}" in caplog.text


def test_retries_share_the_chain_stop_at_the_maximum_and_alert_once(
        mailoutbox, settings, queued, django_capture_on_commit_callbacks):
    settings.ADMINS = [("Ops", "ops@example.com")]
    queued(FLAKY, args=["k-unit-2", 9])
    for _ in range(3):
        package = OrmQ.objects.order_by("-id").first().task
        with pytest.raises(jobs.TransientError), \
                django_capture_on_commit_callbacks(execute=True):
            deliver(package)
    runs = list(JobRun.objects.order_by("attempt").values_list("attempt", "outcome", "chain"))
    assert [(a, o) for a, o, _ in runs] == [(1, "retrying"), (2, "retrying"), (3, "gave_up")]
    assert len({c for *_, c in runs}) == 1
    assert OrmQ.objects.count() == 3  # the two retries and the first delivery (not acked here)
    assert len(mailoutbox) == 1 and "gave up after 3 attempts" in mailoutbox[0].subject
    alert = OpsAlert.objects.get()
    assert alert.resolved_at is None and "k-unit-2" in alert.detail


def test_a_later_success_of_the_same_job_resolves_its_alert(settings, queued):
    queued("core.tests.jobs_for_tests.broken")
    with pytest.raises(ValueError):
        deliver(OrmQ.objects.get().task)
    alert = OpsAlert.objects.get()
    assert "failed (not retried)" in alert.summary and alert.resolved_at is None
    # Another job, or the same job with other arguments, leaves it open.
    deliver({"id": "a" * 32, "func": NOOP, "args": (1,), "kwargs": {}})
    assert OpsAlert.objects.get().resolved_at is None
    identity = JobRun.objects.get(job="core.tests.jobs_for_tests.broken").identity
    deliver({"id": "b" * 32, "func": NOOP, "args": (), "kwargs": {},
             PACKAGE_KEY: {"identity": identity}})
    alert.refresh_from_db()
    assert alert.resolved_at is not None and "succeeded" in alert.resolution


def test_runs_of_a_schedule_share_its_identity_whatever_their_arguments():
    for task_id, value in (("1" * 32, 1), ("2" * 32, 2)):
        deliver({"id": task_id, "func": NOOP, "args": (value,), "kwargs": {},
                 "group": "pastq:nightly"})
    assert set(JobRun.objects.values_list("identity", flat=True)) == {"schedule:pastq:nightly"}


def test_permanent_failure_is_recorded_and_not_retried(queued):
    queued("core.tests.jobs_for_tests.broken")
    with pytest.raises(ValueError):
        deliver(OrmQ.objects.get().task)
    assert JobRun.objects.get().outcome == "failed"
    assert OrmQ.objects.count() == 1  # the delivery itself; no retry queued


def _earlier_run(task_id, *, heartbeat_age_s, outcome="running", attempt=1, job=NOOP):
    now = timezone.now()
    return JobRun.objects.create(
        job=job, queue="analytics", chain=task_id, attempt=attempt, task_id=task_id,
        started_at=now - datetime.timedelta(seconds=600), outcome=outcome, pid=999999,
        heartbeat_at=now - datetime.timedelta(seconds=heartbeat_age_s))


def test_a_delivery_whose_lease_ran_out_is_lost_and_runs_again(settings):
    settings.PASTQ_LEASE_SECONDS = 45
    _earlier_run("d" * 32, heartbeat_age_s=50, job=FLAKY)
    package = {"id": "d" * 32, "func": FLAKY, "args": ("k-unit-3", 0), "kwargs": {}}
    assert deliver(package) == {"calls": 1}
    assert list(JobRun.objects.order_by("attempt").values_list("attempt", "outcome")) == [
        (1, "lost"), (2, "succeeded")]


def test_a_redelivery_past_the_maximum_gives_up_and_alerts(settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    _earlier_run("g" * 32, heartbeat_age_s=600)
    # noop allows one attempt: the redelivery is attempt 2, so it is given up, not run.
    assert deliver({"id": "g" * 32, "func": NOOP, "args": (1,), "kwargs": {}}) == {
        "gave_up": True, "attempts": 1}
    assert list(JobRun.objects.order_by("attempt").values_list("outcome", flat=True)) == [
        "lost", "gave_up"]
    assert len(mailoutbox) == 1


def test_an_interrupted_delivery_does_not_count_as_an_attempt():
    _earlier_run("h" * 32, heartbeat_age_s=600, outcome="interrupted")
    assert deliver({"id": "h" * 32, "func": NOOP, "args": (1,), "kwargs": {}}) == {"value": 1}
    assert list(JobRun.objects.order_by("attempt").values_list("attempt", "outcome")) == [
        (1, "interrupted"), (2, "succeeded")]


def test_a_delivery_another_worker_still_renews_stands_aside_unacknowledged(settings):
    settings.PASTQ_LEASE_SECONDS = 45
    _earlier_run("e" * 32, heartbeat_age_s=3)
    package = {"id": "e" * 32, "func": NOOP, "args": (1,), "kwargs": {}, "ack_id": 12}
    assert deliver(package) == {"skipped": "another worker is running this task"}
    assert package["ack_id"] is None and package["save"] is False  # the live run's row and result
    assert JobRun.objects.get().outcome == "running"


def test_a_delivery_of_a_task_that_already_ran_is_acknowledged_without_running():
    _earlier_run("s" * 32, heartbeat_age_s=600, outcome="succeeded")
    package = {"id": "s" * 32, "func": NOOP, "args": (1,), "kwargs": {}, "ack_id": 13}
    assert deliver(package) == {"skipped": "this task already ran"}
    assert package["ack_id"] == 13 and package["save"] is False
    assert JobRun.objects.count() == 1


def test_calling_a_job_function_directly_runs_it_with_a_record_and_no_lease():
    from core.tests.jobs_for_tests import noop

    assert noop(3) == {"value": 3}
    run = JobRun.objects.get()
    assert run.task_id == "" and run.outcome == "succeeded"
