"""What `/metrics` exposes, in the Prometheus text format, through prometheus-client.

Every figure is read from the database on each scrape by one custom collector on a private
registry. Nothing is counted in process memory: web servers run several gunicorn processes and
the work happens in other processes (the qcluster workers), so an in-process counter would show
one process's share and restart from zero with it. The database is the one place that knows.

Job records and email rows are pruned nightly, so a counter derived from them would go down.
Everything here is therefore a gauge (or a gauge histogram) over a stated window: job runs that
ended in the last hour, emails created in the last 24 hours, and states as they are now (queue
depth, open alerts, AI steps, backup age, the latest health check). docs/metrics.md lists each
family with its labels, window and meaning.

A scrape runs a fixed number of queries (eleven, one fewer with NOTIFICATIONS_PAUSED set),
whatever the number of rows.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from core.jobs import liveness
from core.jobs.models import JobRun
from core.models import QuestionStep
from maintenance.models import BackupRecord, HealthCheckRun, OpsAlert
from notifications.models import Notification
from notifications.preferences import student_email_paused

PREFIX = "pastq"
JOB_WINDOW = datetime.timedelta(hours=1)
EMAIL_WINDOW = datetime.timedelta(hours=24)
# Upper bounds of the job duration buckets, in seconds (the longest queue time limit is 1800 s).
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
HEALTH_STATUSES = ("pass", "warn", "fail")
FINISHED_OUTCOMES = [o for o in JobRun.Outcome.values if o != JobRun.Outcome.RUNNING]


def _bucket_label(bound: float) -> str:
    return str(float(bound))


class DatabaseCollector:
    """Reads every figure from the database when the registry is collected (each scrape).

    No `describe()`: registering it must not query (the registry calls describe, or with
    auto_describe collect, at registration, which would happen at import time)."""

    def __init__(self, now=None):
        self._now = now  # a fixed clock for tests; None: timezone.now() at each scrape

    def collect(self) -> Iterator[Metric]:
        now = self._now or timezone.now()
        yield from self._queues(now)
        yield from self._jobs(now)
        yield from self._alerts()
        yield from self._emails(now)
        yield from self._ai_steps()
        yield from self._backups(now)
        yield from self._health(now)

    # --- Queues (core.jobs.liveness: four queries) ----------------------------------------

    def _queues(self, now) -> Iterator[Metric]:
        states = liveness.queue_states(now)
        served = GaugeMetricFamily(
            f"{PREFIX}_queue_served",
            "1 while a live qcluster serves the queue (running or starting), else 0.",
            labels=["queue"])
        waiting = GaugeMetricFamily(
            f"{PREFIX}_queue_waiting_tasks",
            "Tasks waiting to be taken now (the queue depth), retries not yet due excluded.",
            labels=["queue"])
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_wait_seconds",
            "How long the oldest waiting task has waited, now; 0 when none waits.",
            labels=["queue"])
        running = GaugeMetricFamily(
            f"{PREFIX}_queue_running_jobs",
            "Jobs running now (their lease's heartbeat is fresh).", labels=["queue"])
        retries = GaugeMetricFamily(
            f"{PREFIX}_queue_retries_pending",
            "Failed attempts waiting for their backoff before the next attempt, now.",
            labels=["queue"])
        for state in states:
            served.add_metric([state.queue], 1 if state.served else 0)
            waiting.add_metric([state.queue], state.waiting)
            oldest.add_metric([state.queue], round(state.oldest_waiting_s or 0.0, 3))
            running.add_metric([state.queue], state.running)
            retries.add_metric([state.queue], state.delayed)
        yield from (served, waiting, oldest, running, retries)

    # --- Job runs over the last hour (one query) ------------------------------------------

    def _jobs(self, now) -> Iterator[Metric]:
        since = now - JOB_WINDOW
        longest = max(q["timeout"] for q in settings.PASTQ_QUEUES.values())
        # A run that ended in the window started at most one time limit before it (plus the
        # lease that notices a lost one). Naming every finished outcome and bounding
        # started_at lets the (outcome, started_at) index serve the query.
        buckets = {
            f"le_{i}": Count("id", filter=Q(duration_ms__lte=int(bound * 1000)))
            for i, bound in enumerate(DURATION_BUCKETS_S)
        }
        rows = (JobRun.objects
                .filter(outcome__in=FINISHED_OUTCOMES, finished_at__gte=since,
                        started_at__gte=since - datetime.timedelta(seconds=longest + 600))
                .values("job", "outcome")
                .annotate(runs=Count("id"), timed=Count("duration_ms"),
                          total_ms=Sum("duration_ms"), **buckets)
                .order_by("job", "outcome"))
        runs = GaugeMetricFamily(
            f"{PREFIX}_job_runs_last_hour",
            "Job runs that ended in the last hour, by job and outcome (succeeded, failed, "
            "retrying, gave_up, lost, interrupted). A gauge over a sliding window: it goes "
            "down as runs leave the window.",
            labels=["job", "outcome"])
        durations = GaugeHistogramMetricFamily(
            f"{PREFIX}_job_duration_seconds",
            "Durations of the job runs that ended in the last hour, by job and outcome (a "
            "gauge histogram over a sliding window: use histogram_quantile without rate()).",
            labels=["job", "outcome"])
        for row in rows:
            runs.add_metric([row["job"], row["outcome"]], row["runs"])
            cumulative = [(_bucket_label(bound), row[f"le_{i}"])
                          for i, bound in enumerate(DURATION_BUCKETS_S)]
            cumulative.append(("+Inf", row["timed"]))
            durations.add_metric([row["job"], row["outcome"]], cumulative,
                                 (row["total_ms"] or 0) / 1000)
        yield from (runs, durations)

    # --- Alerts (one query) ---------------------------------------------------------------

    def _alerts(self) -> Iterator[Metric]:
        counts = OpsAlert.objects.filter(resolved_at__isnull=True).aggregate(
            open=Count("id"), unacknowledged=Count("id", filter=Q(acknowledged_at__isnull=True)))
        alerts = GaugeMetricFamily(
            f"{PREFIX}_alerts_open",
            "Operational alerts open now (not resolved), and of them those nobody acknowledged.",
            labels=["acknowledged"])
        alerts.add_metric(["yes"], counts["open"] - counts["unacknowledged"])
        alerts.add_metric(["no"], counts["unacknowledged"])
        yield alerts

    # --- Emails over the last 24 hours (one query, and one for the pause) ---------------------

    def _emails(self, now) -> Iterator[Metric]:
        found = defaultdict(int)
        # Naming every kind lets the (kind, -created_at) index serve the query.
        for kind, status, n in (Notification.objects
                                .filter(kind__in=Notification.Kind.values,
                                        created_at__gte=now - EMAIL_WINDOW)
                                .values("kind", "status").annotate(n=Count("id"))
                                .values_list("kind", "status", "n")):
            found[(kind, status)] = n
        emails = GaugeMetricFamily(
            f"{PREFIX}_emails_last_24h",
            "Emails in the send ledger created in the last 24 hours, by kind and their status "
            "now (queued, sending, sent, failed, skipped, unknown).",
            labels=["kind", "status"])
        for kind in Notification.Kind.values:
            for status in Notification.Status.values:
                emails.add_metric([kind, status], found[(kind, status)])
        yield emails
        yield GaugeMetricFamily(
            f"{PREFIX}_student_email_paused",
            "1 while student email is paused (the admin's switch, a restore, or "
            "NOTIFICATIONS_PAUSED), else 0.", value=1 if student_email_paused() else 0)

    # --- AI steps (one query) -------------------------------------------------------------

    def _ai_steps(self) -> Iterator[Metric]:
        found = {(step, status): n for step, status, n in (
            QuestionStep.objects.values("step", "status").annotate(n=Count("id"))
            .order_by().values_list("step", "status", "n"))}
        steps = GaugeMetricFamily(
            f"{PREFIX}_ai_steps",
            "Questions' AI processing steps now, by step and status (pending is the backlog).",
            labels=["step", "status"])
        for step in QuestionStep.Step.values:
            for status in QuestionStep.Status.values:
                steps.add_metric([step, status], found.get((step, status), 0))
        yield steps

    # --- Backups (one query) --------------------------------------------------------------

    def _backups(self, now) -> Iterator[Metric]:
        Status = BackupRecord.Status
        found = BackupRecord.objects.aggregate(
            created=Max("created_at", filter=Q(status__in=[Status.CREATED, Status.VERIFIED])),
            verified=Max("verified_at", filter=Q(status=Status.VERIFIED)),
            failed=Count("id", filter=Q(status=Status.FAILED,
                                        created_at__gte=now - datetime.timedelta(hours=24))))
        age = GaugeMetricFamily(
            f"{PREFIX}_backup_age_seconds",
            "Seconds since the newest backup was taken (state=created: written, verified or "
            "not) and since the newest verification by a real restore (state=verified). "
            "Absent while there is none: alert on absent() too.",
            labels=["state"])
        if found["created"]:
            age.add_metric(["created"], round((now - found["created"]).total_seconds(), 3))
        if found["verified"]:
            age.add_metric(["verified"], round((now - found["verified"]).total_seconds(), 3))
        yield age
        yield GaugeMetricFamily(
            f"{PREFIX}_backups_failed_last_24h",
            "Backups started in the last 24 hours that failed.", value=found["failed"])

    # --- Health (one query: the latest stored run; checks are not run on a scrape) ----------

    def _health(self, now) -> Iterator[Metric]:
        latest = HealthCheckRun.objects.order_by("-checked_at", "-id").first()
        status = GaugeMetricFamily(
            f"{PREFIX}_health_status",
            "The latest health check run (every 5 minutes): 1 for its status (pass, warn or "
            "fail), 0 for the others. Absent before the first run.",
            labels=["status"])
        checks = GaugeMetricFamily(
            f"{PREFIX}_health_check_passing",
            "Each check of the latest health check run: 1 when it passed, 0 when it warned "
            "or failed (critical: whether its failure makes health_check exit 1).",
            labels=["check", "critical"])
        age = GaugeMetricFamily(
            f"{PREFIX}_health_last_run_age_seconds",
            "Seconds since the latest health check run (stale past ~300 s means the "
            "health-checks job is not running).")
        if latest is not None:
            for name in HEALTH_STATUSES:
                status.add_metric([name], 1 if latest.status == name else 0)
            for check in latest.checks if isinstance(latest.checks, list) else []:
                if isinstance(check, dict) and check.get("name"):
                    checks.add_metric(
                        [str(check["name"]), "true" if check.get("critical") else "false"],
                        1 if check.get("status") == "pass" else 0)
            age.add_metric([], round((now - latest.checked_at).total_seconds(), 3))
        yield from (status, checks, age)


def metrics_registry(now=None) -> CollectorRegistry:
    """A private registry holding only the database collector (not prometheus-client's global
    one, whose process and platform collectors describe one gunicorn process among many)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(now=now))
    return registry


REGISTRY = metrics_registry()
