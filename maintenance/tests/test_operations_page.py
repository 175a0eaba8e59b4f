"""The operations page (/admin/operations/, maintenance/views.py): what it shows of each queue
and cluster, its query count, its actions and the permissions behind them."""

import datetime
import re

import pytest
from croniter import croniter
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from core.jobs.models import JobRun
from core.jobs.schedules import schedules_sync
from maintenance import operations
from maintenance.alerts import alert_open
from maintenance.models import PausedSchedule
from maintenance.tests.conftest import PAGE, make_presence, make_run, row_cells, stale_age

pytestmark = pytest.mark.django_db

QUEUES = ["question_processing", "analytics", "maintenance", "notifications"]
NOOP = "core.tests.jobs_for_tests.noop"  # an analytics job
PRUNE = "maintenance.tasks.job_records_prune"  # a maintenance job

# Measured: 16 queries for a superuser, with 5 or 50 of everything (schedules, queued tasks, job
# runs, alerts, presences, retries): the session and the user 2; the presences 1; the queue
# states 3 (waiting and oldest per queue, leased per queue, running jobs per queue); failures
# per queue 1; open alerts 2 (the newest, and how many are open); failures by job 1; schedules
# 4 (the schedules, their last runs, django-q's results, the pauses); pending retries 1; queued
# tasks 1. test_query_count_does_not_grow checks that it is exact.
PAGE_QUERIES = 16


