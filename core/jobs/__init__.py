"""The job plumbing: the bottom layer, which imports nothing else of the project.

    from core.jobs import job, enqueue, RetryPolicy

    @job(queue="analytics", retry=RetryPolicy(max_attempts=5))
    def aggregate_day(day: str) -> dict: ...

    enqueue("analytics.tasks.aggregate_day", args=["2024-03-10"])

Modules: `definitions` (@job, retry policies, the registry), `enqueueing` and `packages`
(putting work on a queue), `execution` (running it: run records, leases, retries, graceful
stop), `broker` (django-q's ORM broker with per-queue keys, fair taking and leases), `cluster`
(django-q's cluster with presence, wedge recovery and a safe stop), `liveness` (the one
liveness signal), `schedules` (the periodic table's sync), `models` (JobRun, ClusterPresence),
`signals` (what it announces to higher layers).
"""

from core.jobs.definitions import (
    JOBS,
    NO_RETRY,
    JobSpec,
    RetryPolicy,
    TransientError,
    job,
    job_spec,
)
from core.jobs.enqueueing import enqueue

__all__ = ["JOBS", "NO_RETRY", "JobSpec", "RetryPolicy", "TransientError", "enqueue", "job",
           "job_spec"]
