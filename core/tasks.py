"""django-q entry points of the core app: thin, primitive arguments, a small dict back."""

from core import ops
from core.jobs import NO_RETRY, RetryPolicy, job


@job(queue="maintenance", retry=NO_RETRY)
def heartbeat(queue: str) -> dict:
    """Scheduled every minute on each queue: proves that queue's cluster runs, and checks all
    queues for stalls (any live cluster can raise the alarm about a dead one)."""
    ops.heartbeat_record(queue)
    stalled = ops.cluster_watch()
    return {"queue": queue, "stalled": stalled}


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def job_runs_prune(days: int = 30) -> dict:
    return ops.job_records_prune(days=days)
