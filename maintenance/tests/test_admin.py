"""The admin for operating the system (maintenance/admin.py): read-only job records, and
django-q's own pages made safe: a schedule runs only a declared job, never a hook; changing
schedules needs maintenance.run_job; queued tasks are edited by superusers only; resubmitting
goes through core.jobs.enqueue."""

import datetime

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

from core.jobs.models import ClusterPresence, JobRun
from maintenance.alerts import alert_open
from maintenance.models import OpsAlert
from maintenance.tests.conftest import PAGE, RUN, grant, make_presence, make_run
from pastq.admin import PastqAdminSite

pytestmark = pytest.mark.django_db

PRUNE = "maintenance.tasks.job_records_prune"
ADD = reverse("admin:django_q_schedule_add")
SCHEDULE_PERMS = ("django_q.add_schedule", "django_q.change_schedule", "django_q.view_schedule")


def _form(**fields) -> dict:
    """What the add/change form of a schedule posts."""
    now = timezone.now() + datetime.timedelta(hours=1)
    return {"name": "by hand", "func": PRUNE, "hook": "", "args": "", "kwargs": "days=30",
            "schedule_type": Schedule.DAILY, "minutes": "", "repeats": "-1",
            "next_run_0": f"{now:%Y-%m-%d}", "next_run_1": f"{now:%H:%M:%S}", "cron": "",
            "cluster": "", "intended_date_kwarg": "", "_save": "Save", **fields}


