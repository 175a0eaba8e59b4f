"""The admin's operations page (core/operations_views.py, pastq/admin.py): what it shows, its
actions and their permission, its query count, and the stall email behind its alerts."""

import datetime
import re

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success, Task
from django_q.tasks import async_task

from core import ops
from core.jobs import RETRY_SCHEDULE_PREFIX, broker_key_for
from core.models import JobRun, OpsAlert, PausedSchedule
from pastq.admin import PastqAdminSite

pytestmark = pytest.mark.django_db

PAGE = "/admin/operations/"
# Measured: 14 for a superuser, with 5 or 50 of everything (session, user; queue health 3;
# the cache for live clusters 1, plus 1 per live cluster, none in tests; alerts 1; failures 1;
# schedules 4; retries 1; queued tasks 1). test_query_count_does_not_grow checks it is exact.
MAX_QUERIES = 14


def _url(name, *args):
    return reverse(f"admin:{name}", args=args)


def _messages(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def _enqueue(queue="analytics", **q_options):
    """A task in the ORM queue, as the job plumbing writes it (one OrmQ row)."""
    async_task("core.tasks.heartbeat", queue=queue, q_options={"cluster": None, **q_options})
    return OrmQ.objects.order_by("-id").first()


def _job_run(job="core.tasks.job_runs_prune", outcome=JobRun.Outcome.FAILED, **fields):
    now = timezone.now()
    defaults = dict(job=job, queue="maintenance", chain=fields.pop("chain", None)
                    or f"chain-{JobRun.objects.count() + 1}", attempt=1, started_at=now,
                    finished_at=now, duration_ms=12, outcome=outcome, error="boom")
    return JobRun.objects.create(**{**defaults, **fields})


def _heartbeats_for_all_queues():
    for queue in settings.PASTQ_QUEUES:
        ops.heartbeat_record(queue)


@pytest.fixture
def managed_schedules():
    ops.schedules_sync()
    return list(Schedule.objects.filter(name__startswith="pastq:").order_by("name"))


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        email="staff@example.com", password="pw", is_staff=True)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def _populate(n: int, start: int = 0):
    """n of everything the page lists: schedules with a last run (ours or django-q's), queued
    tasks, failed runs of n jobs, open alerts, pending retries."""
    now = timezone.now()
    for i in range(start, start + n):
        schedule = Schedule.objects.create(
            name=f"hand-made {i:03}", func="core.tasks.job_runs_prune",
            schedule_type=Schedule.MINUTES, minutes=5, next_run=now, task=f"task-{i}")
        if i % 2:
            _job_run(job=f"core.tasks.job_{i}", task_id=schedule.task, chain=f"c{i}")
        else:
            Task.objects.create(id=schedule.task, name=f"t{i}", func=schedule.func,
                                started=now, stopped=now, success=False, attempt_count=1)
        if i % 3 == 0:
            ops.schedule_pause(schedule, by="someone@example.com")
        _enqueue()
        ops.alert_open(key=f"test:{i}", summary=f"Alert {i}")
        Schedule.objects.create(name=f"{RETRY_SCHEDULE_PREFIX}{i}:2", func="core.tasks.heartbeat",
                                schedule_type=Schedule.ONCE, next_run=now)
    # One taken task too.
    OrmQ.objects.filter(pk=_enqueue().pk).update(lock=now + datetime.timedelta(minutes=5))


# --- The page -------------------------------------------------------------------------------


def test_the_site_is_pastqs_and_django_q_admin_is_still_there():
    assert isinstance(admin.site, PastqAdminSite)
    assert admin.site.site_header == "pastq operations"
    assert admin.site.site_title == "pastq"
    for model in (Schedule, OrmQ, Failure, Success):
        assert model in admin.site._registry


def test_django_q_failure_resubmit_still_works(admin_client):
    now = timezone.now()
    failure = Failure.objects.create(id="f" * 32, name="f1", func="core.tasks.job_runs_prune",
                                     started=now, stopped=now, success=False, attempt_count=1)
    response = admin_client.post(_url("django_q_failure_changelist"), {
        "action": "resubmit_task", "_selected_action": [failure.pk]})
    assert response.status_code == 302
    assert OrmQ.objects.count() == 1
    assert not Failure.objects.exists()


