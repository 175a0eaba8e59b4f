"""Operating the job system from the operations page: run a schedule now, pause and resume it,
cancel a waiting task, purge a queue. The page's views and the admin call these."""

from __future__ import annotations

import ast
import datetime
import logging

from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from core.jobs import enqueue, job_spec
from maintenance.models import PausedSchedule

logger = logging.getLogger("pastq.ops")


def schedule_call(schedule: Schedule) -> tuple[list, dict]:
    """A schedule's args and kwargs, parsed the way django-q's scheduler parses them, without
    the scheduler's own options (`q_options`). ValueError when they cannot be read."""
    try:
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
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"its arguments cannot be read ({exc})") from None
    if not isinstance(kwargs, dict):
        raise ValueError("its keyword arguments are not a dict")
    kwargs.pop("q_options", None)
    return list(args), kwargs


def schedule_run_now(schedule: Schedule) -> str:
    """Queue a schedule's job now, on the job's queue; its timetable is unchanged. ValueError
    when its task is not a job or its arguments cannot be read."""
    job_spec(schedule.func)
    args, kwargs = schedule_call(schedule)
    task_id = enqueue(schedule.func, args=args, kwargs=kwargs,
                      # What django-q's scheduler names its runs (its name, else its id), so
                      # this run is the same job as the scheduled ones (core.jobs.execution).
                      group=schedule.name or str(schedule.pk))
    logger.info("schedule run now name=%s task_id=%s", schedule.name, task_id)
    return task_id


@transaction.atomic
def schedule_pause(schedule: Schedule, *, by: str = "") -> bool:
    """Stop a schedule from running (django-q skips repeats=0); False if already paused or if
    it has no run left to pause."""
    if schedule.repeats == 0 or PausedSchedule.objects.filter(schedule=schedule).exists():
        return False
    PausedSchedule.objects.create(schedule=schedule, repeats=schedule.repeats, paused_by=by)
    schedule.repeats = 0
    schedule.save(update_fields=["repeats"])
    return True


MAX_CATCH_UP_STEPS = 100_000


def _next_run_after(schedule: Schedule, now: datetime.datetime) -> datetime.datetime:
    """The schedule's first slot after `now`, keeping its phase (a daily 03:00 stays at 03:00).
    A one-off keeps its time: resumed late, it runs at the scheduler's next tick."""
    if schedule.schedule_type == Schedule.ONCE or schedule.next_run is None:
        return schedule.next_run or now
    if schedule.schedule_type == Schedule.CRON:
        return schedule.calculate_next_run(now)
    next_run = schedule.next_run
    for _ in range(MAX_CATCH_UP_STEPS):
        if next_run > now:
            return next_run
        next_run = schedule.calculate_next_run(next_run)
    return schedule.calculate_next_run(now)


@transaction.atomic
def schedule_resume(schedule: Schedule) -> bool:
    """Restore a paused schedule, whatever its type. A recurring one moves to its next slot from
    now, so resuming after a long pause does not fire a stale run at once."""
    pause = PausedSchedule.objects.filter(schedule=schedule).first()
    if pause is None:
        return False
    schedule.repeats = pause.repeats
    now = timezone.now()
    if schedule.next_run is None or schedule.next_run < now:
        schedule.next_run = _next_run_after(schedule, now)
    schedule.save(update_fields=["repeats", "next_run"])
    pause.delete()
    return True


def queued_task_cancel(ormq_id: int) -> bool:
    """Remove one waiting task from the queue. A task that is running or waiting for its retry
    backoff (its lock is in the future) is not cancelled."""
    deleted, _ = OrmQ.objects.filter(pk=ormq_id, lock__lte=timezone.now()).delete()
    return bool(deleted)


def queue_purge(queue: str) -> int:
    """Remove every waiting task of one queue."""
    deleted, _ = OrmQ.objects.filter(key=queue, lock__lte=timezone.now()).delete()
    logger.warning("queue purged queue=%s tasks=%s", queue, deleted)
    return deleted
