"""Reads for the operations page. Each is a fixed number of queries, whatever the number of
tasks, runs, alerts or schedules (the page's test counts them at two sizes)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Exists, F, Max, OuterRef
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from core.jobs import JOBS
from core.jobs.liveness import QueueState, cluster_is_live
from core.jobs.models import ClusterPresence, JobRun
from core.jobs.packages import PACKAGE_KEY
from core.jobs.schedules import MANAGED_PREFIX
from maintenance.models import OpsAlert, PausedSchedule

CLUSTERS_SHOWN = 10


@dataclass
class QueueRow:
    state: QueueState
    failures_24h: int


def queue_rows(states: list[QueueState], now: datetime.datetime) -> list[QueueRow]:
    failures = dict(JobRun.objects.filter(started_at__gte=now - datetime.timedelta(hours=24),
                                          outcome__in=JobRun.FAILURES)
                    .values("queue").annotate(n=Count("id")).values_list("queue", "n"))
    return [QueueRow(state=s, failures_24h=failures.get(s.queue, 0)) for s in states]


def clusters_shown(presences: list[ClusterPresence], now) -> list[tuple[ClusterPresence, bool]]:
    """The live clusters, then the latest that are not, with whether each is live."""
    live = [p for p in presences if cluster_is_live(p, now)]
    gone = [p for p in presences if not cluster_is_live(p, now)]
    return [(p, True) for p in live] + [(p, False) for p in gone[:max(0, CLUSTERS_SHOWN - len(live))]]


def failures_since(since: datetime.datetime) -> list[dict]:
    """Failed runs by job: count, queue and last failure."""
    return list(
        JobRun.objects.filter(started_at__gte=since, outcome__in=JobRun.FAILURES)
        .values("job", "queue").annotate(failures=Count("id"), last=Max("started_at"))
        .order_by("-failures", "job")
    )


@dataclass
class ScheduleRow:
    schedule: Schedule
    paused: bool
    managed: bool
    last_run: JobRun | None
    last_task: Task | None

    @property
    def queue(self) -> str:
        spec = JOBS.get(self.schedule.func)
        return spec.queue if spec else (self.schedule.cluster or settings.PASTQ_CLUSTER)

    @property
    def finished(self) -> bool:
        """No run left and not paused (a one-off that ran, repeats used up)."""
        return self.schedule.repeats == 0 and not self.paused


def schedule_rows() -> list[ScheduleRow]:
    """Every schedule with its last run (from our record, else django-q's), in four queries."""
    schedules = list(Schedule.objects.order_by("name"))
    task_ids = [s.task for s in schedules if s.task]
    runs = {r.task_id: r for r in JobRun.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "attempt")}
    tasks = {t.id: t for t in Task.objects.filter(id__in=task_ids)}
    paused = set(PausedSchedule.objects.values_list("schedule_id", flat=True))
    return [
        ScheduleRow(schedule=s, paused=s.pk in paused,
                    managed=(s.name or "").startswith(MANAGED_PREFIX),
                    last_run=runs.get(s.task), last_task=tasks.get(s.task))
        for s in schedules
    ]


def pending_retries(now: datetime.datetime, limit: int = 100) -> list[JobRun]:
    """Failed attempts whose retry has not started yet, soonest first."""
    next_attempt = JobRun.objects.filter(chain=OuterRef("chain"), attempt__gt=OuterRef("attempt"))
    return list(JobRun.objects.filter(outcome=JobRun.Outcome.RETRYING,
                                      retry_at__gte=now - datetime.timedelta(days=1))
                .annotate(started=Exists(next_attempt)).filter(started=False)
                .order_by("retry_at")[:limit])


def queued_tasks(limit: int) -> list[dict]:
    """The oldest waiting, running and delayed tasks, decoded (bounded: payloads are signed
    pickles)."""
    now = timezone.now()
    rows = []
    for item in OrmQ.objects.order_by("lock", "id")[:limit]:
        task = item.task
        rows.append({
            "id": item.pk, "queue": item.key, "name": task.get("name"),
            "func": str(task.get("func")), "group": task.get("group"),
            "attempt": (task.get(PACKAGE_KEY) or {}).get("attempt", 1),
            "enqueued": task.get("started"), "locked": bool(item.lock and item.lock > now),
            "lock": item.lock,
        })
    return rows


def open_alerts(limit: int) -> tuple[list[OpsAlert], int]:
    """The newest open alerts, and how many are open in all."""
    open_ = OpsAlert.objects.filter(resolved_at__isnull=True)
    return list(open_.order_by(F("acknowledged_at").asc(nulls_first=True), "-opened_at")[:limit]), \
        open_.count()
