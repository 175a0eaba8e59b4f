import ast

import pytest
from django.utils.module_loading import import_string
from django_q.models import Schedule

from core import ops
from core.jobs import job_spec
from pastq.schedules import MANAGED_PREFIX, SCHEDULES

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("periodic", SCHEDULES, ids=lambda p: p.name)
def test_every_scheduled_task_exists_and_is_a_job(periodic):
    assert callable(import_string(periodic.task))
    assert job_spec(periodic.task).on_queue(periodic.queue).queue == periodic.queue


def test_a_heartbeat_runs_on_every_queue(settings):
    heartbeat_queues = {p.queue for p in SCHEDULES if p.task == "core.tasks.heartbeat"}
    assert heartbeat_queues == set(settings.PASTQ_QUEUES)


def test_sync_is_idempotent_and_dry_run_writes_nothing(run_command):
    code, out, _ = run_command("sync_schedules", "--dry-run")
    assert code == 0 and f"would add {MANAGED_PREFIX}heartbeat:analytics" in out
    assert not Schedule.objects.exists()
    assert len(ops.schedules_sync()) == len(SCHEDULES)
    assert Schedule.objects.count() == len(SCHEDULES)
    assert ops.schedules_sync() == []
    code, out, _ = run_command("sync_schedules")
    assert code == 0 and "up to date" in out


def test_sync_sets_the_cluster_to_match_routing(settings):
    ops.schedules_sync()
    assert set(Schedule.objects.values_list("cluster", flat=True)) == {None}
    settings.PASTQ_QUEUE_ROUTING = True
    changes = ops.schedules_sync()
    assert len(changes) == len(SCHEDULES)
    beat = Schedule.objects.get(name=f"{MANAGED_PREFIX}heartbeat:notifications")
    assert beat.cluster == "notifications"
    kwargs = ast.literal_eval(beat.kwargs)
    assert kwargs["queue"] == "notifications" and kwargs["_job"] == {"queue": "notifications"}
    assert kwargs["q_options"]["timeout"] == settings.PASTQ_QUEUES["notifications"]["timeout"]


def test_sync_keeps_pauses_and_hand_made_schedules_and_removes_stale_rows():
    ops.schedules_sync()
    beat = Schedule.objects.get(name=f"{MANAGED_PREFIX}heartbeat:analytics")
    ops.schedule_pause(beat, by="test")
    hand_made = Schedule.objects.create(name="nightly report by hand", func="core.tasks.heartbeat",
                                        schedule_type=Schedule.DAILY)
    Schedule.objects.create(name=f"{MANAGED_PREFIX}retired-job", func="core.tasks.heartbeat",
                            schedule_type=Schedule.DAILY)
    retry = Schedule.objects.create(name="pastq:retry:abc:2", func="core.tasks.heartbeat",
                                    schedule_type=Schedule.ONCE)
    Schedule.objects.filter(pk=beat.pk).update(cron="*/5 * * * *")  # drifted by hand
    changes = ops.schedules_sync()
    assert any(c.startswith(f"remove {MANAGED_PREFIX}retired-job") for c in changes)
    beat.refresh_from_db()
    assert beat.cron == "* * * * *" and beat.repeats == 0  # task owned, pause kept
    assert Schedule.objects.filter(pk__in=[hand_made.pk, retry.pk]).count() == 2
    ops.schedule_resume(beat)
    beat.refresh_from_db()
    assert beat.repeats == -1


def test_init_db_syncs_the_schedules(run_command):
    code, out, _ = run_command("init_db")
    assert code == 0
    assert Schedule.objects.filter(name__startswith=MANAGED_PREFIX).count() == len(SCHEDULES)
