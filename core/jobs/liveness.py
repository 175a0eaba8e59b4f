"""The one liveness signal: which queues a live cluster serves, and how each queue's work is
moving. The operations page, `manage.py health_check` and `/health/` all read it from here.

A cluster is live while its sentinel keeps writing its `ClusterPresence` row (every
`PASTQ_PRESENCE_SECONDS`, whatever its workers are doing); it is down once the row is older than
`PASTQ_PRESENCE_STALE_SECONDS` or says it stopped. A queue is:

- running:  a live cluster serves it;
- starting: the clusters serving it are still starting (the first seconds after `qcluster`);
- down:     clusters served it, none does now (with when and where one was last seen);
- never:    no cluster has ever served it (no `qcluster` was started yet).

Each reading is a fixed number of queries (four), whatever the number of tasks or clusters.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from django_q.models import OrmQ

import core.jobs.queues as queues
from core.jobs.models import ClusterPresence, JobRun

RUNNING, STARTING, DOWN, NEVER = "running", "starting", "down", "never"
PRESENCE_HISTORY = datetime.timedelta(days=30)


def cluster_is_live(presence: ClusterPresence, now: datetime.datetime) -> bool:
    fresh = now - presence.last_seen_at < datetime.timedelta(
        seconds=settings.PASTQ_PRESENCE_STALE_SECONDS)
    return fresh and presence.status != ClusterPresence.Status.STOPPED


@dataclass
class QueueState:
    queue: str
    liveness: str = NEVER
    clusters: list[ClusterPresence] = field(default_factory=list)  # live ones serving it
    last_seen: ClusterPresence | None = None  # the latest cluster that served it, when down
    waiting: int = 0
    oldest_waiting_s: float | None = None
    running: int = 0
    delayed: int = 0  # retries waiting for their backoff (locked, not running)

    @property
    def served(self) -> bool:
        return self.liveness in (RUNNING, STARTING)

    @property
    def stalled(self) -> bool:
        """Work waits longer than PASTQ_STALL_SECONDS: no progress, however live the cluster."""
        return (self.oldest_waiting_s or 0) > settings.PASTQ_STALL_SECONDS

    @property
    def problems(self) -> list[str]:
        problems = []
        if self.liveness == NEVER:
            problems.append("no qcluster has served it yet")
        elif self.liveness == DOWN:
            seen = self.last_seen
            how = ("stopped" if seen.status == ClusterPresence.Status.STOPPED
                   else "stopped reporting")
            problems.append(f"no live cluster; the last one ({seen.name} on {seen.host}, pid "
                            f"{seen.pid}) {how} at {seen.last_seen_at:%Y-%m-%d %H:%M:%S} UTC")
        if self.stalled:
            problems.append(f"the oldest of {self.waiting} waiting tasks has waited "
                            f"{self.oldest_waiting_s:.0f}s (threshold "
                            f"{settings.PASTQ_STALL_SECONDS}s)")
        return problems


def cluster_presences(now: datetime.datetime) -> list[ClusterPresence]:
    return list(ClusterPresence.objects.filter(last_seen_at__gte=now - PRESENCE_HISTORY)
                .order_by("-last_seen_at"))


def queue_states(now: datetime.datetime | None = None,
                 presences: list[ClusterPresence] | None = None) -> list[QueueState]:
    now = now or timezone.now()
    presences = cluster_presences(now) if presences is None else presences
    states = {queue: QueueState(queue=queue) for queue in queues.queue_names()}
    for presence in presences:  # newest first
        for queue in presence.queues:
            state = states.get(queue)
            if state is None:
                continue
            if cluster_is_live(presence, now):
                state.clusters.append(presence)
            elif state.last_seen is None:
                state.last_seen = presence
    for state in states.values():
        if state.clusters:
            starting = all(c.status == ClusterPresence.Status.STARTING for c in state.clusters)
            state.liveness = STARTING if starting else RUNNING
        elif state.last_seen is not None:
            state.liveness = DOWN

    for row in OrmQ.objects.filter(key__in=states, lock__lte=now).values("key").annotate(
            n=Count("id"), oldest=Min("lock")):
        state = states[row["key"]]
        state.waiting, state.oldest_waiting_s = row["n"], (now - row["oldest"]).total_seconds()
    leased = dict(OrmQ.objects.filter(key__in=states, lock__gt=now).values("key")
                  .annotate(n=Count("id")).values_list("key", "n"))
    fresh = now - datetime.timedelta(seconds=queues.lease_seconds())
    for queue, n in (JobRun.objects.filter(outcome=JobRun.Outcome.RUNNING, heartbeat_at__gte=fresh)
                     .values("queue").annotate(n=Count("id")).values_list("queue", "n")):
        if queue in states:
            states[queue].running = n
    for queue, state in states.items():
        state.delayed = max(0, leased.get(queue, 0) - state.running)
    return list(states.values())
