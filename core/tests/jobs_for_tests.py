"""Jobs the worker tests enqueue: importable by a qcluster subprocess, like any task module."""

import os
import time

from django.core.cache import cache
from django.db import transaction

from core.jobs import RetryPolicy, TransientError, job
from core.models import PracticeSession


@job(queue="analytics", retry=RetryPolicy(max_attempts=1))
def noop(value=None):
    return {"value": value}


@job(queue="analytics", retry=RetryPolicy(max_attempts=3))
def flaky(key: str, failures: int) -> dict:
    """Fails with a transient error `failures` times, then succeeds."""
    calls = cache.get(key, 0) + 1
    cache.set(key, calls, None)
    if calls <= failures:
        raise TransientError(f"call {calls} of {key} fails on purpose")
    return {"calls": calls}


@job(queue="analytics", retry=RetryPolicy(max_attempts=3))
def broken() -> None:
    raise ValueError("a permanent error: not retried")


@job(queue="notifications", retry=RetryPolicy(max_attempts=3))
def session_insert_slowly(student_id: int, flag: str, sleep_s: float) -> dict:
    """Inserts a row in a transaction and, the first time only, sleeps before committing: the
    test kills the worker during that sleep."""
    first_delivery = cache.add(flag, "slept", None)  # outside the transaction: it must stick
    with transaction.atomic():
        session = PracticeSession.objects.create(student_id=student_id)
        if first_delivery:
            time.sleep(sleep_s)
    return {"session": session.pk}


@job(queue="maintenance", retry=RetryPolicy(max_attempts=3))
def sleep_for(seconds: float, key: str = "") -> dict:
    """Sleeps; records each start (pid, time) in the cache under `key`."""
    if key:
        with transaction.atomic():
            cache.set(key, [*cache.get(key, []), (os.getpid(), time.time())], None)
    time.sleep(seconds)
    return {"slept": seconds}


@job(queue="analytics", retry=RetryPolicy(max_attempts=1))
def echo_options(**options) -> dict:
    """Returns its keyword arguments: they must arrive whatever their names."""
    return options


@job(queue="question_processing", retry=RetryPolicy(max_attempts=1))
def claim_steps_then_hang(step: str, seconds: float) -> dict:
    """Claims a batch of AI steps as the pipeline does, then works on it for `seconds`: the
    test kills the worker meanwhile."""
    from core import processing

    token = processing.steps_claim(step, limit=50)
    time.sleep(seconds)
    return {"token": token}
