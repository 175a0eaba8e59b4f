"""Putting a job on its queue.

The job's own arguments and the plumbing's options never share a namespace: `args` and
`kwargs` go to the job untouched (a job may have parameters called `queue`, `timeout`, `hook`
or `task_name`), and the plumbing's own data travels in the task package beside them
(core.jobs.packages).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence

import core.jobs.queues as queues
from core.jobs.definitions import job_spec
from core.jobs.packages import enqueue_package


def enqueue(
    path: str, *, args: Sequence = (), kwargs: Mapping | None = None, queue: str | None = None,
    run_at: datetime.datetime | None = None, group: str | None = None,
) -> str:
    """Queue the job `path` with `args` and `kwargs` (JSON-serialisable: ids, dates as ISO
    strings), on its own queue or `queue`, to run now or not before `run_at`. Returns the task id.

    Inside a transaction the task is stored when the transaction commits, so the job never sees
    uncommitted rows nor runs for a change that was rolled back. `group` names what the run
is part of (a schedule's name when an operator runs one now), for django-q's records and for
matching a later success with an earlier failure."""
    spec = job_spec(path)
    queue = queues.check_queue(queue or spec.queue)
    args, kwargs = list(args), dict(kwargs or {})
    try:
        json.dumps([args, kwargs])
    except TypeError as exc:
        raise ValueError(f"Job arguments must be JSON values (ids, strings, numbers): {exc}") \
            from None
    return enqueue_package(path, args=args, kwargs=kwargs, queue=queue, run_at=run_at,
                           group=group, meta={"queue": queue})