def url(name, *args):
    return reverse(f"operations:{name}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def content_of(text: str) -> str:
    """The page's own part (without the admin's header and its log-out form)."""
    return text.split('id="content-main"', 1)[1].split('id="footer"')[0]


@pytest.fixture
def managed_schedules():
    schedules_sync()
    return list(Schedule.objects.filter(name__startswith="pastq:").order_by("name"))


# --- Queues and clusters --------------------------------------------------------------------


@pytest.mark.parametrize("routing", [False, True], ids=["one-cluster", "routing"])
def test_one_row_per_queue_with_its_figures(admin_client, settings, queued, routing):
    settings.PASTQ_QUEUE_ROUTING = routing
    if routing:
        for queue in QUEUES:
            make_presence(name=queue, queues=[queue], pid=100 + QUEUES.index(queue))
    else:
        make_presence()
    now = timezone.now()
    analytics = [queued(NOOP, args=[i]) for i in range(5)]
    OrmQ.objects.filter(pk=analytics[0].pk).update(lock=now - datetime.timedelta(seconds=330))
    for task in analytics[3:]:  # taken by workers, their jobs running
        OrmQ.objects.filter(pk=task.pk).update(lock=now + datetime.timedelta(seconds=40))
        make_run(NOOP, queue="analytics", outcome=JobRun.Outcome.RUNNING, task_id=task.task["id"],
                 heartbeat_at=now, finished_at=None, duration_ms=None)
    queued(PRUNE)
    make_run(NOOP, queue="analytics")
    make_run(NOOP, queue="analytics", outcome=JobRun.Outcome.GAVE_UP)
    make_run(NOOP, queue="analytics", started_at=now - datetime.timedelta(hours=30))  # too old
    make_run(PRUNE, queue="maintenance", outcome=JobRun.Outcome.SUCCEEDED)  # not a failure

    response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert re.findall(r'<tr id="queue-([a-z_]+)"', text) == QUEUES
    # queue, state, waiting, oldest waiting, running, retries due later, failures (24 h), ...
    assert row_cells(text, "queue-analytics")[:7] == [
        "analytics", "RUNNING", "3", "5 min", "2", "0", "2"]
    assert row_cells(text, "queue-maintenance")[:7] == [
        "maintenance", "RUNNING", "1", "0 s", "0", "0", "0"]
    for queue in ("question_processing", "notifications"):
        assert row_cells(text, f"queue-{queue}")[:7] == [queue, "RUNNING", "0", "—", "0", "0", "0"]
    served_by = row_cells(text, "queue-analytics")[7]
    assert served_by == ("analytics worker-1:101" if routing else "pastq worker-1:4242")
    # The failures link lists those runs (failed and gave up, not older than 24 h: the list
    # is filtered by outcome; its date is the page's).
    link = re.search(r'<a class="ops-bad" href="([^"]*)">2</a>', text).group(1)
    listing = admin_client.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    assert sorted(listing.context["cl"].queryset.values_list("outcome", flat=True)) == [
        "failed", "failed", "gave_up"]


def test_a_queue_whose_only_cluster_is_stale_is_down_with_when_it_was_last_seen(admin_client):
    presence = make_presence(age_s=stale_age())
    text = admin_client.get(PAGE).content.decode()
    seen = f"{presence.last_seen_at:%Y-%m-%d %H:%M:%S} UTC"
    for queue in QUEUES:
        state = row_cells(text, f"queue-{queue}")[1]
        assert state.startswith("DOWN last seen " + seen)
        assert "RUNNING" not in state and "NOT STARTED" not in state
        assert "stopped reporting" in state  # the problem, in words
    clusters = content_of(text).split('id="ops-clusters"', 1)[1].split('id="ops-alerts"')[0]
    assert "dead" in clusters and "worker-1:4242" in clusters


def test_a_cluster_that_has_just_started_is_starting_not_down(admin_client):
    make_presence(status="starting", age_s=0, up_s=0)
    text = admin_client.get(PAGE).content.decode()
    for queue in QUEUES:
        state = row_cells(text, f"queue-{queue}")[1]
        assert state == "STARTING"


def test_a_fresh_install_shows_not_started(admin_client):
    text = admin_client.get(PAGE).content.decode()
    for queue in QUEUES:
        assert row_cells(text, f"queue-{queue}")[1].startswith("NOT STARTED")
    assert "No cluster has run yet" in text


def test_routing_with_one_cluster_up_shows_the_others_not_started(admin_client, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    make_presence(name="analytics", queues=["analytics"])
    text = admin_client.get(PAGE).content.decode()
    states = {q: row_cells(text, f"queue-{q}")[1] for q in QUEUES}
    assert states.pop("analytics") == "RUNNING"
    assert all(state.startswith("NOT STARTED") for state in states.values())


def test_a_task_waiting_too_long_stalls_its_queue(admin_client, settings, queued):
    make_presence()
    task = queued(PRUNE)
    OrmQ.objects.filter(pk=task.pk).update(
        lock=timezone.now() - datetime.timedelta(seconds=settings.PASTQ_STALL_SECONDS + 60))
    text = admin_client.get(PAGE).content.decode()
    state = row_cells(text, "queue-maintenance")[1]
    assert "RUNNING" in state and "STALLED" in state and "has waited" in state
    assert "STALLED" not in row_cells(text, "queue-analytics")[1]


def test_page_shows_schedules_alerts_failures_retries_and_tasks(admin_client, managed_schedules,
                                                                queued):
    make_presence()
    now = timezone.now()
    waiting, taken = queued(PRUNE), queued(PRUNE)
    OrmQ.objects.filter(pk=taken.pk).update(lock=now + datetime.timedelta(minutes=5))
    prune = next(s for s in managed_schedules if s.func == PRUNE)
    Schedule.objects.filter(pk=prune.pk).update(task="prune-task-id")
    make_run(task_id="prune-task-id", outcome=JobRun.Outcome.SUCCEEDED, duration_ms=4321)
    make_run(job="core.tests.jobs_for_tests.broken", queue="analytics")
    make_run(job="core.tests.jobs_for_tests.broken", queue="analytics",
             outcome=JobRun.Outcome.GAVE_UP)
    make_run(job="core.tests.jobs_for_tests.flaky", queue="analytics",
             started_at=now - datetime.timedelta(days=2))
    retry = make_run(job="core.tests.jobs_for_tests.flaky", queue="analytics",
                     outcome=JobRun.Outcome.RETRYING, retry_at=now + datetime.timedelta(minutes=3))
    alert_open(key="test:alert", summary="Something is wrong", detail="details here")

    response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    for schedule in managed_schedules:
        cells = row_cells(text, f"schedule-{schedule.pk}")
        assert cells[0] == schedule.name and cells[1] == schedule.func
        from core.jobs import job_spec

        assert cells[2] == schedule.cron and cells[3] == job_spec(schedule.func).queue
        assert cells[4] == "active"
        assert url("schedule_run", schedule.pk) in text
        assert url("schedule_pause", schedule.pk) in text
    assert "4321 ms" in row_cells(text, f"schedule-{prune.pk}")[5]  # its last run
    assert "Something is wrong" in text and "details here" in text
    assert row_cells(text, f"task-{waiting.pk}")[-1] == ""  # a form, no text
    assert url("task_cancel", waiting.pk) in text
    assert url("task_cancel", taken.pk) not in text  # taken: it may be running
    assert url("queue_purge", "maintenance") in text
    assert url("queue_purge", "analytics") not in text  # nothing waits there
    # Failures of the last 24 h, grouped by job, each linking to its filtered run list.
    failures = content_of(text).split('id="ops-failures"', 1)[1].split('id="ops-schedules"')[0]
    assert "core.tests.jobs_for_tests.broken" in failures
    assert "jobs_for_tests.flaky" in failures  # the retrying attempt is a failure too
    links = re.findall(r'href="([^"]*core/jobrun/\?job=core.tests.jobs_for_tests.broken[^"]*)"',
                       failures)
    assert len(links) == 1
    listing = admin_client.get(links[0].replace("&amp;", "&"))
    assert listing.status_code == 200
    assert sorted(listing.context["cl"].queryset.values_list("outcome", flat=True)) == [
        "failed", "gave_up"]
    assert reverse("admin:core_jobrun_change", args=[retry.pk]) in text  # a pending retry


# --- The query count ------------------------------------------------------------------------


def _populate(n: int, queued, start: int = 0):
    """n of everything the page lists: schedules with a last run (ours or django-q's), some
    paused; queued tasks; failed, running and retrying runs of n jobs; open alerts; cluster
    presences, live and dead."""
    now = timezone.now()
    for i in range(start, start + n):
        schedule = Schedule.objects.create(
            name=f"hand-made {i:03}", func=PRUNE, schedule_type=Schedule.MINUTES, minutes=5,
            next_run=now, task=f"task-{i}")
        if i % 2:
            make_run(job=f"maintenance.tasks.job_{i}", task_id=schedule.task)
        else:
            Task.objects.create(id=schedule.task, name=f"t{i}", func=schedule.func,
                                started=now, stopped=now, success=False, attempt_count=1)
        if i % 3 == 0:
            operations.schedule_pause(schedule, by="someone@example.com")
        queued(NOOP, args=[i])
        make_run(job=NOOP, queue="analytics", outcome=JobRun.Outcome.RUNNING, heartbeat_at=now,
                 finished_at=None)
        make_run(job=NOOP, queue="analytics", outcome=JobRun.Outcome.RETRYING,
                 retry_at=now + datetime.timedelta(minutes=i + 1))
        alert_open(key=f"test:{i}", summary=f"Alert {i}")
        make_presence(name=f"cluster-{i}", pid=1000 + i, age_s=1 if i % 2 else stale_age())
    # One taken task too.
    OrmQ.objects.filter(pk=queued(PRUNE).pk).update(lock=now + datetime.timedelta(minutes=5))


@pytest.mark.parametrize("n", [5, 50])
def test_query_count_is_bounded(admin_client, managed_schedules, django_assert_max_num_queries,
                                queued, n):
    _populate(n, queued)
    with django_assert_max_num_queries(PAGE_QUERIES):
        response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count('value="Run now"') == n + len(managed_schedules)
    assert text.count('value="Acknowledge"') == min(n, 20)


def test_query_count_does_not_grow(admin_client, managed_schedules, queued):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(PAGE).status_code == 200
        return len(queries)

    _populate(5, queued)
    few = count()
    _populate(45, queued, start=5)
    assert count() == few == PAGE_QUERIES


# --- Schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize("routing", [False, True], ids=["one-cluster", "routing"])
def test_run_now_enqueues_the_schedules_job_on_its_queue(admin_client, settings,
                                                         managed_schedules, routing,
                                                         django_capture_on_commit_callbacks):
    settings.PASTQ_QUEUE_ROUTING = routing
    schedules_sync()
    schedule = Schedule.objects.get(name="pastq:job-records-prune")
    next_run = schedule.next_run
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url("schedule_run", schedule.pk))
    assert response.status_code == 302
    assert response["Location"] == PAGE
    row = OrmQ.objects.get()
    assert row.key == "maintenance"  # the job's queue, whatever the routing
    task = row.task
    assert task["func"] == schedule.func and task["group"] == schedule.name
    assert task["kwargs"] == {}  # the scheduler's own options (q_options) stay behind
    assert ("success", f"Enqueued {schedule.name} now (task {task['id']}); its timetable is "
            "unchanged.") in messages_of(response)
    schedule.refresh_from_db()
    assert schedule.next_run == next_run


def test_run_now_passes_the_schedules_arguments(admin_client,
                                                django_capture_on_commit_callbacks):
    schedule = Schedule.objects.create(name="by hand", func=NOOP, args="7",
                                       schedule_type=Schedule.DAILY)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url("schedule_run", schedule.pk))
    row = OrmQ.objects.get()
    assert row.key == "analytics" and row.task["args"] == (7,)


