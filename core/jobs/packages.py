"""Task packages: what a queued task is made of, and how it is stored.

The package is built here rather than by django-q's `async_task`, which takes its options
(`timeout`, `hook`, `group`, `task_name`, ...) out of the job's own keyword arguments: a job with
a parameter named like one of them would lose it. The plumbing's data (the queue, and a retry's
chain and attempt) travels under its own key of the package, never among the job's arguments.
"""

from __future__ import annotations

import datetime

from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.humanhash import uuid as task_uuid
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage

import core.jobs.queues as queues

# The key of the task package that carries the plumbing's data: {"queue", "chain", "attempt"}.
PACKAGE_KEY = "pastq"


def enqueue_package(path: str, *, args: list, kwargs: dict, queue: str, meta: dict,
                    run_at: datetime.datetime | None = None, group: str | None = None) -> str:
    """Sign a django-q task package and store it under its queue's key (also used for
    retries, which carry their chain and attempt in `meta`)."""
    name, task_id = task_uuid()
    package = {
        "id": task_id, "name": name, "func": path, "args": tuple(args), "kwargs": kwargs,
        "group": group or path, "timeout": queues.time_limit(queue), "ack_failure": True,
        "started": timezone.now(), PACKAGE_KEY: {**meta, "queue": queue},
    }

    def store():
        pre_enqueue.send(sender="django_q", task=package)
        get_broker(queue).enqueue(SignedPackage.dumps(package), not_before=run_at)

    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(store)
    else:
        store()
    return task_id