def test_admin_index_links_to_the_operations_page(admin_client):
    response = admin_client.get(_url("index"))
    assert response.status_code == 200
    assert f'href="{PAGE}"' in response.content.decode()


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(_url("login"))


def test_page_shows_real_data_stalled_without_heartbeats_then_ok(admin_client,
                                                                 managed_schedules):
    now = timezone.now()
    waiting = _enqueue()
    taken = _enqueue()
    OrmQ.objects.filter(pk=taken.pk).update(lock=now + datetime.timedelta(minutes=5))
    prune = next(s for s in managed_schedules if s.func == "core.tasks.job_runs_prune")
    prune.task = "prune-task-id"
    prune.save()
    _job_run(task_id="prune-task-id", outcome=JobRun.Outcome.SUCCEEDED, duration_ms=4321)
    _job_run(job="analytics.tasks.broken")
    _job_run(job="analytics.tasks.broken", outcome=JobRun.Outcome.GAVE_UP)
    _job_run(job="analytics.tasks.old", started_at=now - datetime.timedelta(days=2))
    ops.alert_open(key="test:alert", summary="Something is wrong", detail="details here")
    Schedule.objects.create(name=f"{RETRY_SCHEDULE_PREFIX}abc:2", func="core.tasks.heartbeat",
                            schedule_type=Schedule.ONCE, next_run=now)

    response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert "STALLED" in text
    assert "no heartbeat yet" in text
    assert "No cluster is reporting" in text
    for schedule in managed_schedules:
        assert schedule.name in text
        assert _url("operations_schedule_run", schedule.pk) in text
        assert _url("operations_schedule_pause", schedule.pk) in text
    assert "4321 ms" in text  # the prune schedule's last run
    assert "Something is wrong" in text and "details here" in text
    assert f"{RETRY_SCHEDULE_PREFIX}abc:2" in text
    assert _url("operations_task_cancel", waiting.pk) in text
    assert _url("operations_task_cancel", taken.pk) not in text  # taken: may be running
    assert _url("operations_queue_purge", broker_key_for("analytics")) in text
    # Failures of the last 24 h, grouped by job, each linking to its filtered run list.
    assert "analytics.tasks.broken" in text
    assert "analytics.tasks.old" not in text
    links = re.findall(r'href="([^"]*core/jobrun/\?job=[^"]*)"', text)
    assert len(links) == 1
    listing = admin_client.get(links[0].replace("&amp;", "&"))
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset.values_list("outcome", flat=True).order_by(
        "outcome")) == ["failed", "gave_up"]

    _heartbeats_for_all_queues()
    text = admin_client.get(PAGE).content.decode()
    assert "STALLED" not in text
    assert ">OK<" in text


def test_a_task_waiting_too_long_stalls_the_queue(admin_client, settings):
    _heartbeats_for_all_queues()
    task = _enqueue()
    OrmQ.objects.filter(pk=task.pk).update(
        lock=timezone.now() - datetime.timedelta(seconds=settings.PASTQ_STALL_SECONDS + 60))
    text = admin_client.get(PAGE).content.decode()
    assert "STALLED" in text
    assert "has waited" in text


