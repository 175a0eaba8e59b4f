"""Operations services: heartbeats, stall detection and alerts, schedule controls, queue purges.

The operations dashboard, the admin actions and the scheduled tasks all come through here.
"""

from __future__ import annotations

import ast
import datetime
import logging
import os
import socket

from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import JobRun, OpsAlert, PausedSchedule, QueueHeartbeat

logger = logging.getLogger("pastq.ops")

HEARTBEAT_STALE_SECONDS = 180  # heartbeats are every minute; django-q's scheduler ticks each 30 s


# --- Alerts ---------------------------------------------------------------------------------


def alert_open(*, key: str, summary: str, detail: str = "") -> bool:
    """Tell the staff once: True when this opened the alert (and sent the email), False when it
    was already open."""
    try:
        with transaction.atomic():
            OpsAlert.objects.create(key=key, summary=summary[:300], detail=detail)
    except IntegrityError:
        return False  # open already (the partial unique constraint), maybe from another worker
    logger.error("alert opened key=%s summary=%s", key, summary)
    mail_admins(f"[pastq] {summary}", f"{summary}\n\n{detail}", fail_silently=True)
    return True


def alert_resolve(*, key: str) -> bool:
    return bool(OpsAlert.objects.filter(key=key, resolved_at__isnull=True)
                .update(resolved_at=timezone.now()))


# --- Liveness -------------------------------------------------------------------------------


def heartbeat_record(queue: str) -> None:
    QueueHeartbeat.objects.update_or_create(
        queue=queue,
        defaults={"beat_at": timezone.now(), "host": socket.gethostname(), "pid": os.getpid()},
    )


def cluster_watch() -> list[str]:
    """Open an alert for each stalled queue, resolve it when the queue recovers; returns the
    stalled queues. One email per stall, not one per check."""
    from core.selectors import queue_health

    stalled = []
    for health in queue_health():
        key = f"queue-stalled:{health.queue}"
        if health.stalled:
            stalled.append(health.queue)
            alert_open(key=key, summary=f"Queue {health.queue} is stalled",
                       detail="\n".join(health.problems))
        else:
            alert_resolve(key=key)
    return stalled


def job_records_prune(*, days: int) -> dict:
    """JobRun rows finished more than `days` ago, django-q's task results as old (it keeps
    them all: save_limit 0) and resolved alerts as old."""
    from django_q.models import Task

    if days < 1:
        raise ValueError("Keep at least one day of job records.")
    cutoff = timezone.now() - datetime.timedelta(days=days)
    runs, _ = JobRun.objects.filter(finished_at__lt=cutoff).delete()
    results, _ = Task.objects.filter(stopped__lt=cutoff).delete()
    alerts, _ = OpsAlert.objects.filter(resolved_at__lt=cutoff).delete()
    return {"job_runs_deleted": runs, "task_results_deleted": results, "alerts_deleted": alerts}


# --- Schedules ------------------------------------------------------------------------------


def _schedule_call(schedule) -> tuple[tuple, dict]:
    """A schedule's args and kwargs, parsed the way django-q's scheduler parses them."""
    args = ast.literal_eval(schedule.args) if schedule.args else ()
    if not isinstance(args, tuple):
        args = (args,)
    kwargs = {}
    if schedule.kwargs:
        try:
            kwargs = ast.literal_eval(schedule.kwargs)
        except (SyntaxError, ValueError):
            call = ast.parse(f"f({schedule.kwargs})").body[0].value
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return args, kwargs


def schedule_run_now(schedule) -> str:
    """Enqueue a schedule's task now, on the schedule's cluster; its timetable is unchanged."""
    from django_q.tasks import async_task

    args, kwargs = _schedule_call(schedule)
    q_options = kwargs.pop("q_options", {})
    q_options.update(cluster=schedule.cluster, group=schedule.name or str(schedule.pk))
    task_id = async_task(schedule.func, *args, q_options=q_options, **kwargs)
    logger.info("schedule run now name=%s task_id=%s", schedule.name, task_id)
    return task_id


@transaction.atomic
def schedule_pause(schedule, *, by: str = "") -> bool:
    """Stop a schedule from running (django-q skips repeats=0); False if already paused."""
    if PausedSchedule.objects.filter(schedule=schedule).exists():
        return False
    PausedSchedule.objects.create(schedule=schedule, repeats=schedule.repeats, paused_by=by)
    schedule.repeats = 0
    schedule.save(update_fields=["repeats"])
    return True


