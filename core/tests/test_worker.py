"""Jobs through real `qcluster` processes, on SQLite and on PostgreSQL.

The clusters run with fast clocks (core/tests/conftest.py: a 6 s lease renewed every second,
presence every second, the scheduler every second), so what takes a minute in production takes
seconds here; bench/lease.py measures the same paths with the production settings.
"""

import os
import signal
import time
import uuid

import pytest
from django.core.cache import cache
from django.db.models import Q
from django_q.models import OrmQ, Success

from core.jobs import enqueue
from core.jobs.models import ClusterPresence, JobRun
from core.models import PracticeSession
from core.services import student_create
from core.tests.conftest import wait_for
from maintenance.models import OpsAlert

pytestmark = pytest.mark.django_db(transaction=True)

SLEEP = "core.tests.jobs_for_tests.sleep_for"


def runs_of(job):
    return list(JobRun.objects.filter(job=job).order_by("attempt"))


def test_enqueued_job_runs_in_the_worker(qcluster):
    qcluster()
    task_id = enqueue("core.tests.jobs_for_tests.noop", args=[42])
    run = wait_for(lambda: JobRun.objects.filter(
        task_id=task_id, outcome=JobRun.Outcome.SUCCEEDED).first(), timeout=60, what="the job")
    assert run.queue == "analytics" and run.attempt == 1 and run.pid != os.getpid()
    assert run.enqueued_at <= run.started_at <= run.finished_at
    assert wait_for(lambda: Success.objects.filter(id=task_id).first(), timeout=20,
                    what="django-q's result").result == {"value": 42}
    wait_for(lambda: not OrmQ.objects.exists(), timeout=20, what="the acknowledgement")


def test_transient_failures_are_retried_with_backoff_then_succeed(qcluster):
    qcluster()
    job = "core.tests.jobs_for_tests.flaky"
    enqueue(job, args=[f"flaky-{uuid.uuid4().hex}", 2])
    wait_for(lambda: JobRun.objects.filter(job=job, outcome="succeeded").exists(),
             timeout=60, what="the third attempt to succeed")
    runs = runs_of(job)
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, "retrying"), (2, "retrying"), (3, "succeeded")]
    assert len({r.chain for r in runs}) == 1
    # Backoff with base 1 s: attempt 1 waits 0.5-1 s, attempt 2 waits 1-2 s; each retry is
    # invisible in the queue until then, and taken at the next poll.
    assert 0.5 <= runs[0].retry_delay_s <= 1.0 and 1.0 <= runs[1].retry_delay_s <= 2.0
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.started_at >= earlier.retry_at
        assert (later.started_at - earlier.retry_at).total_seconds() < 5
    assert "fails on purpose" in runs[0].error
    wait_for(lambda: not OrmQ.objects.exists(), timeout=20, what="every acknowledgement")


def test_permanent_failure_is_not_retried_and_alerts_once(qcluster, settings):
    qcluster(ADMINS="ops@example.com")
    enqueue("core.tests.jobs_for_tests.broken")
    run = wait_for(lambda: JobRun.objects.filter(
        job="core.tests.jobs_for_tests.broken").exclude(outcome="running").first(),
        timeout=60, what="the failure")
    assert run.outcome == "failed" and "ValueError" in run.error
    wait_for(lambda: not OrmQ.objects.exists(), timeout=20, what="the acknowledgement")
    assert JobRun.objects.count() == 1
    assert "failed (not retried)" in OpsAlert.objects.get().summary


def test_a_killed_worker_s_job_runs_again_within_a_lease_and_once(qcluster):
    """SIGKILL mid-run: the lease stops being renewed, so the task comes back after one lease
    (6 s here, 45 s in production), whatever the job's time limit; its transaction never
    committed, so its side effect happens once."""
    student = student_create(email="k@example.com").user
    qcluster()
    job = "core.tests.jobs_for_tests.session_insert_slowly"
    enqueue(job, args=[student.pk, f"slept-{uuid.uuid4().hex}", 120])
    first = wait_for(lambda: JobRun.objects.filter(job=job, outcome="running").first(),
                     timeout=60, what="the job to start")
    time.sleep(2)
    killed_at = time.time()
    os.kill(first.pid, signal.SIGKILL)
    again = wait_for(lambda: JobRun.objects.filter(job=job, attempt=2).first(), timeout=30,
                     interval=0.2, what="the redelivery")
    rerun_delay = again.started_at.timestamp() - killed_at
    # One lease (6 s) after its last renewal, plus the time a loaded CI machine takes to hand
    # it to a worker; never the job's time limit (30 s) or more.
    assert rerun_delay < 6 + 8, f"reran {rerun_delay:.1f}s after the kill"
    done = wait_for(lambda: JobRun.objects.filter(job=job, outcome="succeeded").first(),
                    timeout=30, what="the redelivery to succeed")
    first.refresh_from_db()
    assert first.outcome == "lost"
    assert done.chain == first.chain and done.task_id == first.task_id
    assert PracticeSession.objects.filter(student=student).count() == 1


def test_a_job_longer_than_many_leases_is_never_delivered_twice(qcluster):
    qcluster()
    key = f"starts-{uuid.uuid4().hex}"
    enqueue(SLEEP, args=[20, key])  # 20 s: more than three 6-second leases
    run = wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="succeeded").first(),
                   timeout=60, what="the long job")
    assert len(cache.get(key)) == 1 and JobRun.objects.filter(job=SLEEP).count() == 1
    assert run.heartbeat_at > run.started_at  # the lease was renewed


