"""Alerts (maintenance/alerts.py): one email per problem, listed on the operations page (the
newest, bounded), acknowledged by a person, resolved when the problem clears: a job that gave
up is resolved by a later success of the same job, delivered as a worker delivers it."""

import datetime

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django_q import scheduler as django_q_scheduler
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from core.jobs import TransientError
from core.jobs.models import JobRun
from core.jobs.packages import PACKAGE_KEY
from core.tests.conftest import deliver
from maintenance import operations
from maintenance.alerts import alert_acknowledge, alert_open, alert_resolve, job_alert_key
from maintenance.models import OpsAlert
from maintenance.tests.conftest import PAGE, row_cells

pytestmark = pytest.mark.django_db

FLAKY = "core.tests.jobs_for_tests.flaky"  # at most 3 attempts; fails its first `failures` calls


@pytest.fixture(autouse=True)
def _admins(settings):
    settings.ADMINS = [("Operators", "ops@example.com")]


@pytest.fixture
def scheduler(monkeypatch):
    """One tick of django-q's own scheduler, as the default cluster runs it: it makes the task
    packages of due schedules. (It closes old connections first, which would end the test's
    transaction.)"""
    monkeypatch.setattr(Conf, "CLUSTER_NAME", Conf.PREFIX)
    monkeypatch.setattr(django_q_scheduler, "close_old_django_connections", lambda: None)
    return django_q_scheduler.scheduler


# --- Opening, once --------------------------------------------------------------------------


def test_an_alert_is_emailed_once_while_it_is_open(mailoutbox):
    assert alert_open(key="k", summary="Disk full", detail="on db-1") is True
    assert alert_open(key="k", summary="Disk full", detail="on db-1") is False
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["ops@example.com"]
    assert "Disk full" in mailoutbox[0].subject and "on db-1" in mailoutbox[0].body
    assert alert_resolve(key="k", resolution="cleaned") is True
    assert alert_resolve(key="k") is False
    assert alert_open(key="k", summary="Disk full again") is True  # a new occurrence
    assert len(mailoutbox) == 2 and OpsAlert.objects.count() == 2


def test_an_alert_whose_email_fails_is_still_recorded(settings, caplog):
    settings.EMAIL_BACKEND = "nowhere.EmailBackend"
    assert alert_open(key="k", summary="Queue down") is True
    assert OpsAlert.objects.get().summary == "Queue down"
    assert "could not be sent" in caplog.text


# --- On the page ----------------------------------------------------------------------------


def test_the_page_lists_the_newest_20_and_links_the_rest(admin_client):
    now = timezone.now()
    for i in range(25):  # alert 24 is the newest
        alert_open(key=f"test:{i}", summary=f"Alert number {i:02}")
        OpsAlert.objects.filter(key=f"test:{i}").update(
            opened_at=now - datetime.timedelta(minutes=100 - i))
    alert_open(key="resolved", summary="Alert resolved")
    alert_resolve(key="resolved")

    text = admin_client.get(PAGE).content.decode()
    assert "Open alerts (25)" in text
    shown = [i for i in range(25) if f"Alert number {i:02}" in text]
    assert shown == list(range(5, 25))  # the newest 20
    assert "Alert resolved" not in text
    link = reverse("admin:maintenance_opsalert_changelist") + "?resolved_at__isnull=True"
    assert f'href="{link}"' in text and "all 25 open alerts" in text
    listing = admin_client.get(link)
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 25


def test_no_link_to_the_rest_when_every_open_alert_is_shown(admin_client):
    for i in range(3):
        alert_open(key=f"test:{i}", summary=f"Alert {i}")
    text = admin_client.get(PAGE).content.decode()
    assert "Open alerts (3)" in text
    assert "open alerts</a>" not in text


