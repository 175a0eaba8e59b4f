"""Every migration reverses, the models match the migrations, and moving the operations records
from core to maintenance loses no row and no permission grant."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Ordered so that an app is unapplied before the apps it depends on.
APPS_WITH_MIGRATIONS = ["maintenance", "notifications", "analytics", "core"]


@pytest.mark.django_db(transaction=True)
def test_every_app_migrates_to_zero_and_back():
    for app in APPS_WITH_MIGRATIONS:
        call_command("migrate", app, "zero", verbosity=0)
    tables = set(connection.introspection.table_names())
    assert not any(t.startswith(("core_", "analytics_", "notifications_", "maintenance_"))
                   for t in tables)
    call_command("migrate", verbosity=0)
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration(run_command):
    code, out, err = run_command("makemigrations", "--check", "--dry-run")
    assert code == 0, out + err


def _migrate(targets):
    """Migrate to `targets`; the historical models at the last of them."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state([targets[-1]]).apps


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_earlier_layout_keeps_its_rows_and_grants():
    """The layout before the hardening work: OpsAlert, PausedSchedule and the run_job permission
    in core (core 0002). Migrating to the current layout moves them to maintenance in place."""
    old = _migrate([("maintenance", None), ("core", "0002_job_records")])
    ContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    Group = old.get_model("auth", "Group")
    User = old.get_model("core", "User")
    Schedule = old.get_model("django_q", "Schedule")
    now = timezone.now()
    # What post_migrate had created on that database.
    jobrun_type = ContentType.objects.get_or_create(app_label="core", model="jobrun")[0]
    alert_type = ContentType.objects.get_or_create(app_label="core", model="opsalert")[0]
    run_job = Permission.objects.get_or_create(
        content_type=jobrun_type, codename="run_job",
        defaults={"name": "Can run, pause, resume and cancel jobs"})[0]
    view_alert = Permission.objects.get_or_create(
        content_type=alert_type, codename="view_opsalert",
        defaults={"name": "Can view ops alert"})[0]
    operators = Group.objects.create(name="operators")
    operators.permissions.add(run_job, view_alert)
    oncall = User.objects.create(email="oncall@example.com", is_staff=True)
    oncall.user_permissions.add(run_job)
    User.objects.create(email="bystander@example.com", is_staff=True)
    old.get_model("core", "OpsAlert").objects.create(key="queue-stalled:analytics",
                                                     summary="stalled", detail="d")
    schedule = Schedule.objects.create(name="nightly", func="x", schedule_type="D", repeats=0,
                                       next_run=now)
    old.get_model("core", "PausedSchedule").objects.create(schedule=schedule, repeats=-1,
                                                           paused_by="ops@example.com")
    old.get_model("core", "JobRun").objects.create(job="j", queue="analytics", chain="c",
                                                   attempt=1, started_at=now,
                                                   outcome="succeeded")

    call_command("migrate", verbosity=0)

    from django.contrib.auth.models import Group as CurrentGroup
    from django.contrib.auth.models import Permission as CurrentPermission

    from core.jobs.models import JobRun
    from core.models import User as CurrentUser
    from maintenance.models import OpsAlert, PausedSchedule

    alert = OpsAlert.objects.get()
    assert (alert.key, alert.summary, alert.detail) == ("queue-stalled:analytics", "stalled", "d")
    assert alert.resolved_at is None and alert.acknowledged_at is None
    paused = PausedSchedule.objects.get()
    assert (paused.schedule.name, paused.repeats, paused.paused_by) == (
        "nightly", -1, "ops@example.com")
    assert JobRun.objects.get().chain == "c"
    assert not CurrentPermission.objects.filter(content_type__app_label="core",
                                                codename="run_job").exists()
    group = CurrentGroup.objects.get(name="operators")
    granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
    assert granted == {"maintenance.run_job", "maintenance.view_operations",
                       "maintenance.view_opsalert"}
    oncall = CurrentUser.objects.get(email="oncall@example.com")
    assert oncall.has_perm("maintenance.run_job")
    assert oncall.has_perm("maintenance.view_operations")
    assert not CurrentUser.objects.get(email="bystander@example.com").has_perm(
        "maintenance.view_operations")


@pytest.mark.django_db(transaction=True)
def test_students_added_in_the_admin_before_the_fix_get_a_profile_and_preferences():
    old = _migrate([("notifications", "0001_initial"),
                    ("core", "0003_job_plumbing_leases_and_presence")])
    User = old.get_model("core", "User")
    bare = User.objects.create(email="added-in-admin@example.com")
    staff = User.objects.create(email="staff@example.com", is_staff=True)

    call_command("migrate", verbosity=0)

    from core.models import StudentProfile
    from notifications.models import NotificationPreference

    assert StudentProfile.objects.get(user_id=bare.pk).timezone == "UTC"
    assert NotificationPreference.objects.filter(user_id=bare.pk).exists()
    assert not StudentProfile.objects.filter(user_id=staff.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_old_achievement_definitions_are_replaced_by_the_new_rules():
    """Before core 0007 achievements counted attempts and correct answers; the migration
    replaces them with the rules over distinct questions and adds subject mastery. No student
    had earned any (nothing stored earned achievements then), so nothing is recomputed."""
    old = _migrate([("analytics", None), ("core", "0006_question_steps")])
    Achievement = old.get_model("core", "Achievement")
    for code, kind, threshold in [("first-answer", "attempts", 1), ("answers-100", "attempts", 100),
                                  ("correct-50", "correct", 50), ("streak-7", "streak", 7),
                                  ("accuracy-80", "accuracy", 80), ("subjects-3", "subjects", 3),
                                  ("sessions-10", "sessions", 10)]:
        Achievement.objects.create(code=code, title=code, description="old", kind=kind,
                                   threshold=threshold)

    call_command("migrate", verbosity=0)

    from core.catalogue import ACHIEVEMENTS
    from core.models import Achievement as Current

    rows = {a.code: a for a in Current.objects.all()}
    assert set(rows) == {spec[0] for spec in ACHIEVEMENTS}
    assert {a.kind for a in rows.values()} == {"streak", "questions", "accuracy", "mastery"}
    assert rows["accuracy-80"].min_questions == 50
    assert rows["accuracy-80"].description != "old"
    mastery = rows["subject-mastery"]
    assert (mastery.threshold, mastery.min_questions, mastery.min_topics,
            mastery.window_days) == (80, 30, 3, 90)