@pytest.mark.parametrize("fields, reason", [
    ({"func": "os.system", "args": "'touch /tmp/pwned'"}, "is not a job"),
    ({"func": "core.nowhere.nothing"}, "cannot be imported"),
    ({"func": PRUNE, "kwargs": "days=(("}, "its arguments cannot be read"),
    ({"func": PRUNE, "args": "open('x')"}, "its arguments cannot be read"),
], ids=["not-a-job", "not-importable", "bad-kwargs", "bad-args"])
def test_run_now_refuses_with_a_message(admin_client, django_capture_on_commit_callbacks,
                                        fields, reason):
    schedule = Schedule.objects.create(name="odd", schedule_type=Schedule.DAILY, **fields)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url("schedule_run", schedule.pk))
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error" and text.startswith("Not run: odd: ") and reason in text
    assert not OrmQ.objects.exists()


def test_pause_survives_sync_and_resume_restores(admin_client, admin_user, managed_schedules):
    schedule = managed_schedules[0]
    response = admin_client.post(url("schedule_pause", schedule.pk))
    assert response.status_code == 302
    assert ("success", f"Paused {schedule.name}.") in messages_of(response)
    schedule.refresh_from_db()
    assert schedule.repeats == 0
    assert PausedSchedule.objects.get(schedule=schedule).paused_by == admin_user.email

    schedules_sync()
    schedule.refresh_from_db()
    assert schedule.repeats == 0
    text = admin_client.get(PAGE).content.decode()
    assert row_cells(text, f"schedule-{schedule.pk}")[4] == "paused"
    assert url("schedule_resume", schedule.pk) in text
    assert url("schedule_pause", schedule.pk) not in text

    response = admin_client.post(url("schedule_pause", schedule.pk))
    assert ("error", f"Nothing done: {schedule.name} was already paused or has no run left.") \
        in messages_of(response)

    response = admin_client.post(url("schedule_resume", schedule.pk))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.repeats == -1
    assert not PausedSchedule.objects.exists()
    assert any(level == "success" and text.startswith(f"Resumed {schedule.name}; next run ")
               for level, text in messages_of(response))

    response = admin_client.post(url("schedule_resume", schedule.pk))
    assert ("error", f"Nothing done: {schedule.name} was not paused.") in messages_of(response)


