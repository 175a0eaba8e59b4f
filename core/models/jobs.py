"""Records of the job plumbing (core/jobs.py): our own run log, queue heartbeats, alerts."""

from django.db import models


class JobRun(models.Model):
    """One execution of a job: written when it starts, updated when it ends.

    Attempts of one logical job share a `chain`: the first delivery's django-q task id, carried
    to retries. Unlike django-q's Task rows it survives `save_limit` pruning, and it is written
    before the job body runs, so a job that kills its worker still leaves a trace that caps its
    redeliveries.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        RETRYING = "retrying", "Failed, retry scheduled"
        GAVE_UP = "gave_up", "Gave up (attempts exhausted)"
        LOST = "lost", "Lost (worker died)"
        DUPLICATE = "duplicate", "Skipped duplicate delivery"

    FAILURES = (Outcome.FAILED, Outcome.RETRYING, Outcome.GAVE_UP, Outcome.LOST)

    job = models.CharField(max_length=200, db_index=True, help_text="Dotted path of the task.")
    queue = models.CharField(max_length=40)
    chain = models.CharField(max_length=40, help_text="Shared by every attempt of one job.")
    attempt = models.PositiveSmallIntegerField()
    task_id = models.CharField(max_length=40, blank=True, db_index=True,
                               help_text="django-q task id of this delivery.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    host = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)
    retry_delay_s = models.FloatField(null=True, blank=True,
                                      help_text="Backoff chosen before the next attempt.")
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "attempt"], name="core_jobrun_unique_attempt"),
        ]
        indexes = [
            models.Index(fields=["outcome", "started_at"], name="core_jobrun_outcome"),
            models.Index(fields=["job", "-started_at"], name="core_jobrun_job_latest"),
        ]
        permissions = [("run_job", "Can run, pause, resume and cancel jobs")]

    def __str__(self):
        return f"{self.job} #{self.attempt} {self.outcome}"


class QueueHeartbeat(models.Model):
    """The last time a worker of each queue ran the heartbeat job: cluster liveness."""

    queue = models.CharField(max_length=40, unique=True)
    beat_at = models.DateTimeField()
    host = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self):
        return f"{self.queue} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class OpsAlert(models.Model):
    """An operational problem the staff were told about, once. It stays open until the problem
    clears; while it is open no second email goes out for the same key."""

    key = models.CharField(max_length=200)
    summary = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=models.Q(resolved_at__isnull=True),
                                    name="core_opsalert_one_open_per_key"),
        ]

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

    def __str__(self):
        return f"{self.schedule} paused"