@transaction.atomic
def schedule_resume(schedule) -> bool:
    """Restore a paused schedule. Its next run moves to the next slot from now, so resuming
    after a long pause does not fire a stale run at once."""
    pause = PausedSchedule.objects.filter(schedule=schedule).first()
    if pause is None:
        return False
    schedule.repeats = pause.repeats
    if schedule.next_run and schedule.next_run < timezone.now():
        schedule.next_run = schedule.calculate_next_run(timezone.now())
    schedule.save(update_fields=["repeats", "next_run"])
    pause.delete()
    return True


# --- Queued tasks ---------------------------------------------------------------------------


def queued_task_cancel(ormq_id: int) -> bool:
    """Remove one waiting task from the ORM queue. A task a worker has already taken (its lock
    is in the future) is not cancelled: it may be running."""
    from django_q.models import OrmQ

    deleted, _ = OrmQ.objects.filter(pk=ormq_id, lock__lte=timezone.now()).delete()
    return bool(deleted)


def queue_purge(key: str) -> int:
    """Remove every waiting task of one broker key (a queue, or the one cluster)."""
    from django_q.models import OrmQ

    deleted, _ = OrmQ.objects.filter(key=key, lock__lte=timezone.now()).delete()
    logger.warning("queue purged key=%s tasks=%s", key, deleted)
    return deleted


# --- The periodic schedule ------------------------------------------------------------------


def _desired_schedule_fields(periodic) -> dict:
    from django_q.models import Schedule

    from core.jobs import META_KWARG, cluster_for, job_spec

    spec = job_spec(periodic.task).on_queue(periodic.queue)  # fails loudly for a missing task
    kwargs = dict(periodic.kwargs)
    if spec.queue != job_spec(periodic.task).queue:
        kwargs[META_KWARG] = {"queue": spec.queue}
    kwargs["q_options"] = {"timeout": spec.time_limit}
    return {"func": periodic.task, "schedule_type": Schedule.CRON, "cron": periodic.cron,
            "cluster": cluster_for(periodic.queue), "kwargs": repr(kwargs), "args": None}


def schedules_sync(*, dry_run: bool = False) -> list[str]:
    """Write pastq/schedules.py into django-q's Schedule rows; returns the changes, one line
    each. Owns the managed rows' task, cron, arguments and cluster; never their paused state
    (`repeats`); removes managed rows that left the table; leaves hand-made schedules and
    pending retries alone."""
    from croniter import croniter
    from django_q.models import Schedule

    from core.jobs import RETRY_SCHEDULE_PREFIX
    from pastq.schedules import MANAGED_PREFIX, SCHEDULES

    names = [p.schedule_name for p in SCHEDULES]
    if len(set(names)) != len(names):
        raise ValueError("pastq/schedules.py names a schedule twice.")
    changes = []
    existing = {s.name: s for s in Schedule.objects.filter(name__startswith=MANAGED_PREFIX)
                .exclude(name__startswith=RETRY_SCHEDULE_PREFIX)}
    with transaction.atomic():
        for periodic in SCHEDULES:
            desired = _desired_schedule_fields(periodic)
            current = existing.get(periodic.schedule_name)
            if current is None:
                changes.append(f"add {periodic.schedule_name}: {periodic.task} "
                               f"'{periodic.cron}' on {periodic.queue}")
                if not dry_run:
                    Schedule.objects.create(
                        name=periodic.schedule_name, repeats=-1,
                        next_run=croniter(periodic.cron, timezone.now()).get_next(
                            datetime.datetime), **desired)
                continue
            different = {k: v for k, v in desired.items() if getattr(current, k) != v}
            if not different:
                continue
            changes.append(f"update {periodic.schedule_name}: " + ", ".join(
                f"{k} {getattr(current, k)!r} → {v!r}" for k, v in different.items()))
            if not dry_run:
                for name, value in different.items():
                    setattr(current, name, value)
                if "cron" in different:
                    current.next_run = croniter(current.cron, timezone.now()).get_next(
                        datetime.datetime)
                current.save()
        for name in sorted(set(existing) - set(names)):
            changes.append(f"remove {name} (no longer in pastq/schedules.py)")
            if not dry_run:
                existing[name].delete()
    return changes