def _messages(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def scheduler_client(client, staff_user):
    """Staff with django-q's add/change schedule permissions and maintenance.run_job."""
    client.force_login(grant(staff_user, *SCHEDULE_PERMS, RUN))
    return client


@pytest.fixture
def schedule_perms_only_client(client, staff_user):
    """Staff with django-q's schedule permissions but not maintenance.run_job."""
    client.force_login(grant(staff_user, *SCHEDULE_PERMS))
    return client


# --- The site -------------------------------------------------------------------------------


def test_the_site_is_pastqs_and_django_q_admin_is_still_there():
    assert isinstance(admin.site, PastqAdminSite)
    assert admin.site.site_header == "pastq operations"
    assert admin.site.site_title == "pastq"
    for model in (Schedule, OrmQ, Failure, Success, JobRun, ClusterPresence, OpsAlert):
        assert model in admin.site._registry


def test_admin_index_links_to_the_operations_page(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert f'href="{PAGE}"' in response.content.decode()


# --- Schedules: only declared jobs, no hooks ------------------------------------------------


@pytest.mark.parametrize("func", ["os.system", "subprocess.call", "builtins.eval",
                                  "core.services.catalogue_load", "no.such.thing"])
def test_a_callable_that_is_not_a_job_is_a_form_error(scheduler_client, func):
    response = scheduler_client.post(ADD, _form(func=func, args="'touch /tmp/pwned'",
                                                kwargs=""))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "Only declared jobs can be scheduled" in errors["func"][0]
    assert not Schedule.objects.exists()


def test_a_changed_func_is_checked_too(scheduler_client):
    schedule = Schedule.objects.create(name="nightly", func=PRUNE, schedule_type=Schedule.DAILY)
    url = reverse("admin:django_q_schedule_change", args=[schedule.pk])
    response = scheduler_client.post(url, _form(name="nightly", func="os.system"))
    assert response.status_code == 200
    assert "func" in response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.func == PRUNE


def test_a_hook_is_refused(scheduler_client):
    response = scheduler_client.post(ADD, _form(hook="os.system"))
    assert response.status_code == 200
    assert "Hooks are not used here" in response.context["adminform"].form.errors["hook"][0]
    assert not Schedule.objects.exists()


def test_arguments_that_cannot_be_read_are_a_form_error(scheduler_client):
    response = scheduler_client.post(ADD, _form(kwargs="days=__import__('os')"))
    assert response.status_code == 200
    assert "The arguments cannot be read" in str(response.context["adminform"].form.errors)
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("routing, cluster", [(True, "maintenance"), (False, None)],
                         ids=["routing", "one-cluster"])
def test_a_declared_job_is_saved_on_its_queues_cluster(scheduler_client, settings, routing,
                                                       cluster):
    settings.PASTQ_QUEUE_ROUTING = routing
    response = scheduler_client.post(ADD, _form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = Schedule.objects.get()
    assert (schedule.func, schedule.hook, schedule.cluster) == (PRUNE, None, cluster)


def test_a_cluster_given_by_hand_is_kept(scheduler_client, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    assert scheduler_client.post(ADD, _form(cluster="analytics")).status_code == 302
    assert Schedule.objects.get().cluster == "analytics"


def test_without_run_job_schedules_cannot_be_added_changed_or_deleted(
        schedule_perms_only_client, staff_user):
    client = schedule_perms_only_client
    grant(staff_user, "django_q.delete_schedule")
    schedule = Schedule.objects.create(name="nightly", func=PRUNE, schedule_type=Schedule.DAILY)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, _form(name="another")).status_code == 403
    change = reverse("admin:django_q_schedule_change", args=[schedule.pk])
    assert client.post(change, _form(name="renamed")).status_code == 403
    response = client.get(change)  # read-only: django-q's change permission implies viewing
    assert response.status_code == 200 and 'name="_save"' not in response.content.decode()
    delete = reverse("admin:django_q_schedule_delete", args=[schedule.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert list(Schedule.objects.values_list("name", flat=True)) == ["nightly"]


# --- Queued tasks ---------------------------------------------------------------------------


def test_queued_tasks_are_edited_by_superusers_only(client, staff_user, admin_client,
                                                    django_capture_on_commit_callbacks):
    from core.jobs import enqueue

    with django_capture_on_commit_callbacks(execute=True):
        enqueue(PRUNE)
    task = OrmQ.objects.get()
    change = reverse("admin:django_q_ormq_change", args=[task.pk])
    later = timezone.now() + datetime.timedelta(days=1)
    data = {"key": "analytics", "lock_0": f"{later:%Y-%m-%d}", "lock_1": f"{later:%H:%M:%S}",
            "_save": "Save"}

    client.force_login(grant(staff_user, "django_q.change_ormq", "django_q.view_ormq", RUN))
    assert client.post(change, data).status_code == 403
    response = client.get(change)
    assert response.status_code == 200 and 'name="_save"' not in response.content.decode()
    task.refresh_from_db()
    assert task.key == "maintenance"

    assert admin_client.post(change, data).status_code == 302
    task.refresh_from_db()
    assert task.key == "analytics"


def test_cancelling_a_queued_task_in_the_admin_needs_run_job(client, staff_user, admin_client,
                                                             django_capture_on_commit_callbacks):
    from core.jobs import enqueue

    with django_capture_on_commit_callbacks(execute=True):
        enqueue(PRUNE)
    task = OrmQ.objects.get()
    delete = reverse("admin:django_q_ormq_delete", args=[task.pk])
    client.force_login(grant(staff_user, "django_q.delete_ormq", "django_q.view_ormq"))
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert OrmQ.objects.exists()
    client.force_login(grant(staff_user, RUN))
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not OrmQ.objects.exists()


# --- Resubmitting results -------------------------------------------------------------------


def _failure(func=PRUNE, pk="f" * 32, **fields):
    now = timezone.now()
    return Failure.objects.create(id=pk, name=pk[:8], func=func, started=now, stopped=now,
                                  success=False, attempt_count=1, **fields)


def test_resubmit_queues_a_declared_job_on_its_queue(admin_client,
                                                    django_capture_on_commit_callbacks):
    failure = _failure(kwargs={"days": 9})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:django_q_failure_changelist"), {
            "action": "resubmit_jobs", "_selected_action": [failure.pk]})
    assert response.status_code == 302
    assert ("info", "1 tasks queued again.") in _messages(response)
    row = OrmQ.objects.get()
    assert row.key == "maintenance"
    assert (row.task["func"], row.task["kwargs"]) == (PRUNE, {"days": 9})
    assert not Failure.objects.filter(pk=failure.pk).exists()  # resubmitted once, as django-q


def test_resubmit_refuses_what_is_not_a_job(admin_client):
    failure = _failure(func="os.system", args=("touch /tmp/pwned",))
    response = admin_client.post(reverse("admin:django_q_failure_changelist"), {
        "action": "resubmit_jobs", "_selected_action": [failure.pk]})
    assert response.status_code == 302
    assert ("info", "0 tasks queued again.") in _messages(response)
    assert any(level == "warning" and "not a job" in text
               for level, text in _messages(response))
    assert not OrmQ.objects.exists()
    assert Failure.objects.filter(pk=failure.pk).exists()  # kept: nothing was resubmitted


def test_django_qs_own_resubmit_is_not_offered(admin_client):
    _failure()
    response = admin_client.get(reverse("admin:django_q_failure_changelist"))
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert "resubmit_jobs" in actions and "resubmit_task" not in actions


def test_resubmit_needs_run_job(client, staff_user):
    client.force_login(grant(staff_user, "django_q.view_failure", "django_q.change_failure",
                             "django_q.view_success", "django_q.change_success"))
    failure = _failure()
    now = timezone.now()
    success = Success.objects.create(id="s" * 32, name="s", func=PRUNE, started=now,
                                     stopped=now, success=True, attempt_count=1)
    for changelist, pk in (("django_q_failure_changelist", failure.pk),
                           ("django_q_success_changelist", success.pk)):
        response = client.post(reverse(f"admin:{changelist}"), {
            "action": "resubmit_jobs", "_selected_action": [pk]})
        assert response.status_code == 302
        assert ("error", f"Running jobs needs {RUN}.") in _messages(response)
    assert not OrmQ.objects.exists()


# --- Records of the job plumbing ------------------------------------------------------------


def test_job_records_are_read_only_in_the_admin(admin_client):
    records = {"core_jobrun": make_run(), "core_clusterpresence": make_presence()}
    alert_open(key="k", summary="An alert")
    records["maintenance_opsalert"] = OpsAlert.objects.get()
    for name, record in records.items():
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:{name}_add")).status_code == 403
        response = admin_client.get(reverse(f"admin:{name}_change", args=[record.pk]))
        assert response.status_code == 200
        assert 'name="_save"' not in response.content.decode()


def test_the_open_alert_filter_works(admin_client):
    alert_open(key="a", summary="Open one")
    alert_open(key="b", summary="Resolved one")
    OpsAlert.objects.filter(key="b").update(resolved_at=timezone.now())
    response = admin_client.get(reverse("admin:maintenance_opsalert_changelist")
                                + "?resolved_at__isempty=1")
    assert [a.summary for a in response.context["cl"].result_list] == ["Open one"]