def _same_phase(schedule_type: str, before: datetime.datetime, after: datetime.datetime) -> bool:
    if schedule_type == Schedule.MINUTES:
        return (after - before) % datetime.timedelta(minutes=7) == datetime.timedelta(0)
    if schedule_type == Schedule.HOURLY:
        return (after.minute, after.second, after.microsecond) == (
            before.minute, before.second, before.microsecond)
    if schedule_type in (Schedule.DAILY, Schedule.WEEKLY, Schedule.BIWEEKLY):
        days = {Schedule.DAILY: 1, Schedule.WEEKLY: 7, Schedule.BIWEEKLY: 14}[schedule_type]
        return (after - before) % datetime.timedelta(days=days) == datetime.timedelta(0)
    if schedule_type in (Schedule.MONTHLY, Schedule.BIMONTHLY, Schedule.QUARTERLY):
        step = {Schedule.MONTHLY: 1, Schedule.BIMONTHLY: 2, Schedule.QUARTERLY: 3}[schedule_type]
        months = (after.year - before.year) * 12 + after.month - before.month
        return months % step == 0 and (after.day, after.time()) == (before.day, before.time())
    if schedule_type == Schedule.YEARLY:
        return (after.month, after.day, after.time()) == (before.month, before.day, before.time())
    raise AssertionError(schedule_type)


