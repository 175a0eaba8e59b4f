"""django-q entry points of the maintenance app: thin, primitive arguments, a small dict back."""

from core.jobs import NO_RETRY, RetryPolicy, job
from maintenance import health, pruning


@job(queue="maintenance", retry=NO_RETRY)
def health_checks() -> dict:
    """Every 5 minutes: the same checks as `manage.py health_check`, from inside a cluster. It
    notices what the other clusters' queues suffer (a stall, a dead routed cluster); a dead
    cluster of its own is noticed by health_check run from outside."""
    report = health.health_watch()
    return {"status": report.status,
            "failed": [c.name for c in report.checks if c.status == health.FAIL]}


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def job_records_prune(days: int = 30) -> dict:
    return pruning.job_records_prune(days=days)
