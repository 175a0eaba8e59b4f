"""Queues, clusters and their broker keys.

Every task is stored under its queue's name (`OrmQ.key` = the queue), whatever the routing, so
the backlog of each queue is one indexed count and never needs a payload decoded.

- Routing off (the default): one cluster, named `PASTQ_CLUSTER`, serves every queue. Its broker
  (core.jobs.broker) takes work fairly across the queues, keeping a worker for each queue that
  has nothing running, so a long backup never starves the notification dispatcher.
- Routing on: each queue is its own cluster (`Q_CLUSTER_NAME=<queue> manage.py qcluster`, one
  or more per queue, on any machine) and serves that queue alone.
"""

from __future__ import annotations

from django.conf import settings


def queue_names() -> list[str]:
    return list(settings.PASTQ_QUEUES)


def time_limit(queue: str) -> int:
    return settings.PASTQ_QUEUES[queue]["timeout"]


def check_queue(queue: str) -> str:
    if queue not in settings.PASTQ_QUEUES:
        raise ValueError(f"Unknown queue {queue!r}; queues: {', '.join(settings.PASTQ_QUEUES)}")
    return queue


def schedule_cluster(queue: str) -> str | None:
    """The `Schedule.cluster` that makes the right cluster's scheduler run a schedule of this
    queue: the queue's own cluster with routing on; with it off None, which django-q reads as
    "the default cluster"."""
    return queue if settings.PASTQ_QUEUE_ROUTING else None


def served_queues(cluster_name: str) -> list[str]:
    """The queues a cluster of this name takes work from."""
    if cluster_name in settings.PASTQ_QUEUES:
        return [cluster_name]
    return queue_names()  # the default cluster: every queue


def lease_seconds() -> int:
    """How long a taken task stays locked without a renewal. A running job renews its lease
    every `PASTQ_LEASE_RENEW_SECONDS`; a task whose worker died is delivered again once the
    lease runs out, whatever the job's time limit."""
    return settings.PASTQ_LEASE_SECONDS