def test_acknowledge_records_who_and_when_and_the_alert_stays_listed(admin_client, admin_user):
    alert_open(key="test:ack", summary="Queue analytics is down")
    alert = OpsAlert.objects.get()
    before = timezone.now()
    response = admin_client.post(reverse("operations:alert_acknowledge", args=[alert.pk]),
                                 follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Acknowledged: Queue analytics is down. It stays listed until the problem clears." \
        in text
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user.email
    assert before <= alert.acknowledged_at <= timezone.now()
    assert alert.resolved_at is None
    cells = row_cells(text, f"alert-{alert.pk}")
    assert "Queue analytics is down" in cells[1]
    assert cells[2].startswith(f"by {admin_user.email}")
    assert 'value="Acknowledge"' not in text

    response = admin_client.post(reverse("operations:alert_acknowledge", args=[alert.pk]),
                                 follow=True)
    assert "Nothing done: the alert was already acknowledged or resolved." in \
        response.content.decode()

    alert_resolve(key="test:ack", resolution="served again")
    assert "Queue analytics is down" not in admin_client.get(PAGE).content.decode()


def test_alert_acknowledge_refuses_a_resolved_alert():
    alert_open(key="k", summary="s")
    alert = OpsAlert.objects.get()
    alert_resolve(key="k")
    assert alert_acknowledge(alert, by="someone@example.com") is False
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_acknowledging_an_unknown_alert_is_404(admin_client):
    assert admin_client.post(reverse("operations:alert_acknowledge", args=[99999])) \
        .status_code == 404


# --- A job that gave up, resolved by a later success of the same job -------------------------


def _deliver_until_it_gives_up(django_capture_on_commit_callbacks) -> None:
    """Deliver the newest queued task, then each retry it queues, until the chain ends."""
    package = OrmQ.objects.order_by("-id").first().task
    while True:
        OrmQ.objects.all().delete()  # acknowledged, as the worker does
        with pytest.raises(TransientError), django_capture_on_commit_callbacks(execute=True):
            deliver(package)
        if not OrmQ.objects.exists():
            return
        package = OrmQ.objects.get().task
        assert package[PACKAGE_KEY]["attempt"] > 1


def test_a_schedule_that_gave_up_is_resolved_when_the_schedule_later_succeeds(
        mailoutbox, scheduler, django_capture_on_commit_callbacks):
    cache.delete("alerts-schedule")
    schedule = Schedule.objects.create(
        name="nightly-flaky", func=FLAKY, args="'alerts-schedule', 3",
        schedule_type=Schedule.DAILY, next_run=timezone.now() - datetime.timedelta(seconds=1))
    scheduler()
    _deliver_until_it_gives_up(django_capture_on_commit_callbacks)
    assert list(JobRun.objects.order_by("attempt").values_list("outcome", flat=True)) == [
        "retrying", "retrying", "gave_up"]
    alert = OpsAlert.objects.get()
    assert alert.key == job_alert_key("schedule:nightly-flaky")
    assert "gave up after 3 attempts" in alert.summary and alert.resolved_at is None
    assert len(mailoutbox) == 1

    # A run of another job, or an ad-hoc call of this one, leaves it open.
    deliver({"id": "a" * 32, "func": "core.tests.jobs_for_tests.noop", "args": (1,),
             "kwargs": {}})
    deliver({"id": "b" * 32, "func": FLAKY, "args": ("alerts-other", 0), "kwargs": {}})
    alert.refresh_from_db()
    assert alert.resolved_at is None

    # The schedule's next run (by an operator's "Run now": the same schedule) succeeds.
    with django_capture_on_commit_callbacks(execute=True):
        operations.schedule_run_now(schedule)
    assert deliver(OrmQ.objects.get().task) == {"calls": 4}
    alert.refresh_from_db()
    assert alert.resolved_at is not None and "succeeded" in alert.resolution
    assert len(mailoutbox) == 1  # no email for a resolution


def test_the_next_scheduled_run_resolves_it_too(scheduler, django_capture_on_commit_callbacks):
    cache.delete("alerts-next-run")
    schedule = Schedule.objects.create(
        name="hourly-flaky", func=FLAKY, args="'alerts-next-run', 3",
        schedule_type=Schedule.HOURLY, next_run=timezone.now() - datetime.timedelta(seconds=1))
    scheduler()
    _deliver_until_it_gives_up(django_capture_on_commit_callbacks)
    assert OpsAlert.objects.get().resolved_at is None
    Schedule.objects.filter(pk=schedule.pk).update(
        next_run=timezone.now() - datetime.timedelta(seconds=1))
    scheduler()
    deliver(OrmQ.objects.get().task)
    assert OpsAlert.objects.get().resolved_at is not None


def test_an_ad_hoc_job_is_resolved_by_a_success_with_the_same_arguments(
        mailoutbox, django_capture_on_commit_callbacks):
    from core.jobs import enqueue

    cache.delete("alerts-adhoc")
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(FLAKY, args=["alerts-adhoc", 3])
    _deliver_until_it_gives_up(django_capture_on_commit_callbacks)
    alert = OpsAlert.objects.get()
    assert alert.resolved_at is None

    # The same job with other arguments is another job: the alert stays open.
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(FLAKY, args=["alerts-adhoc-other", 0])
    deliver(OrmQ.objects.get().task)
    alert.refresh_from_db()
    assert alert.resolved_at is None

    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(FLAKY, args=["alerts-adhoc", 3])
    assert deliver(OrmQ.objects.get().task) == {"calls": 4}
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert len(mailoutbox) == 1


def test_an_unnamed_schedule_is_one_job_for_the_scheduler_and_for_run_now(
        scheduler, django_capture_on_commit_callbacks):
    cache.delete("alerts-unnamed")
    schedule = Schedule.objects.create(
        func=FLAKY, args="'alerts-unnamed', 3", schedule_type=Schedule.DAILY,
        next_run=timezone.now() - datetime.timedelta(seconds=1))
    scheduler()
    _deliver_until_it_gives_up(django_capture_on_commit_callbacks)
    alert = OpsAlert.objects.get()
    assert alert.key == job_alert_key(f"schedule:{schedule.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        operations.schedule_run_now(schedule)
    deliver(OrmQ.objects.get().task)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_resubmitting_a_scheduled_runs_failure_resolves_the_schedules_alert(
        admin_client, django_capture_on_commit_callbacks):
    """django-q records a scheduled run's failure with the schedule's name as its group; run
    again from the admin, it is the same job as the schedule's."""
    from django_q.models import Failure

    now = timezone.now()
    failure = Failure.objects.create(
        id="f" * 32, name="f", func="core.tests.jobs_for_tests.noop", args=(1,), kwargs={},
        group="nightly-noop", started=now, stopped=now, success=False, attempt_count=1)
    alert_open(key=job_alert_key("schedule:nightly-noop"), summary="Job noop gave up")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:django_q_failure_changelist"), {
            "action": "resubmit_jobs", "_selected_action": [failure.pk]})
    assert response.status_code == 302
    package = OrmQ.objects.get().task
    assert package["group"] == "nightly-noop"
    deliver(package)
    assert OpsAlert.objects.get().resolved_at is not None
