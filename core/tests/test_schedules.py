"""The table of periodic jobs (pastq/schedules.py) and its sync into django-q's schedules
(core/jobs/schedules.py, `manage.py sync_schedules`)."""

import ast

import pytest
from django.utils.module_loading import import_string
from django_q.models import Schedule

from core.jobs import job_spec
from core.jobs.schedules import MANAGED_PREFIX, Periodic, schedules_sync
from maintenance.operations import schedule_pause, schedule_resume
from pastq.schedules import SCHEDULES

pytestmark = pytest.mark.django_db

PRUNE = "maintenance.tasks.job_records_prune"

# Tables the tests point PASTQ_SCHEDULES at.
SMALLER = [p for p in SCHEDULES if p.name == "job-records-prune"]
CLASHING = [Periodic("bad-kwargs", PRUNE, "0 3 * * *", kwargs={"days": 9, "timeout": 60})]
BAD_CRON = [Periodic("bad-cron", PRUNE, "every day at three")]
NOT_A_JOB = [Periodic("not-a-job", "core.services.catalogue_load", "0 3 * * *")]
TWICE = [SCHEDULES[0], SCHEDULES[0]]


@pytest.mark.parametrize("periodic", SCHEDULES, ids=lambda p: p.name)
def test_every_scheduled_task_exists_and_is_a_declared_job(periodic):
    task = import_string(periodic.task)
    assert callable(task)
    assert task.job_spec is job_spec(periodic.task)
    assert periodic.queue == task.job_spec.queue


def test_sync_is_idempotent_and_dry_run_writes_nothing(run_command):
    code, out, _ = run_command("sync_schedules", "--dry-run")
    assert code == 0
    assert f"would add {MANAGED_PREFIX}job-records-prune: {PRUNE} '45 3 * * *' on maintenance" \
        in out
    assert "(dry run: nothing written)" in out
    assert not Schedule.objects.exists()

    assert len(schedules_sync()) == len(SCHEDULES)
    assert Schedule.objects.count() == len(SCHEDULES)
    rows = list(Schedule.objects.order_by("name").values())
    assert schedules_sync() == []
    assert list(Schedule.objects.order_by("name").values()) == rows
    code, out, _ = run_command("sync_schedules")
    assert code == 0 and "Schedules are up to date." in out


def test_sync_writes_each_row_as_a_cron_schedule_of_its_job():
    schedules_sync()
    for periodic in SCHEDULES:
        row = Schedule.objects.get(name=periodic.schedule_name)
        assert (row.func, row.schedule_type, row.cron, row.repeats, row.args) == (
            periodic.task, Schedule.CRON, periodic.cron, -1, None)
        assert row.next_run is not None and row.hook is None


@pytest.mark.parametrize("routing", [False, True], ids=["one-cluster", "routing"])
def test_sync_sets_the_cluster_and_q_options_to_match_routing(settings, routing):
    settings.PASTQ_QUEUE_ROUTING = routing
    schedules_sync()
    for periodic in SCHEDULES:
        row = Schedule.objects.get(name=periodic.schedule_name)
        assert row.cluster == (periodic.queue if routing else None)
        kwargs = ast.literal_eval(row.kwargs)
        assert kwargs == {"q_options": {"timeout": settings.PASTQ_QUEUES[periodic.queue]["timeout"],
                                        "cluster": periodic.queue}}


def test_switching_routing_on_updates_every_row(settings):
    schedules_sync()
    settings.PASTQ_QUEUE_ROUTING = True
    changes = schedules_sync()
    assert len(changes) == len(SCHEDULES)
    assert all(change.startswith(f"update {MANAGED_PREFIX}") and "cluster None → " in change
               for change in changes)
    assert Schedule.objects.get(name=f"{MANAGED_PREFIX}job-records-prune").cluster == \
        "maintenance"


def test_sync_keeps_pauses_and_hand_made_schedules_and_removes_rows_that_left(settings):
    schedules_sync()
    prune = Schedule.objects.get(name=f"{MANAGED_PREFIX}job-records-prune")
    assert schedule_pause(prune, by="test") is True
    hand_made = Schedule.objects.create(name="nightly report by hand", func=PRUNE,
                                        schedule_type=Schedule.DAILY)
    Schedule.objects.create(name=f"{MANAGED_PREFIX}retired-job", func=PRUNE,
                            schedule_type=Schedule.DAILY)
    Schedule.objects.filter(pk=prune.pk).update(cron="*/5 * * * *")  # drifted by hand
    settings.PASTQ_SCHEDULES = "core.tests.test_schedules.SMALLER"

    changes = schedules_sync()

    assert f"remove {MANAGED_PREFIX}retired-job (no longer in the schedule table)" in changes
    assert f"remove {MANAGED_PREFIX}health-checks (no longer in the schedule table)" in changes
    assert f"remove {MANAGED_PREFIX}question-processing (no longer in the schedule table)" \
        in changes
    prune.refresh_from_db()
    assert prune.cron == "45 3 * * *" and prune.repeats == 0  # task owned, pause kept
    assert Schedule.objects.filter(pk=hand_made.pk).exists()
    assert set(Schedule.objects.values_list("name", flat=True)) == {
        prune.name, hand_made.name}
    assert schedule_resume(prune) is True
    prune.refresh_from_db()
    assert prune.repeats == -1


@pytest.mark.parametrize("table, message", [
    ("CLASHING", "django-q's scheduler would take the arguments ['timeout'] for itself"),
    ("BAD_CRON", "'every day at three' is not a cron expression"),
    ("NOT_A_JOB", "is not a job"),
    ("TWICE", "names a schedule twice"),
])
def test_a_wrong_table_is_refused_and_nothing_is_written(settings, run_command, table, message):
    settings.PASTQ_SCHEDULES = f"core.tests.test_schedules.{table}"
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        schedules_sync()
    code, out, err = run_command("sync_schedules")
    assert code == 1
    assert "CommandError: The schedule table is wrong: " in err and message in err
    assert "Traceback" not in err
    assert not Schedule.objects.exists()


def test_init_db_syncs_the_schedules(run_command, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    code, out, _ = run_command("init_db")
    assert code == 0, out
    assert set(Schedule.objects.filter(name__startswith=MANAGED_PREFIX)
               .values_list("name", flat=True)) == {p.schedule_name for p in SCHEDULES}