@pytest.mark.parametrize("schedule_type", [t for t, _ in Schedule.TYPE])
def test_pause_and_resume_every_schedule_type(admin_client, schedule_type):
    now = timezone.now()
    # Paused long ago: its next run is 100 days and a bit in the past (day 10: every month
    # has one).
    next_run = (now - datetime.timedelta(days=100)).replace(day=10, hour=3, minute=17, second=5)
    schedule = Schedule.objects.create(
        name=f"every {schedule_type}", func=PRUNE, schedule_type=schedule_type, repeats=5,
        minutes=7 if schedule_type == Schedule.MINUTES else None,
        cron="30 4 * * 1" if schedule_type == Schedule.CRON else None, next_run=now)

    response = admin_client.post(url("schedule_pause", schedule.pk))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.repeats == 0 and PausedSchedule.objects.get().repeats == 5
    text = admin_client.get(PAGE).content.decode()
    assert row_cells(text, f"schedule-{schedule.pk}")[4] == "paused"

    Schedule.objects.filter(pk=schedule.pk).update(next_run=next_run)  # time passes
    response = admin_client.post(url("schedule_resume", schedule.pk))
    assert response.status_code == 302
    assert messages_of(response)[0][0] == "success"
    schedule.refresh_from_db()
    assert schedule.repeats == 5 and not PausedSchedule.objects.exists()
    if schedule_type == Schedule.ONCE:
        assert schedule.next_run == next_run  # a one-off keeps its time: it runs at once
    elif schedule_type == Schedule.CRON:
        assert schedule.next_run == croniter("30 4 * * 1", timezone.now()).get_next(
            datetime.datetime)
    else:
        assert now < schedule.next_run
        assert _same_phase(schedule_type, next_run, schedule.next_run)
        # The first slot after now, not a later one.
        previous = schedule.next_run
        probe = Schedule(schedule_type=schedule_type, minutes=schedule.minutes,
                         next_run=next_run)
        while (step := probe.calculate_next_run(next_run)) < previous:
            next_run = step
        assert next_run <= timezone.now()
    assert row_cells(admin_client.get(PAGE).content.decode(),
                     f"schedule-{schedule.pk}")[4] == "active"


def test_a_resumed_schedule_whose_next_run_is_ahead_keeps_it(admin_client):
    later = timezone.now() + datetime.timedelta(hours=5)
    schedule = Schedule.objects.create(name="later", func=PRUNE, schedule_type=Schedule.DAILY,
                                       next_run=later)
    admin_client.post(url("schedule_pause", schedule.pk))
    admin_client.post(url("schedule_resume", schedule.pk))
    schedule.refresh_from_db()
    assert schedule.next_run == later and schedule.repeats == -1


def test_a_finished_one_off_shows_no_pause_button(admin_client):
    schedule = Schedule.objects.create(name="once, done", func=PRUNE,
                                       schedule_type=Schedule.ONCE, repeats=0)
    text = admin_client.get(PAGE).content.decode()
    cells = row_cells(text, f"schedule-{schedule.pk}")
    assert cells[4] == "finished" and cells[6] == "—"
    assert url("schedule_pause", schedule.pk) not in text
    assert url("schedule_resume", schedule.pk) not in text
    assert url("schedule_run", schedule.pk) in text
    response = admin_client.post(url("schedule_pause", schedule.pk))
    assert ("error", "Nothing done: once, done was already paused or has no run left.") in \
        messages_of(response)
    assert not PausedSchedule.objects.exists()


