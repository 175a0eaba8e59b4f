"""Reads for the operations dashboard and the stall watch. Each is a fixed number of queries,
whatever the number of tasks, runs or schedules."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone

from core.jobs import JOBS, RETRY_SCHEDULE_PREFIX, broker_key_for
from core.models import JobRun, OpsAlert, PausedSchedule, QueueHeartbeat
from core.ops import HEARTBEAT_STALE_SECONDS


@dataclass
class QueueHealth:
    """One cluster's queue: a queue with routing on, the one shared queue with it off."""

    queue: str
    serves: list[str]
    waiting: int = 0
    taken: int = 0
    oldest_waiting_s: float | None = None
    heartbeats: dict[str, float | None] = field(default_factory=dict)  # queue → age in s
    problems: list[str] = field(default_factory=list)

    @property
    def stalled(self) -> bool:
        return bool(self.problems)


def queue_health(now: datetime.datetime | None = None) -> list[QueueHealth]:
    from django_q.models import OrmQ

    now = now or timezone.now()
    keys: dict[str, QueueHealth] = {}
    for queue in settings.PASTQ_QUEUES:
        key = broker_key_for(queue)
        label = queue if settings.PASTQ_QUEUE_ROUTING else f"{key} (all queues)"
        keys.setdefault(key, QueueHealth(queue=label, serves=[])).serves.append(queue)

    for row in OrmQ.objects.filter(key__in=keys, lock__lte=now).values("key").annotate(
            n=Count("id"), oldest=Min("lock")):
        health = keys[row["key"]]
        health.waiting = row["n"]
        health.oldest_waiting_s = (now - row["oldest"]).total_seconds()
    for row in OrmQ.objects.filter(key__in=keys, lock__gt=now).values("key").annotate(
            n=Count("id")):
        keys[row["key"]].taken = row["n"]

    beats = dict(QueueHeartbeat.objects.values_list("queue", "beat_at"))
    threshold = settings.PASTQ_STALL_SECONDS
    for health in keys.values():
        for queue in health.serves:
            beat = beats.get(queue)
            age = (now - beat).total_seconds() if beat else None
            health.heartbeats[queue] = age
            if age is None:
                health.problems.append(f"{queue}: no heartbeat yet (is its qcluster running?)")
            elif age > HEARTBEAT_STALE_SECONDS:
                health.problems.append(f"{queue}: last heartbeat {age:.0f}s ago")
        if health.oldest_waiting_s is not None and health.oldest_waiting_s > threshold:
            health.problems.append(
                f"the oldest of {health.waiting} waiting tasks has waited "
                f"{health.oldest_waiting_s:.0f}s (threshold {threshold}s)")
    return list(keys.values())


def failures_since(since: datetime.datetime) -> list[dict]:
    """Failed runs by job: count, last failure and its outcome."""
    return list(
        JobRun.objects.filter(started_at__gte=since, outcome__in=JobRun.FAILURES)
        .values("job").annotate(failures=Count("id"), last=Max("started_at"))
        .order_by("-failures", "job")
    )


@dataclass
class ScheduleRow:
    schedule: object
    paused: bool
    managed: bool
    last_run: JobRun | None
    last_task: object | None

    @property
    def queue(self) -> str:
        return self.schedule.cluster or settings.PASTQ_CLUSTER


def schedule_rows() -> list[ScheduleRow]:
    """Every schedule with its last run (from our record, else django-q's), in three queries."""
    from django_q.models import Schedule, Task

    schedules = list(Schedule.objects.exclude(name__startswith=RETRY_SCHEDULE_PREFIX)
                     .order_by("name"))
    task_ids = [s.task for s in schedules if s.task]
    runs = {r.task_id: r for r in JobRun.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "attempt")}
    tasks = {t.id: t for t in Task.objects.filter(id__in=task_ids)}
    paused = set(PausedSchedule.objects.values_list("schedule_id", flat=True))
    from pastq.schedules import MANAGED_PREFIX

    return [
        ScheduleRow(schedule=s, paused=s.pk in paused, managed=(s.name or "").startswith(
            MANAGED_PREFIX), last_run=runs.get(s.task), last_task=tasks.get(s.task))
        for s in schedules
    ]


def pending_retries() -> list:
    from django_q.models import Schedule

    return list(Schedule.objects.filter(name__startswith=RETRY_SCHEDULE_PREFIX)
                .order_by("next_run"))


def queued_tasks(limit: int = 200) -> list[dict]:
    """The oldest waiting and taken tasks, decoded (bounded: payloads are signed pickles)."""
    from django_q.models import OrmQ

    now = timezone.now()
    rows = []
    for item in OrmQ.objects.order_by("lock", "id")[:limit]:
        task = item.task
        job = JOBS.get(str(task.get("func")))
        meta = (task.get("kwargs") or {}).get("_job") or {}
        rows.append({
            "id": item.pk, "key": item.key, "name": task.get("name"),
            "func": str(task.get("func")), "group": task.get("group"),
            "queue": meta.get("queue") or (job.queue if job else item.key),
            "enqueued": task.get("started"), "taken": item.lock and item.lock > now,
            "lock": item.lock,
        })
    return rows


def open_alerts() -> list[OpsAlert]:
    return list(OpsAlert.objects.filter(resolved_at__isnull=True).order_by("-opened_at"))


def cluster_stats() -> list:
    """Live clusters as django-q reports them through the cache (expire within seconds)."""
    from django_q.status import Stat

    try:
        return sorted(Stat.get_all(), key=lambda s: (s.host, s.cluster_id.hex))
    except Exception:  # the cache is down: the page still shows the database's view
        return []
