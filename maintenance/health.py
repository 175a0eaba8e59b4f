"""Health checks: what `manage.py health_check`, `/health/` and the operations page report.

Each check is critical (a failure makes `health_check` exit 1) or a warning. The watcher is
`health_check`, run from cron, a systemd timer or any monitor: it is never the thing it watches
(a dead cluster cannot report its own death). It opens an alert, and emails the staff once,
when it finds queues no live cluster serves or work that stopped moving, and resolves the alert
when that clears. `/health/` only reads: a web process acts on requests, it is not a watcher.
"""

from __future__ import annotations

import datetime
import functools
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from core.jobs import liveness
from core.jobs.liveness import QueueState
from maintenance.alerts import alert_open, alert_resolve

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass
class CheckResult:
    name: str
    status: str
    critical: bool
    output: str
    observed: float | int | str | None = None
    unit: str = ""
    duration_ms: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HealthReport:
    checked_at: datetime.datetime
    checks: list[CheckResult]
    queue_states: list[QueueState] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        if any(c.status == FAIL and c.critical for c in self.checks):
            return FAIL
        if any(c.status != PASS for c in self.checks):
            return WARN
        return PASS

    @property
    def database_ok(self) -> bool:
        return all(c.status == PASS for c in self.checks if c.name == "database")

    def as_dict(self) -> dict:
        """The JSON `health_check --json` prints (docs/operations.md documents it)."""
        return {"status": self.status, "checked_at": self.checked_at.isoformat(),
                "checks": [c.as_dict() for c in self.checks]}


@functools.cache
def _migrations_on_disk() -> frozenset[tuple[str, str]]:
    """Every migration this code has: fixed for the life of a process, so loaded once."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def check_database() -> CheckResult:
    """A round trip, then whether every migration of this code is applied (one more query)."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        latency = round((time.perf_counter() - started) * 1000, 2)
        applied = set(MigrationRecorder(connection).applied_migrations())
    except DatabaseError as exc:
        return CheckResult("database", FAIL, True, f"{connection.vendor}: {exc}")
    unapplied = sorted(_migrations_on_disk() - applied)
    if unapplied:
        return CheckResult(
            "database", FAIL, True,
            f"{connection.vendor} answered, but {len(unapplied)} migrations are not applied "
            f"(first: {'.'.join(unapplied[0])}): run manage.py init_db",
            observed=latency, unit="ms")
    return CheckResult("database", PASS, True,
                       f"{connection.vendor} answered; migrations applied",
                       observed=latency, unit="ms")


def check_queue(state: QueueState) -> CheckResult:
    details = {"liveness": state.liveness, "waiting": state.waiting, "running": state.running,
               "delayed": state.delayed, "oldest_waiting_s": state.oldest_waiting_s,
               "clusters": [f"{c.name}@{c.host}:{c.pid}" for c in state.clusters]}
    problems = state.problems
    if problems:
        return CheckResult(f"queue:{state.queue}", FAIL, True, "; ".join(problems),
                           observed=state.liveness, details=details)
    output = {liveness.RUNNING: "served", liveness.STARTING: "its cluster is starting"}[
        state.liveness]
    return CheckResult(f"queue:{state.queue}", PASS, True,
                       f"{output}; {state.waiting} waiting, {state.running} running",
                       observed=state.liveness, details=details)


def health_report(now: datetime.datetime | None = None) -> HealthReport:
    """Every check, measured now. When the database is down the queue checks cannot run: they
    are reported as failed with that reason."""
    now = now or timezone.now()
    started = time.perf_counter()
    database = check_database()
    database.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    checks, states = [database], []
    if database.status == PASS:
        started = time.perf_counter()
        try:
            states = liveness.queue_states(now)
        except DatabaseError as exc:
            checks.append(CheckResult("queues", FAIL, True, f"could not be read: {exc}"))
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        for state in states:
            result = check_queue(state)
            result.duration_ms = elapsed
            checks.append(result)
    else:
        checks.append(CheckResult("queues", FAIL, True,
                                  "not checked: the database is not ready"))
    return HealthReport(checked_at=now, checks=checks, queue_states=states)


def health_watch(now: datetime.datetime | None = None) -> HealthReport:
    """Check, then open an alert (one email) for what newly failed and resolve what recovered:
    queues no live cluster serves (grouped by the cluster last seen serving them, so a dead
    single cluster is one alert), and queues whose work stopped moving."""
    report = health_report(now)
    if not report.database_ok:
        return report  # nothing can be recorded; the command's exit status says it
    down_by_cluster: dict[str, list[QueueState]] = defaultdict(list)
    never = []
    for state in report.queue_states:
        if state.liveness == liveness.DOWN:
            down_by_cluster[state.last_seen.name].append(state)
        elif state.liveness == liveness.NEVER:
            never.append(state.queue)
        if state.stalled:
            alert_open(key=f"queue-stalled:{state.queue}",
                       summary=f"Queue {state.queue}: work has stopped moving",
                       detail="\n".join(state.problems))
        else:
            alert_resolve(key=f"queue-stalled:{state.queue}", resolution="Work moves again.")
    seen_names = {state.last_seen.name for state in report.queue_states if state.last_seen}
    for name in seen_names:
        down = down_by_cluster.get(name)
        key = f"cluster-down:{name}"
        if down:
            seen = down[0].last_seen
            alert_open(
                key=key,
                summary=f"No live qcluster serves {', '.join(s.queue for s in down)} "
                        f"(last seen {seen.last_seen_at:%Y-%m-%d %H:%M} UTC)",
                detail="\n".join(p for s in down for p in s.problems))
        else:
            alert_resolve(key=key, resolution="A live cluster serves its queues again.")
    if never:
        alert_open(key="queues-never-served",
                   summary=f"No qcluster has ever served {', '.join(never)}",
                   detail="Start one: python manage.py qcluster (see README, Jobs).")
    else:
        alert_resolve(key="queues-never-served", resolution="A cluster serves them now.")
    return report
