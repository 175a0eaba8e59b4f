"""The core app's scheduled tasks, run as a worker would (through the job wrapper)."""

import datetime

import pytest
from django.utils import timezone
from django_q.models import Task

from core import tasks
from core.models import JobRun, OpsAlert, QueueHeartbeat

pytestmark = pytest.mark.django_db


def test_job_runs_prune_deletes_old_records_only():
    old = timezone.now() - datetime.timedelta(days=40)
    recent = timezone.now() - datetime.timedelta(days=2)
    for chain, when in (("old", old), ("new", recent)):
        JobRun.objects.create(job="x", queue="analytics", chain=chain, attempt=1,
                              started_at=when, finished_at=when, outcome="succeeded")
        Task.objects.create(id=chain * 8, name=chain, func="x", started=when, stopped=when,
                            success=True)
    OpsAlert.objects.create(key="k", summary="s", resolved_at=old)
    OpsAlert.objects.create(key="k", summary="still open")
    result = tasks.job_runs_prune(days=30)
    assert result == {"job_runs_deleted": 1, "task_results_deleted": 1, "alerts_deleted": 1}
    assert set(JobRun.objects.values_list("chain", flat=True)) >= {"new"}
    assert OpsAlert.objects.get().summary == "still open"


def test_job_runs_prune_refuses_to_empty_the_record():
    with pytest.raises(ValueError):
        tasks.job_runs_prune(days=0)


def test_heartbeat_records_its_queue_and_reports_the_silent_ones(settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.PASTQ_QUEUE_ROUTING = True
    result = tasks.heartbeat("analytics")
    assert QueueHeartbeat.objects.get().queue == "analytics"
    assert "analytics" not in result["stalled"]
    assert set(result["stalled"]) == set(settings.PASTQ_QUEUES) - {"analytics"}
    assert len(mailoutbox) == 3  # one email per stalled queue
    tasks.heartbeat("analytics")
    assert len(mailoutbox) == 3  # not one per check