def test_page_with_queue_routing_shows_one_row_per_queue(admin_client, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    ops.heartbeat_record("analytics")
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    for queue in settings.PASTQ_QUEUES:
        assert f'id="queue-{queue}"' in text
    assert text.count(">OK<") == 1
    assert text.count("STALLED") == len(settings.PASTQ_QUEUES) - 1


@pytest.mark.parametrize("n", [5, 50])
def test_query_count_is_bounded(admin_client, managed_schedules, django_assert_max_num_queries,
                                n):
    _populate(n)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(PAGE)
    assert response.status_code == 200
    assert response.content.decode().count('value="Run now"') == n + len(managed_schedules)


def test_query_count_does_not_grow(admin_client, managed_schedules):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(PAGE).status_code == 200
        return len(queries)

    _populate(5)
    few = count()
    _populate(45, start=5)
    assert count() == few


# --- Actions --------------------------------------------------------------------------------


def test_run_now_enqueues_the_schedules_task(admin_client, managed_schedules):
    schedule = managed_schedules[0]
    next_run = schedule.next_run
    response = admin_client.post(_url("operations_schedule_run", schedule.pk))
    assert response.status_code == 302
    assert response["Location"] == PAGE
    task = OrmQ.objects.get().task
    assert task["func"] == schedule.func
    assert task["group"] == schedule.name
    assert ("success", f"Enqueued {schedule.name} now (task {task['id']}); its timetable is "
            "unchanged.") in _messages(response)
    schedule.refresh_from_db()
    assert schedule.next_run == next_run


def test_pause_survives_sync_and_resume_restores(admin_client, admin_user, managed_schedules):
    schedule = managed_schedules[0]
    response = admin_client.post(_url("operations_schedule_pause", schedule.pk))
    assert response.status_code == 302
    assert ("success", f"Paused {schedule.name}.") in _messages(response)
    schedule.refresh_from_db()
    assert schedule.repeats == 0
    assert PausedSchedule.objects.get(schedule=schedule).paused_by == admin_user.email

    ops.schedules_sync()
    schedule.refresh_from_db()
    assert schedule.repeats == 0
    text = admin_client.get(PAGE).content.decode()
    assert _url("operations_schedule_resume", schedule.pk) in text
    assert _url("operations_schedule_pause", schedule.pk) not in text

    response = admin_client.post(_url("operations_schedule_pause", schedule.pk))
    assert ("error", f"Nothing done: {schedule.name} was already paused.") in _messages(response)

    response = admin_client.post(_url("operations_schedule_resume", schedule.pk))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.repeats == -1
    assert not PausedSchedule.objects.exists()
    assert any(level == "success" and text.startswith(f"Resumed {schedule.name}; next run ")
               for level, text in _messages(response))

    response = admin_client.post(_url("operations_schedule_resume", schedule.pk))
    assert ("error", f"Nothing done: {schedule.name} was not paused.") in _messages(response)


@pytest.mark.parametrize("action", ["run", "pause", "resume"])
def test_unknown_schedule_is_a_message_not_a_500(admin_client, action):
    response = admin_client.post(_url(f"operations_schedule_{action}", 999999), follow=True)
    assert response.status_code == 200
    assert "There is no schedule #999999" in response.content.decode()


def test_cancel_a_waiting_task(admin_client):
    keep, cancel = _enqueue(), _enqueue()
    response = admin_client.post(_url("operations_task_cancel", cancel.pk))
    assert response.status_code == 302
    assert ("success", f"Queued task #{cancel.pk} cancelled.") in _messages(response)
    assert list(OrmQ.objects.values_list("pk", flat=True)) == [keep.pk]


@pytest.mark.parametrize("case", ["taken", "unknown"])
def test_cancel_refuses_a_taken_or_unknown_task(admin_client, case):
    task = _enqueue()
    if case == "taken":
        OrmQ.objects.filter(pk=task.pk).update(
            lock=timezone.now() + datetime.timedelta(minutes=5))
        pk = task.pk
    else:
        pk = task.pk + 1000
    response = admin_client.post(_url("operations_task_cancel", pk), follow=True)
    assert response.status_code == 200
    assert f"Queued task #{pk} was not cancelled" in response.content.decode()
    assert OrmQ.objects.filter(pk=task.pk).exists()


def test_purge_asks_for_confirmation_first(admin_client):
    waiting = [_enqueue() for _ in range(3)]
    taken = _enqueue()
    OrmQ.objects.filter(pk=taken.pk).update(lock=timezone.now() + datetime.timedelta(minutes=5))
    key = waiting[0].key
    url = _url("operations_queue_purge", key)

    response = admin_client.get(url)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Are you sure" in text
    assert "3 waiting tasks" in text
    assert 'name="confirm" value="yes"' in text
    assert OrmQ.objects.count() == 4

    response = admin_client.post(url)  # no confirmation: the question again, nothing removed
    assert response.status_code == 200
    assert "Are you sure" in response.content.decode()
    assert OrmQ.objects.count() == 4

    response = admin_client.post(url, {"confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert ("success", f"Purged 3 waiting tasks from '{key}'.") in _messages(response)
    assert list(OrmQ.objects.values_list("pk", flat=True)) == [taken.pk]


def test_purge_of_an_unknown_key_is_a_message(admin_client):
    _enqueue()
    response = admin_client.post(_url("operations_queue_purge", "nope"), {"confirm": "yes"},
                                 follow=True)
    assert response.status_code == 200
    assert "There is no queue with the broker key &#x27;nope&#x27;" in response.content.decode()
    assert OrmQ.objects.count() == 1


ACTIONS = ["operations_schedule_run", "operations_schedule_pause", "operations_schedule_resume",
           "operations_task_cancel"]


@pytest.mark.parametrize("name", ACTIONS)
def test_get_on_an_action_is_405(admin_client, managed_schedules, name):
    target = _enqueue().pk if name.endswith("cancel") else managed_schedules[0].pk
    assert admin_client.get(_url(name, target)).status_code == 405
    assert OrmQ.objects.count() == (1 if name.endswith("cancel") else 0)


def test_staff_without_run_job_sees_the_page_but_cannot_act(staff_client, managed_schedules):
    task = _enqueue()
    schedule = managed_schedules[0]
    response = staff_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert schedule.name in text
    assert "<form" not in text.split('id="content-main"', 1)[1].split('id="footer"')[0]
    for value in ("Run now", "Pause", "Resume", "Cancel", "Purge queue"):
        assert f'value="{value}"' not in text

    for name in ACTIONS:
        target = task.pk if name.endswith("cancel") else schedule.pk
        assert staff_client.post(_url(name, target)).status_code == 403
    purge = _url("operations_queue_purge", task.key)
    assert staff_client.get(purge).status_code == 403
    assert staff_client.post(purge, {"confirm": "yes"}).status_code == 403
    assert OrmQ.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.repeats == -1


def test_staff_granted_run_job_can_act(staff_client, staff_user, managed_schedules):
    staff_user.user_permissions.add(Permission.objects.get(
        content_type__app_label="core", codename="run_job"))
    text = staff_client.get(PAGE).content.decode()
    assert 'value="Run now"' in text
    response = staff_client.post(_url("operations_schedule_pause", managed_schedules[0].pk))
    assert response.status_code == 302
    assert PausedSchedule.objects.get().paused_by == "staff@example.com"


def test_non_staff_cannot_post(client, django_user_model, managed_schedules):
    user = django_user_model.objects.create_user(email="student@example.com", password="pw")
    client.force_login(user)
    response = client.post(_url("operations_schedule_pause", managed_schedules[0].pk))
    assert response.status_code == 302
    assert response["Location"].startswith(_url("login"))
    assert not PausedSchedule.objects.exists()


def test_actions_need_the_csrf_token(admin_user, managed_schedules):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(_url("operations_schedule_pause", managed_schedules[0].pk))
    assert response.status_code == 403
    assert not PausedSchedule.objects.exists()


# --- Job record admins ----------------------------------------------------------------------


def test_job_records_are_read_only_in_the_admin(admin_client):
    run = _job_run()
    assert admin_client.get(_url("core_jobrun_changelist")).status_code == 200
    assert admin_client.get(_url("core_jobrun_add")).status_code == 403
    response = admin_client.get(_url("core_jobrun_change", run.pk))
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    ops.alert_open(key="k", summary="An alert")
    ops.heartbeat_record("analytics")
    for name in ("core_opsalert", "core_queueheartbeat"):
        assert admin_client.get(_url(f"{name}_changelist")).status_code == 200
        assert admin_client.get(_url(f"{name}_add")).status_code == 403


# --- The stall email behind the alerts ------------------------------------------------------


@pytest.mark.parametrize("routing", [False, True], ids=["one-cluster", "routing"])
def test_a_stall_sends_one_email_and_recovery_resolves_it(settings, mailoutbox, routing):
    settings.ADMINS = [("Operators", "ops@example.com")]
    settings.PASTQ_QUEUE_ROUTING = routing
    for queue in settings.PASTQ_QUEUES:
        if queue != "analytics":
            ops.heartbeat_record(queue)

    assert len(ops.cluster_watch()) == 1
    assert len(ops.cluster_watch()) == 1
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["ops@example.com"]
    assert "is stalled" in mailoutbox[0].subject
    assert "analytics: no heartbeat yet" in mailoutbox[0].body
    alert = OpsAlert.objects.get()
    assert alert.resolved_at is None

    ops.heartbeat_record("analytics")
    assert ops.cluster_watch() == []
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert len(mailoutbox) == 1
