"""Tasks the queue benchmark runs: plain functions (django-q alone) and pastq jobs (with the
JobRun record and retry plumbing around them)."""

import time

from core.jobs import NO_RETRY, RetryPolicy, job


def noop():
    return None


def sleep_10ms():
    time.sleep(0.01)


@job(queue="analytics", retry=NO_RETRY)
def job_noop():
    return None


@job(queue="analytics", retry=NO_RETRY)
def job_sleep_10ms():
    time.sleep(0.01)


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def sleep_job(seconds: float) -> dict:
    """A long job (bench/lease.py kills its worker, or lets it outlive many leases)."""
    time.sleep(seconds)
    return {"slept": seconds}
