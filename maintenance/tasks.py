"""django-q entry points of the maintenance app: thin, primitive arguments, a small dict back."""

import datetime

from django.conf import settings

from core.jobs import NO_RETRY, RetryPolicy, job, job_spec
from maintenance import cleanup, health, optimise, pruning
from maintenance.system_report import system_report_build, system_report_send

# A cleanup job stops starting batches after this share of its queue's time limit; what is
# left waits for the next night (each part is idempotent).
CLEANUP_TIME_SHARE = 0.8


def _time_budget(task: str) -> float:
    return job_spec(f"maintenance.tasks.{task}").time_limit * CLEANUP_TIME_SHARE


@job(queue="maintenance", retry=NO_RETRY)
def health_checks() -> dict:
    """Every 5 minutes: the same checks as `manage.py health_check`, from inside a cluster. It
    notices what the other clusters' queues suffer (a stall, a dead routed cluster); a dead
    cluster of its own is noticed by health_check run from outside."""
    report = health.health_watch()
    return {"status": report.status,
            "failed": [c.name for c in report.checks if c.status == health.FAIL]}


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def job_records_prune(days: int | None = None) -> dict:
    """03:45: finished job records, task results, old presences and resolved alerts past
    CLEANUP_JOB_RECORD_DAYS (or `days`)."""
    days = settings.CLEANUP_JOB_RECORD_DAYS if days is None else days
    budget = pruning.Budget.seconds(_time_budget("job_records_prune"))
    result = pruning.job_records_prune(days=days, budget=budget)
    return {**result, "unfinished": budget.cut_short} if budget.cut_short else result


def _cleanup(task: str, parts: list[str]) -> dict:
    report = cleanup.cleanup_run(parts=parts, time_limit_s=_time_budget(task))
    # Every part ran before a failure is raised (a failure alerts; a transient one retries).
    report.raise_first_error()
    summary = {"parts": report.parts}
    if report.unfinished:
        summary["unfinished"] = report.unfinished
    return summary


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def session_cleanup() -> dict:
    """03:00: idle practice sessions abandoned, empty abandoned ones deleted (never an
    attempt)."""
    return _cleanup("session_cleanup", ["sessions"])


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def token_cleanup() -> dict:
    """03:30: API tokens expired or revoked past their grace period; expired login
    sessions."""
    return _cleanup("token_cleanup", ["tokens"])


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def tmp_cleanup() -> dict:
    """05:30: old files under var/tmp; the stored HTML of old emails and reports; old
    health-check runs."""
    return _cleanup("tmp_cleanup", ["tmp", "email", "health"])


@job(queue="maintenance", retry=NO_RETRY)
def database_optimise() -> dict:
    """Sunday 05:00: VACUUM (ANALYZE) where dead tuples pile up and a size report
    (PostgreSQL); PRAGMA optimize, a WAL checkpoint and an integrity check (SQLite). The
    whole report is in the return value's summary; a failed VACUUM or integrity check fails
    the job (and so alerts)."""
    report = optimise.database_optimise()
    summary = _optimise_summary(report)
    if report["status"] != "ok":
        raise optimise.OptimiseError(f"Database optimisation found problems: {summary}")
    return summary


def _optimise_summary(report: dict) -> dict:
    """The report in a few numbers (the job's result is kept in django-q's table)."""
    if report["engine"] == "postgresql":
        return {"engine": "postgresql", "status": report["status"],
                "database_bytes": report["database_bytes"],
                "vacuumed": [c["table"] for c in report["candidates"] if c["vacuumed"]],
                "failed": {c["table"]: c["error"] for c in report["candidates"] if c["error"]},
                "largest_tables": [(t["table"], t["total_bytes"]) for t in report["tables"][:5]],
                "unused_indexes": len(report["unused_indexes"]),
                "duration_ms": report["duration_ms"]}
    return {"engine": "sqlite", "status": report["status"],
            "size_before_bytes": report["size_before_bytes"],
            "size_after_bytes": report["size_after_bytes"],
            "checkpoint": report["checkpoint"], "integrity": report["integrity"],
            "duration_ms": report["duration_ms"]}


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def system_report(day: str | None = None) -> dict:
    """Daily at 06:30 UTC: build the report on the day that just ended (or `day`, an ISO date)
    and mail it to the staff."""
    report = system_report_build(day=datetime.date.fromisoformat(day) if day else None)
    mailed = system_report_send(report)
    return {"day": report.day.isoformat(), "status": report.status, "mailed_to": len(mailed)}
