"""The operations records move here from core, without moving a row.

OpsAlert and PausedSchedule keep their tables (core_opsalert, core_pausedschedule): only
Django's model state moves (core 0003 dropped them from core's state). Their content types are
renamed to this app, so permissions on them follow, and the permission to operate jobs moves
from `core.run_job` to `maintenance.run_job` with every user's and group's grant; whoever could
run jobs may also view the operations page (`maintenance.view_operations`), which any staff
member could before.
"""

import django.db.models.deletion
from django.db import migrations, models

MOVED_MODELS = ("opsalert", "pausedschedule")
NEW_PERMISSIONS = {
    "view_operations": "Can view the operations page and health details",
    "run_job": "Can run, pause, resume and cancel jobs and acknowledge alerts",
}


def _grants_move(apps, *, source: tuple[str, str, str], targets: list[tuple[str, str, str]],
                 names: dict[str, str]) -> None:
    """Copy every grant of the permission `source` (app, model, codename) to `targets` (created
    when missing), then delete `source`."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("core", "User")
    old = Permission.objects.filter(content_type__app_label=source[0],
                                    content_type__model=source[1], codename=source[2]).first()
    new = []
    for app_label, model, codename in targets:
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename,
            defaults={"name": names.get(codename, codename)})
        new.append(permission)
    if old is None:
        return
    group_grants = Group.permissions.through
    user_grants = User.user_permissions.through
    group_ids = list(group_grants.objects.filter(permission=old).values_list("group_id", flat=True))
    user_ids = list(user_grants.objects.filter(permission=old).values_list("user_id", flat=True))
    for permission in new:
        group_grants.objects.bulk_create(
            [group_grants(group_id=g, permission=permission) for g in group_ids],
            ignore_conflicts=True)
        user_grants.objects.bulk_create(
            [user_grants(user_id=u, permission=permission) for u in user_ids],
            ignore_conflicts=True)
    old.delete()


def forwards(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED_MODELS:
        if not ContentType.objects.filter(app_label="maintenance", model=model).exists():
            ContentType.objects.filter(app_label="core", model=model).update(
                app_label="maintenance")
    _grants_move(apps, source=("core", "jobrun", "run_job"),
                 targets=[("maintenance", "operations", "run_job"),
                          ("maintenance", "operations", "view_operations")],
                 names=NEW_PERMISSIONS)


def backwards(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED_MODELS:
        if not ContentType.objects.filter(app_label="core", model=model).exists():
            ContentType.objects.filter(app_label="maintenance", model=model).update(
                app_label="core")
    _grants_move(apps, source=("maintenance", "operations", "run_job"),
                 targets=[("core", "jobrun", "run_job")],
                 names={"run_job": "Can run, pause, resume and cancel jobs"})
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="maintenance",
                              codename="view_operations").delete()


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0003_job_plumbing_leases_and_presence"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="OpsAlert",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("key", models.CharField(max_length=200)),
                        ("summary", models.CharField(max_length=300)),
                        ("detail", models.TextField(blank=True)),
                        ("opened_at", models.DateTimeField(auto_now_add=True)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "core_opsalert",
                        "ordering": ["-opened_at"],
                        "constraints": [models.UniqueConstraint(
                            condition=models.Q(("resolved_at__isnull", True)), fields=("key",),
                            name="core_opsalert_one_open_per_key")],
                    },
                ),
                migrations.CreateModel(
                    name="PausedSchedule",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("repeats", models.IntegerField()),
                        ("paused_at", models.DateTimeField(auto_now_add=True)),
                        ("paused_by", models.CharField(blank=True, max_length=254)),
                        ("schedule", models.OneToOneField(
                            on_delete=django.db.models.deletion.CASCADE, related_name="pause",
                            to="django_q.schedule")),
                    ],
                    options={"db_table": "core_pausedschedule"},
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="opsalert",
            name="acknowledged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="opsalert",
            name="acknowledged_by",
            field=models.CharField(blank=True, max_length=254),
        ),
        migrations.AddField(
            model_name="opsalert",
            name="resolution",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddIndex(
            model_name="opsalert",
            index=models.Index(fields=["resolved_at", "-opened_at"],
                               name="maint_alert_open_latest"),
        ),
        migrations.CreateModel(
            name="Operations",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False,
                                        verbose_name="ID")),
            ],
            options={
                "managed": False,
                "default_permissions": (),
                "permissions": [
                    ("view_operations", "Can view the operations page and health details"),
                    ("run_job", "Can run, pause, resume and cancel jobs and acknowledge alerts"),
                ],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