def test_a_worker_killed_while_idle_does_not_wedge_the_cluster(qcluster):
    """django-q's worker dies holding the task queue's lock; the sentinel notices work waiting
    with every worker idle and restarts its workers (PASTQ_WEDGE_SECONDS, 3 s here)."""
    qcluster()
    presence = wait_for(lambda: ClusterPresence.objects.filter(status="running").first(),
                        timeout=30, what="the cluster")
    assert len(presence.worker_pids) == 2
    for pid in presence.worker_pids:  # both idle: one of them holds the task queue's lock
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    for i in range(10):
        enqueue("core.tests.jobs_for_tests.noop", args=[i], queue="analytics" if i % 2 else
                "maintenance")
    wait_for(lambda: JobRun.objects.filter(outcome="succeeded").count() == 10, timeout=60,
             interval=0.5, what="all ten tasks (some come back after their lease)")
    presence.refresh_from_db()
    assert presence.recoveries >= 1
    # Then a busy worker: its job runs again.
    enqueue(SLEEP, args=[4])
    first = wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="running").first(),
                     timeout=30, what="the sleeper")
    os.kill(first.pid, signal.SIGKILL)
    wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="succeeded").exists(), timeout=40,
             what="the sleeper to run again")


def test_an_idle_queue_gets_a_worker_while_long_jobs_run_on_the_others(qcluster):
    """One cluster, the default worker count (one per queue plus one): long jobs on three
    queues never keep the notification dispatcher waiting."""
    qcluster(PASTQ_WORKERS=None)
    wait_for(lambda: ClusterPresence.objects.filter(status="running").exists(), timeout=30,
             what="the cluster")
    for queue in ("maintenance", "analytics", "question_processing"):
        for _ in range(3):
            enqueue(SLEEP, args=[25], queue=queue)
    wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="running").count() >= 4,
             timeout=30, what="the long jobs")
    time.sleep(1)
    sent = time.time()
    enqueue("core.tests.jobs_for_tests.noop", args=["urgent"], queue="notifications")
    run = wait_for(lambda: JobRun.objects.filter(queue="notifications").first(), timeout=20,
                   interval=0.1, what="the notification job to start")
    waited = run.started_at.timestamp() - sent
    assert waited < 5, f"the idle queue's job waited {waited:.1f}s"
    assert JobRun.objects.filter(job=SLEEP, outcome="running").count() == 4


def test_routed_task_lands_in_its_queue_and_only_its_cluster_runs_it(qcluster, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    task_id = enqueue("core.tests.jobs_for_tests.noop", args=["routed"])
    assert OrmQ.objects.get().key == "analytics"
    routed = {"PASTQ_QUEUE_ROUTING": "on"}
    qcluster("notifications", Q_CLUSTER_NAME="notifications", **routed)
    wait_for(lambda: ClusterPresence.objects.filter(name="notifications", status="running")
             .exists(), timeout=30, what="the notifications cluster")
    time.sleep(3)
    assert not JobRun.objects.exists() and OrmQ.objects.filter(key="analytics").exists()
    qcluster("analytics", Q_CLUSTER_NAME="analytics", **routed)
    run = wait_for(lambda: JobRun.objects.filter(Q(task_id=task_id), ~Q(outcome="running"))
                   .first(), timeout=60, what="the analytics cluster")
    assert run.outcome == "succeeded" and run.queue == "analytics"


def test_a_routed_schedule_runs_through_its_routed_cluster(qcluster, settings):
    from django_q.models import Schedule

    from core.jobs.schedules import schedules_sync

    settings.PASTQ_QUEUE_ROUTING = True
    schedules_sync()
    schedule = Schedule.objects.get(name="pastq:job-records-prune")
    assert schedule.cluster == "maintenance"
    Schedule.objects.filter(pk=schedule.pk).update(next_run=schedule.next_run.replace(year=2020))
    qcluster("maintenance", Q_CLUSTER_NAME="maintenance", PASTQ_QUEUE_ROUTING="on")
    run = wait_for(lambda: JobRun.objects.filter(job="maintenance.tasks.job_records_prune")
                   .exclude(outcome="running").first(), timeout=60, what="the scheduled job")
    assert run.outcome == "succeeded" and run.queue == "maintenance"
    assert run.identity == "schedule:pastq:job-records-prune"


def test_tasks_queued_before_a_secret_key_rotation_still_run(qcluster, settings):
    old_key = settings.SECRET_KEY
    task_id = enqueue("core.tests.jobs_for_tests.noop", args=["before the rotation"])
    qcluster(SECRET_KEY="a-new-key-" + uuid.uuid4().hex, SECRET_KEY_FALLBACKS=old_key)
    run = wait_for(lambda: JobRun.objects.filter(task_id=task_id).exclude(
        outcome="running").first(), timeout=60, what="the task signed with the old key")
    assert run.outcome == "succeeded"


def test_tasks_signed_with_a_key_nobody_kept_are_reported_not_lost(qcluster):
    enqueue("core.tests.jobs_for_tests.noop", args=["orphan"])
    qcluster(SECRET_KEY="another-key-" + uuid.uuid4().hex, SECRET_KEY_FALLBACKS="")
    run = wait_for(lambda: JobRun.objects.filter(job="(unverifiable task)").first(),
                   timeout=60, what="the report")
    assert run.outcome == "failed" and run.kwargs["payload"]
    # The alert follows the record's commit (the cluster announces it after).
    wait_for(lambda: OpsAlert.objects.filter(key="task-undeliverable:analytics").exists(),
             timeout=10, what="the alert")
    assert not OrmQ.objects.exists()
