"""Records of the job plumbing: the run log and the clusters' presence.

They belong to the `core` app (their tables are `core_jobrun`, `core_clusterpresence`) but live
with the plumbing, which imports nothing else of the project.
"""

from django.db import models


class JobRun(models.Model):
    """One delivery of a job to a worker: written when it starts, updated while it runs (its
    lease's heartbeat) and when it ends.

    Attempts of one logical job share a `chain`: the first delivery's django-q task id, carried
    to retries. Unlike django-q's Task rows it survives pruning, and it is written before the job
    body runs, so a job that kills its worker still leaves a trace that caps its redeliveries.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        RETRYING = "retrying", "Failed, retry scheduled"
        GAVE_UP = "gave_up", "Gave up (attempts exhausted)"
        LOST = "lost", "Lost (worker died)"
        INTERRUPTED = "interrupted", "Interrupted (worker stopped; delivered again)"

    FAILURES = (Outcome.FAILED, Outcome.RETRYING, Outcome.GAVE_UP, Outcome.LOST)
    FINISHED = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RETRYING, Outcome.GAVE_UP)

    job = models.CharField(max_length=200, db_index=True, help_text="Dotted path of the task.")
    queue = models.CharField(max_length=40)
    chain = models.CharField(max_length=40, help_text="Shared by every attempt of one job.")
    attempt = models.PositiveSmallIntegerField()
    task_id = models.CharField(max_length=40, blank=True, db_index=True,
                               help_text="django-q task id of this delivery.")
    identity = models.CharField(
        max_length=250, blank=True, db_index=True,
        help_text="What a person would call 'the same job': its schedule, or the job with its "
                  "arguments. An alert that this job gave up resolves when it later succeeds.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    host = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Renewed every few seconds while the job runs (its lease); a running job "
                  "whose heartbeat stopped died with its worker.")
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
            models.Index(fields=["queue", "outcome"], name="core_jobrun_queue_outcome"),
        ]

    def __str__(self):
        return f"{self.job} #{self.attempt} {self.outcome}"


class ClusterPresence(models.Model):
    """A `qcluster` as its sentinel last reported it. The sentinel writes this row every few
    seconds, whatever its workers are doing, so a busy cluster is never taken for a dead one and
    a dead one is noticed from its `last_seen_at` alone: the one liveness signal (see
    core.jobs.liveness)."""

    class Status(models.TextChoices):
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"

    cluster_id = models.UUIDField(unique=True)
    name = models.CharField(max_length=100, help_text="The django-q cluster name.")
    queues = models.JSONField(default=list, help_text="The queues it serves.")
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField(help_text="The qcluster process.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTING)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    workers = models.PositiveSmallIntegerField(default=0)
    worker_pids = models.JSONField(default=list, blank=True)
    busy_workers = models.PositiveSmallIntegerField(default=0)
    local_queue = models.PositiveIntegerField(
        default=0, help_text="Tasks taken from the database, waiting in the cluster for a worker.")
    reincarnations = models.PositiveIntegerField(default=0)
    recoveries = models.PositiveIntegerField(
        default=0, help_text="Times the cluster restarted its workers after it found them wedged.")

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name_plural = "cluster presences"

    def __str__(self):
        return f"{self.name} on {self.host} (pid {self.pid})"
