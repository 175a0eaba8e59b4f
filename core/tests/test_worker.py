"""Jobs through a real qcluster process, on SQLite and on PostgreSQL.

django-q's scheduler wakes every 30 s, so retries (built on one-off schedules) take that long
each: timing assertions allow for it.
"""

import os
import signal
import uuid

import pytest
from django.db.models import Q

from core.jobs import enqueue
from core.models import JobRun, PracticeSession
from core.services import student_create
from core.tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def chain_runs(job):
    return list(JobRun.objects.filter(job=job).order_by("attempt"))


def test_enqueued_job_runs_in_the_worker(qcluster):
    qcluster()
    task_id = enqueue("core.tests.jobs_for_tests.noop", 42)
    run = wait_for(lambda: JobRun.objects.filter(
        task_id=task_id, outcome=JobRun.Outcome.SUCCEEDED).first(), timeout=60, what="the job")
    assert run.queue == "analytics" and run.attempt == 1 and run.pid != os.getpid()
    assert run.enqueued_at <= run.started_at <= run.finished_at
    from django_q.models import Success
    assert wait_for(lambda: Success.objects.filter(id=task_id).first(), timeout=20,
                    what="django-q's result").result == {"value": 42}


def test_transient_failures_are_retried_with_backoff_then_succeed(qcluster):
    qcluster()
    key = f"flaky-{uuid.uuid4().hex}"
    enqueue("core.tests.jobs_for_tests.flaky", key, 2)
    job = "core.tests.jobs_for_tests.flaky"
    wait_for(lambda: JobRun.objects.filter(job=job, outcome=JobRun.Outcome.SUCCEEDED).exists(),
             timeout=120, interval=1, what="the third attempt to succeed")
    runs = chain_runs(job)
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, "retrying"), (2, "retrying"), (3, "succeeded")]
    assert len({r.chain for r in runs}) == 1
    # Backoff with base 1 s: attempt 1 waits 0.5-1 s, attempt 2 waits 1-2 s.
    assert 0.5 <= runs[0].retry_delay_s <= 1.0
    assert 1.0 <= runs[1].retry_delay_s <= 2.0
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.started_at >= earlier.retry_at
    assert "fails on purpose" in runs[0].error
    # The broker never delivered a failed attempt again on top of the retry.
    assert JobRun.objects.filter(job=job).count() == 3
    from django_q.models import OrmQ, Schedule
    assert not Schedule.objects.filter(name__startswith="pastq:retry:").exists()
    assert not OrmQ.objects.exists()


def test_permanent_failure_is_not_retried(qcluster):
    qcluster()
    enqueue("core.tests.jobs_for_tests.broken")
    run = wait_for(lambda: JobRun.objects.filter(
        job="core.tests.jobs_for_tests.broken").exclude(outcome="running").first(),
        timeout=60, what="the failure")
    assert run.outcome == "failed" and "ValueError" in run.error
    from django_q.models import OrmQ, Schedule
    wait_for(lambda: not OrmQ.objects.exists(), timeout=20, what="the acknowledgement")
    assert not Schedule.objects.exists()
    assert JobRun.objects.count() == 1


def test_killed_worker_redelivers_and_the_side_effect_happens_once(qcluster):
    student = student_create(email="k@example.com").user
    qcluster(PASTQ_TASK_TIMEOUT="5", PASTQ_TASK_RETRY="12")
    flag = f"slept-{uuid.uuid4().hex}"
    enqueue("core.tests.jobs_for_tests.session_insert_slowly", student.pk, flag, 60)
    job = "core.tests.jobs_for_tests.session_insert_slowly"
    first = wait_for(lambda: JobRun.objects.filter(job=job, outcome="running").first(),
                     timeout=60, what="the job to start")
    os.kill(first.pid, signal.SIGKILL)  # mid-run: its transaction never commits
    done = wait_for(lambda: JobRun.objects.filter(job=job, outcome="succeeded").first(),
                    timeout=90, interval=0.5, what="the redelivery to succeed")
    first.refresh_from_db()
    assert first.outcome == "lost"
    assert done.attempt == 2 and done.chain == first.chain and done.task_id == first.task_id
    assert PracticeSession.objects.filter(student=student).count() == 1


def test_routed_task_lands_in_its_queue_and_only_its_cluster_runs_it(qcluster, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    from django_q.models import OrmQ

    task_id = enqueue("core.tests.jobs_for_tests.noop", "routed")
    assert OrmQ.objects.get().key == "analytics"
    routed = {"PASTQ_QUEUE_ROUTING": "on"}
    qcluster("notifications", Q_CLUSTER_NAME="notifications", **routed)
    # The notifications cluster polls its own queue only: give it time, nothing happens.
    import time
    time.sleep(8)
    assert not JobRun.objects.exists() and OrmQ.objects.filter(key="analytics").exists()
    qcluster("analytics", Q_CLUSTER_NAME="analytics", **routed)
    run = wait_for(lambda: JobRun.objects.filter(Q(task_id=task_id), ~Q(outcome="running"))
                   .first(), timeout=60, what="the analytics cluster")
    assert run.outcome == "succeeded" and run.queue == "analytics"