@pytest.mark.parametrize("action", ["run", "pause", "resume"])
def test_unknown_schedule_is_a_message_not_a_500(admin_client, action):
    response = admin_client.post(url(f"schedule_{action}", 999999), follow=True)
    assert response.status_code == 200
    assert "There is no schedule #999999" in response.content.decode()


# --- Queued tasks ---------------------------------------------------------------------------


def test_cancel_a_waiting_task(admin_client, queued):
    keep, cancel = queued(PRUNE), queued(PRUNE)
    response = admin_client.post(url("task_cancel", cancel.pk))
    assert response.status_code == 302
    assert ("success", f"Queued task #{cancel.pk} cancelled.") in messages_of(response)
    assert list(OrmQ.objects.values_list("pk", flat=True)) == [keep.pk]


@pytest.mark.parametrize("case", ["taken", "unknown"])
def test_cancel_refuses_a_taken_or_unknown_task(admin_client, queued, case):
    task = queued(PRUNE)
    if case == "taken":
        OrmQ.objects.filter(pk=task.pk).update(
            lock=timezone.now() + datetime.timedelta(minutes=5))
        pk = task.pk
    else:
        pk = task.pk + 1000
    response = admin_client.post(url("task_cancel", pk), follow=True)
    assert response.status_code == 200
    assert f"Queued task #{pk} was not cancelled" in response.content.decode()
    assert OrmQ.objects.filter(pk=task.pk).exists()


