"""Records of watching and operating the system: alerts, paused schedules, and the permissions
of the operations page.

OpsAlert and PausedSchedule were born in `core`; they moved here with their tables
(`core_opsalert`, `core_pausedschedule`) kept as they were, so no row moved (migration 0001).
"""

from django.db import models


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
