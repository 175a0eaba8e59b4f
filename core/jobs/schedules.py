"""Periodic jobs: the declaration of a row of the schedule table, and its sync into django-q.

The table itself is plain data kept where the whole project can be seen at once
(`PASTQ_SCHEDULES`, "pastq.schedules.SCHEDULES"); the plumbing only reads it, so it never
imports the apps whose jobs the table names.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from croniter import croniter
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

import core.jobs.queues as queues
from core.jobs.definitions import job_spec

MANAGED_PREFIX = "pastq:"
# Keyword arguments django-q's scheduler takes for itself (async_task's options): a scheduled
# job must not have parameters by these names, or the scheduler would swallow them.
DJANGO_Q_OPTIONS = frozenset({
    "q_options", "task_name", "hook", "group", "save", "sync", "cached", "ack_failure",
    "iter_count", "iter_cached", "chain", "broker", "cluster", "timeout"})


@dataclass(frozen=True)
class Periodic:
    """A row of the schedule table: a job (by dotted path) on a UTC cron. It runs on the job's
    own queue."""

    name: str
    task: str
    cron: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""

    @property
    def schedule_name(self) -> str:
        return MANAGED_PREFIX + self.name

    @property
    def queue(self) -> str:
        return job_spec(self.task).queue


def schedule_table() -> list[Periodic]:
    return list(import_string(settings.PASTQ_SCHEDULES))


def _desired_fields(periodic: Periodic) -> dict:
    spec = job_spec(periodic.task)  # fails loudly for a missing task
    clashing = DJANGO_Q_OPTIONS & set(periodic.kwargs)
    if clashing:
        raise ValueError(f"Schedule {periodic.name}: django-q's scheduler would take the "
                         f"arguments {sorted(clashing)} for itself; rename them.")
    if not croniter.is_valid(periodic.cron):
        raise ValueError(f"Schedule {periodic.name}: {periodic.cron!r} is not a cron expression.")
    kwargs = {**periodic.kwargs,
              "q_options": {"timeout": spec.time_limit, "cluster": spec.queue}}
    return {"func": periodic.task, "schedule_type": Schedule.CRON, "cron": periodic.cron,
            "cluster": queues.schedule_cluster(spec.queue), "kwargs": repr(kwargs), "args": None}


def _next_run(cron: str) -> datetime.datetime:
    return croniter(cron, timezone.now()).get_next(datetime.datetime)


def schedules_sync(*, dry_run: bool = False) -> list[str]:
    """Write the schedule table into django-q's Schedule rows; returns the changes, one line
    each. Owns the managed rows' task, cron, arguments and cluster; never their paused state
    (`repeats`); removes managed rows that left the table; leaves hand-made schedules alone."""
    table = schedule_table()
    names = [p.schedule_name for p in table]
    if len(set(names)) != len(names):
        raise ValueError("The schedule table names a schedule twice.")
    desired = {p.schedule_name: _desired_fields(p) for p in table}
    existing = {s.name: s for s in Schedule.objects.filter(name__startswith=MANAGED_PREFIX)}
    changes = []
    with transaction.atomic():
        for periodic in table:
            fields, current = desired[periodic.schedule_name], existing.get(periodic.schedule_name)
            if current is None:
                changes.append(f"add {periodic.schedule_name}: {periodic.task} "
                               f"'{periodic.cron}' on {periodic.queue}")
                if not dry_run:
                    Schedule.objects.create(name=periodic.schedule_name, repeats=-1,
                                            next_run=_next_run(periodic.cron), **fields)
                continue
            different = {k: v for k, v in fields.items() if getattr(current, k) != v}
            if not different:
                continue
            changes.append(f"update {periodic.schedule_name}: " + ", ".join(
                f"{k} {getattr(current, k)!r} → {v!r}" for k, v in different.items()))
            if not dry_run:
                for name, value in different.items():
                    setattr(current, name, value)
                if "cron" in different:
                    current.next_run = _next_run(current.cron)
                current.save()
        for name in sorted(set(existing) - set(names)):
            changes.append(f"remove {name} (no longer in the schedule table)")
            if not dry_run:
                existing[name].delete()
    return changes
