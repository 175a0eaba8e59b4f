"""Records of watching and operating the system: alerts, paused schedules, and the permissions
of the operations page.

OpsAlert and PausedSchedule were born in `core`; they moved here with their tables
(`core_opsalert`, `core_pausedschedule`) kept as they were, so no row moved (migration 0001).
"""

from django.db import models
from django.utils import timezone


class Operations(models.Model):
    """No table: it holds the operations page's permissions."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_operations", "Can view the operations page and health details"),
            ("run_job", "Can run, pause, resume and cancel jobs and acknowledge alerts"),
        ]

    def __str__(self):
        return "operations"


class OpsAlert(models.Model):
    """An operational problem the staff were told about, once. While it is open no second email
    goes out for the same key. It is resolved when the problem clears (a queue served again, the
    same job succeeding later), and a person can acknowledge it meanwhile."""

    key = models.CharField(max_length=200)
    summary = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=254, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        db_table = "core_opsalert"
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=models.Q(resolved_at__isnull=True),
                                    name="core_opsalert_one_open_per_key"),
        ]
        indexes = [models.Index(fields=["resolved_at", "-opened_at"],
                                name="maint_alert_open_latest")]

    def __str__(self):
        return self.summary


class PausedSchedule(models.Model):
    """A schedule paused from the operations page, with the repeats it had, so resuming restores
    it and sync_schedules (which never touches `repeats` of an existing row) leaves it paused."""

    schedule = models.OneToOneField("django_q.Schedule", on_delete=models.CASCADE,
                                    related_name="pause")
    repeats = models.IntegerField()
    paused_at = models.DateTimeField(auto_now_add=True)
    paused_by = models.CharField(max_length=254, blank=True)

    class Meta:
        db_table = "core_pausedschedule"

    def __str__(self):
        return f"{self.schedule} paused"


class BackupRecord(models.Model):
    """One backup file under BACKUP_DIR (and its manifest beside it): what it holds, whether it
    was verified by a real restore into a scratch database, and where its off-site copy is.
    maintenance/backups/; docs/operations.md, "Backups"."""

    class Status(models.TextChoices):
        CREATING = "creating", "Being written"
        CREATED = "created", "Created (not verified yet)"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted (retention)"

    name = models.CharField(max_length=200, unique=True, help_text="The file name.")
    engine = models.CharField(max_length=20, help_text="sqlite or postgresql")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATING)
    trigger = models.CharField(max_length=20, blank=True,
                               help_text="schedule, command, admin, pre-restore")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    encrypted = models.BooleanField(default=False)
    key_fingerprint = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verify_detail = models.TextField(blank=True)
    offsite_name = models.CharField(max_length=300, blank=True)
    offsite_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("create_backup", "Can create and verify backups")]

    def __str__(self):
        return self.name


class HealthCheckRun(models.Model):
    """One run of the health checks (the scheduled job and `health_check`): the history the
    admin shows and the system report reads. Pruned after MAINTENANCE_HEALTH_RETENTION_DAYS."""

    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=20, help_text="job or command")
    status = models.CharField(max_length=10, help_text="pass, warn or fail")
    duration_ms = models.FloatField(default=0)
    checks = models.JSONField(default=list)

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self):
        return f"{self.status} at {self.checked_at:%Y-%m-%d %H:%M}"


class SystemReport(models.Model):
    """The daily system report: measured figures (counts and growth, queues, jobs, database and
    disk, backups, health, AI backlog), stored, shown in the admin, mailed to the staff."""

    day = models.DateField(unique=True, help_text="The UTC day it reports on.")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, help_text="The health status when it was built.")
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return f"System report {self.day}"