def test_purge_asks_for_confirmation_first(admin_client, queued):
    waiting = [queued(NOOP) for _ in range(3)]
    other = queued(PRUNE)
    taken = queued(NOOP)
    OrmQ.objects.filter(pk=taken.pk).update(lock=timezone.now() + datetime.timedelta(minutes=5))
    purge = url("queue_purge", "analytics")
    assert {t.key for t in waiting} == {"analytics"}

    response = admin_client.get(purge)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Are you sure" in text and "3 waiting tasks" in text
    assert 'name="confirm" value="yes"' in text
    assert OrmQ.objects.count() == 5

    response = admin_client.post(purge)  # no confirmation: the question again, nothing removed
    assert response.status_code == 200
    assert "Are you sure" in response.content.decode()
    assert OrmQ.objects.count() == 5

    response = admin_client.post(purge, {"confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert ("success", "Purged 3 waiting tasks from 'analytics'.") in messages_of(response)
    assert set(OrmQ.objects.values_list("pk", flat=True)) == {other.pk, taken.pk}


def test_purge_of_an_unknown_queue_is_a_message(admin_client, queued):
    queued(PRUNE)
    response = admin_client.post(url("queue_purge", "nope"), {"confirm": "yes"}, follow=True)
    assert response.status_code == 200
    assert "There is no queue &#x27;nope&#x27;" in response.content.decode()
    assert OrmQ.objects.count() == 1


# --- Who may do what ------------------------------------------------------------------------

POST_ACTIONS = ["schedule_run", "schedule_pause", "schedule_resume", "task_cancel",
                "queue_purge", "alert_acknowledge"]


def _targets(queued) -> dict:
    schedule = Schedule.objects.create(name="nightly", func=PRUNE, schedule_type=Schedule.DAILY)
    task = queued(PRUNE)
    alert_open(key="test:perm", summary="An alert")
    from maintenance.models import OpsAlert

    alert = OpsAlert.objects.get()
    return {"schedule_run": schedule.pk, "schedule_pause": schedule.pk,
            "schedule_resume": schedule.pk, "task_cancel": task.pk,
            "queue_purge": "maintenance", "alert_acknowledge": alert.pk}


@pytest.mark.parametrize("name", ["schedule_run", "schedule_pause", "schedule_resume",
                                  "task_cancel", "alert_acknowledge"])
def test_get_on_an_action_is_405(admin_client, queued, name):
    targets = _targets(queued)
    assert admin_client.get(url(name, targets[name])).status_code == 405
    assert OrmQ.objects.count() == 1


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_cannot_post(client, django_user_model, queued):
    targets = _targets(queued)
    user = django_user_model.objects.create_user(email="student@example.com", password="pw")
    client.force_login(user)
    response = client.post(url("schedule_pause", targets["schedule_pause"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert not PausedSchedule.objects.exists()


def test_staff_without_view_operations_is_refused_the_page(staff_client):
    assert staff_client.get(PAGE).status_code == 403


def test_view_without_run_job_shows_no_buttons_and_every_action_is_403(viewer_client, queued,
                                                                       managed_schedules):
    targets = _targets(queued)
    make_presence()
    response = viewer_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert "nightly" in text and "An alert" in text
    assert "<form" not in content_of(text)
    for value in ("Run now", "Pause", "Resume", "Cancel", "Purge queue", "Acknowledge"):
        assert f'value="{value}"' not in text
    assert "You can look, but running, pausing and cancelling jobs needs" in text

    for name in POST_ACTIONS:
        assert viewer_client.post(url(name, targets[name]), {"confirm": "yes"}).status_code \
            == 403, name
    assert viewer_client.get(url("queue_purge", "maintenance")).status_code == 403
    assert OrmQ.objects.count() == 1
    assert not PausedSchedule.objects.exists()
    from maintenance.models import OpsAlert

    assert OpsAlert.objects.get().acknowledged_at is None


def test_view_and_run_job_may_act(operator_client, queued,
                                  django_capture_on_commit_callbacks):
    targets = _targets(queued)
    text = operator_client.get(PAGE).content.decode()
    for value in ("Run now", "Pause", "Cancel", "Purge queue", "Acknowledge"):
        assert f'value="{value}"' in text
    with django_capture_on_commit_callbacks(execute=True):
        assert operator_client.post(url("schedule_run", targets["schedule_run"])).status_code \
            == 302
    assert OrmQ.objects.count() == 2
    assert operator_client.post(url("schedule_pause", targets["schedule_pause"])) \
        .status_code == 302
    assert PausedSchedule.objects.get().paused_by == "staff@example.com"
    assert operator_client.post(url("schedule_resume", targets["schedule_resume"])) \
        .status_code == 302
    assert not PausedSchedule.objects.exists()
    assert operator_client.post(url("alert_acknowledge", targets["alert_acknowledge"])) \
        .status_code == 302
    assert operator_client.post(url("task_cancel", targets["task_cancel"])).status_code == 302
    assert operator_client.post(url("queue_purge", "maintenance"), {"confirm": "yes"}) \
        .status_code == 302
    assert not OrmQ.objects.exists()


def test_a_superuser_sees_everything(admin_client, queued, managed_schedules):
    targets = _targets(queued)
    make_presence()
    text = admin_client.get(PAGE).content.decode()
    assert "You can look" not in text
    for value in ("Run now", "Pause", "Cancel", "Purge queue", "Acknowledge"):
        assert f'value="{value}"' in text
    assert url("schedule_pause", targets["schedule_pause"]) in text
    assert url("alert_acknowledge", targets["alert_acknowledge"]) in text
    for queue in QUEUES:
        assert row_cells(text, f"queue-{queue}")[1] == "RUNNING"


def test_actions_need_the_csrf_token(admin_user):
    schedule = Schedule.objects.create(name="nightly", func=PRUNE, schedule_type=Schedule.DAILY)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(url("schedule_pause", schedule.pk))
    assert response.status_code == 403
    assert not PausedSchedule.objects.exists()


def test_a_task_signed_with_an_unknown_key_is_listed_not_a_500(admin_client):
    """After a SECRET_KEY rotation without fallbacks the queue may hold tasks nobody can read
    until a cluster takes them out (core.jobs.broker): the page still shows the queue."""
    from django_q import core_signing
    from django_q.signing import PickleSerializer

    payload = core_signing.dumps({"id": "x", "func": PRUNE}, key="an-old-key", salt="pastq",
                                 serializer=PickleSerializer)
    task = OrmQ.objects.create(key="maintenance", payload=payload, lock=timezone.now())
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert row_cells(text, "queue-maintenance")[2] == "1"
    assert row_cells(text, f"task-{task.pk}")[0] == str(task.pk)
