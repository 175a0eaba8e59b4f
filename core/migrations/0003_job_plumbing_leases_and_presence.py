"""The job plumbing's records after the hardening work:

- OpsAlert and PausedSchedule move to the maintenance app. Only Django's model state moves:
  their tables (core_opsalert, core_pausedschedule) and rows stay (maintenance 0001 takes them).
- QueueHeartbeat goes: liveness now comes from ClusterPresence, written by each cluster's
  sentinel.
- JobRun gains a lease heartbeat and an identity; its permission moves to maintenance.
"""

import django.db.models.deletion  # noqa: F401
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0002_job_records"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="OpsAlert"),
                migrations.DeleteModel(name="PausedSchedule"),
            ],
            database_operations=[],
        ),
        migrations.DeleteModel(name="QueueHeartbeat"),
        migrations.AlterModelOptions(name="jobrun", options={"ordering": ["-started_at"]}),
        migrations.AddField(
            model_name="jobrun",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="Renewed every few seconds while the job runs (its lease); a running "
                          "job whose heartbeat stopped died with its worker."),
        ),
        migrations.AddField(
            model_name="jobrun",
            name="identity",
            field=models.CharField(
                blank=True, db_index=True, max_length=250,
                help_text="What a person would call 'the same job': its schedule, or the job "
                          "with its arguments. An alert that this job gave up resolves when it "
                          "later succeeds."),
        ),
        migrations.AlterField(
            model_name="jobrun",
            name="outcome",
            field=models.CharField(
                choices=[("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
                         ("retrying", "Failed, retry scheduled"),
                         ("gave_up", "Gave up (attempts exhausted)"),
                         ("lost", "Lost (worker died)"),
                         ("interrupted", "Interrupted (worker stopped; delivered again)")],
                default="running", max_length=12),
        ),
        migrations.AddIndex(
            model_name="jobrun",
            index=models.Index(fields=["queue", "outcome"], name="core_jobrun_queue_outcome"),
        ),
        migrations.CreateModel(
            name="ClusterPresence",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("cluster_id", models.UUIDField(unique=True)),
                ("name", models.CharField(help_text="The django-q cluster name.", max_length=100)),
                ("queues", models.JSONField(default=list, help_text="The queues it serves.")),
                ("host", models.CharField(max_length=200)),
                ("pid", models.PositiveIntegerField(help_text="The qcluster process.")),
                ("status", models.CharField(
                    choices=[("starting", "Starting"), ("running", "Running"),
                             ("stopping", "Stopping"), ("stopped", "Stopped")],
                    default="starting", max_length=10)),
                ("started_at", models.DateTimeField()),
                ("last_seen_at", models.DateTimeField(db_index=True)),
                ("stopped_at", models.DateTimeField(blank=True, null=True)),
                ("workers", models.PositiveSmallIntegerField(default=0)),
                ("worker_pids", models.JSONField(blank=True, default=list)),
                ("busy_workers", models.PositiveSmallIntegerField(default=0)),
                ("local_queue", models.PositiveIntegerField(
                    default=0, help_text="Tasks taken from the database, waiting in the "
                                         "cluster for a worker.")),
                ("reincarnations", models.PositiveIntegerField(default=0)),
                ("recoveries", models.PositiveIntegerField(
                    default=0, help_text="Times the cluster restarted its workers after it "
                                         "found them wedged.")),
            ],
            options={"ordering": ["-last_seen_at"], "verbose_name_plural": "cluster presences"},
        ),
    ]
