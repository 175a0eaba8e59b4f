"""Pruning (maintenance/pruning.py and its job): what has served its time goes, the rest stays."""

import datetime

import pytest
from django.utils import timezone
from django_q.models import Task

from core.jobs.models import ClusterPresence, JobRun
from core.tests.conftest import deliver
from maintenance import pruning, tasks
from maintenance.models import OpsAlert
from maintenance.pruning import job_records_prune
from maintenance.tests.conftest import make_presence, make_run

pytestmark = pytest.mark.django_db


def _records(age: datetime.timedelta, tag: str):
    when = timezone.now() - age
    make_run(chain=f"{tag}-done", started_at=when, finished_at=when, outcome="succeeded")
    Task.objects.create(id=f"{tag:x<32}", name=tag, func="x", started=when, stopped=when,
                        success=True)
    make_presence(name=f"{tag}-cluster", age_s=age.total_seconds())
    OpsAlert.objects.create(key=f"{tag}-resolved", summary="resolved", resolved_at=when)
    OpsAlert.objects.create(key=f"{tag}-open", summary="still open")
    OpsAlert.objects.filter(key=f"{tag}-open").update(opened_at=when)


def test_old_records_go_and_recent_ones_and_open_alerts_stay():
    _records(datetime.timedelta(days=40), "old")
    _records(datetime.timedelta(days=2), "new")
    # A run that started long ago and still runs is not finished: it stays.
    make_run(chain="old-running", started_at=timezone.now() - datetime.timedelta(days=40),
             finished_at=None, outcome="running")

    result = job_records_prune(days=30)

    assert result == {"job_runs_deleted": 1, "task_results_deleted": 1, "presences_deleted": 1,
                      "alerts_deleted": 1}
    assert set(JobRun.objects.values_list("chain", flat=True)) == {"new-done", "old-running"}
    assert list(Task.objects.values_list("name", flat=True)) == ["new"]
    assert list(ClusterPresence.objects.values_list("name", flat=True)) == ["new-cluster"]
    assert set(OpsAlert.objects.values_list("key", flat=True)) == {
        "old-open", "new-resolved", "new-open"}
    assert job_records_prune(days=30) == {"job_runs_deleted": 0, "task_results_deleted": 0,
                                          "presences_deleted": 0, "alerts_deleted": 0}


@pytest.mark.parametrize("days", [0, -5])
def test_less_than_a_day_is_refused(days):
    _records(datetime.timedelta(hours=2), "new")
    with pytest.raises(ValueError, match="at least one day"):
        job_records_prune(days=days)
    assert JobRun.objects.count() == 1 and OpsAlert.objects.count() == 2


def test_a_dry_run_counts_what_goes_and_batches_delete_the_same(monkeypatch):
    monkeypatch.setattr(pruning, "SQLITE_PAUSE_S", 0)
    for n in range(3):
        _records(datetime.timedelta(days=40 + n), f"old{n}")
    _records(datetime.timedelta(days=2), "new")
    counts = (JobRun.objects.count(), Task.objects.count(), ClusterPresence.objects.count(),
              OpsAlert.objects.count())

    dry = job_records_prune(days=30, dry_run=True)

    assert (JobRun.objects.count(), Task.objects.count(), ClusterPresence.objects.count(),
            OpsAlert.objects.count()) == counts
    assert dry == job_records_prune(days=30, batch_size=2) == {
        "job_runs_deleted": 3, "task_results_deleted": 3, "presences_deleted": 3,
        "alerts_deleted": 3}
    assert list(Task.objects.values_list("name", flat=True)) == ["new"]


def test_batches_read_keys_after_the_last_and_always_end():
    """A batch whose rows no longer match when it runs leaves them; the next batch starts
    after them, so the loop ends."""
    for n in range(5):
        _records(datetime.timedelta(days=40), f"old{n}")
    kept_back = iter([True, False, True])

    def change(batch):  # changes only every other batch
        return batch.delete()[0] if not next(kept_back, False) else 0

    changed = pruning.rows_change_in_batches(JobRun.objects.all(), change, batch_size=2)
    assert changed == 2 and JobRun.objects.count() == 3
    with pytest.raises(ValueError, match="at least one row"):
        pruning.rows_change_in_batches(JobRun.objects.all(), change, batch_size=0)


def test_the_job_prunes_with_30_days_by_default_and_is_recorded():
    _records(datetime.timedelta(days=31), "old")
    _records(datetime.timedelta(days=29), "new")
    result = deliver({"id": "p" * 32, "func": "maintenance.tasks.job_records_prune"})
    assert result["job_runs_deleted"] == 1 and result["presences_deleted"] == 1
    run = JobRun.objects.get(task_id="p" * 32)
    assert run.outcome == "succeeded" and run.queue == "maintenance"


def test_the_job_takes_its_retention_from_the_setting(settings):
    settings.CLEANUP_JOB_RECORD_DAYS = 7
    _records(datetime.timedelta(days=8), "old")
    _records(datetime.timedelta(days=6), "new")
    result = deliver({"id": "q" * 32, "func": "maintenance.tasks.job_records_prune"})
    assert result == {"job_runs_deleted": 1, "task_results_deleted": 1, "presences_deleted": 1,
                      "alerts_deleted": 1}


def test_the_job_refuses_zero_days_and_does_not_retry(django_capture_on_commit_callbacks):
    with pytest.raises(ValueError), django_capture_on_commit_callbacks(execute=True):
        tasks.job_records_prune(days=0)
    assert JobRun.objects.get().outcome == "failed"
    assert OpsAlert.objects.get().summary.startswith(
        "Job maintenance.tasks.job_records_prune failed")
