"""Deleting what has served its time, a batch at a time: the batching every cleanup uses, and
job records (our JobRun rows, django-q's task results, cluster presences, resolved alerts).

Every change goes in batches of primary keys (BATCH_SIZE), each in its own short transaction,
so no cleanup holds a lock for long: on SQLite a transaction holds the one write lock, and a
cleanup of a month of rows in one statement would stall every worker and request meanwhile.
Pages are read by keyset (the keys after the last one seen), so a row a batch leaves in place
(its condition no longer held when the batch ran) is never read twice and the work always ends.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_q.models import Task

from core.jobs.models import ClusterPresence, JobRun
from maintenance.models import OpsAlert

BATCH_SIZE = 1000
# Between two batches on SQLite: long enough for a writer waiting on the lock to take it (its
# busy handler retries after 1, 2, 5, 10 … ms), so a long cleanup never starves the workers.
SQLITE_PAUSE_S = 0.02


@dataclass
class Budget:
    """How long a cleanup may run (a job must end inside its queue's time limit; what is left
    waits for the next night). `deadline` is a time.monotonic() value; None: no limit.
    `cut_short` is set by the batch loop that stopped for it."""

    deadline: float | None = None
    cut_short: bool = False

    @classmethod
    def seconds(cls, limit: float | None) -> Budget:
        return cls(None if limit is None else time.monotonic() + limit)

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def key_batches(queryset: QuerySet, *, batch_size: int = BATCH_SIZE) -> Iterator[list]:
    """The primary keys of `queryset`'s rows, `batch_size` at a time, in key order."""
    ordered = queryset.order_by("pk")
    last = None
    while True:
        page = ordered if last is None else ordered.filter(pk__gt=last)
        keys = list(page.values_list("pk", flat=True)[:batch_size])
        if not keys:
            return
        yield keys
        if len(keys) < batch_size:
            return
        last = keys[-1]


def rows_change_in_batches(queryset: QuerySet, change: Callable[[QuerySet], int], *,
                           dry_run: bool = False, batch_size: int = BATCH_SIZE,
                           budget: Budget | None = None) -> int:
    """Apply `change` (a function of a queryset returning how many rows it changed) to the rows
    of `queryset`, a batch of keys at a time, each batch in its own transaction. The batch's
    queryset is `queryset` narrowed to the batch's keys, so its conditions are checked again
    when the batch runs, not only when the keys were read. Returns the number changed; with
    `dry_run`, how many match now, changing nothing."""
    if batch_size < 1:
        raise ValueError("A batch holds at least one row.")
    if dry_run:
        return queryset.count()
    budget = budget or Budget()
    changed = 0
    for keys in key_batches(queryset, batch_size=batch_size):
        with transaction.atomic():
            changed += change(queryset.filter(pk__in=keys))
        if budget.spent():
            budget.cut_short = True
            break
        if connection.vendor == "sqlite" and len(keys) == batch_size:
            time.sleep(SQLITE_PAUSE_S)
    return changed


def rows_delete_in_batches(queryset: QuerySet, **options) -> int:
    """Delete `queryset`'s rows in batches (rows_change_in_batches). Counts rows of the
    queryset's own model: call it only for models nothing references with CASCADE that must
    survive (the callers' models have no reverse relations)."""
    label = queryset.model._meta.label

    def delete(batch: QuerySet) -> int:
        return batch.delete()[1].get(label, 0)

    return rows_change_in_batches(queryset, delete, **options)


def job_records_prune(*, days: int, dry_run: bool = False, batch_size: int = BATCH_SIZE,
                      budget: Budget | None = None,
                      now: datetime.datetime | None = None) -> dict:
    """JobRun rows finished more than `days` ago, django-q's task results as old (it keeps them
    all: save_limit 0; its Success and Failure are views of the same table), presences of
    clusters last seen that long ago, and resolved alerts. Open alerts and running jobs stay
    whatever their age. With `dry_run`, the counts of what would go."""
    if days < 1:
        raise ValueError("Keep at least one day of job records.")
    cutoff = (now or timezone.now()) - datetime.timedelta(days=days)
    options = dict(dry_run=dry_run, batch_size=batch_size, budget=budget)
    return {
        "job_runs_deleted": rows_delete_in_batches(
            JobRun.objects.filter(finished_at__lt=cutoff), **options),
        "task_results_deleted": rows_delete_in_batches(
            Task.objects.filter(stopped__lt=cutoff), **options),
        "presences_deleted": rows_delete_in_batches(
            ClusterPresence.objects.filter(last_seen_at__lt=cutoff), **options),
        "alerts_deleted": rows_delete_in_batches(
            OpsAlert.objects.filter(resolved_at__lt=cutoff), **options),
    }
