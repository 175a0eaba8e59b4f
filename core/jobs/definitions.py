"""Declaring jobs: `@job(queue=..., retry=RetryPolicy(...))` and the registry of declared jobs."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError
from django.utils.module_loading import import_string

import core.jobs.queues as queues
from core.jobs.execution import execute


class TransientError(Exception):
    """Raise from a job for a failure worth retrying (a remote service down, a lock timeout)."""


def default_transient() -> tuple[type[BaseException], ...]:
    return (TransientError, OperationalError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    min(max_delay, base·2ⁿ⁻¹) seconds. `base_delay=None` takes PASTQ_RETRY_BASE_SECONDS."""

    max_attempts: int = 5
    base_delay: float | None = None
    max_delay: float = 3600.0
    transient: tuple[type[BaseException], ...] = field(default_factory=default_transient)

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        base = settings.PASTQ_RETRY_BASE_SECONDS if self.base_delay is None else self.base_delay
        ceiling = min(self.max_delay, base * 2 ** (failed_attempt - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transient)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class JobSpec:
    name: str
    queue: str
    retry: RetryPolicy
    func: Callable

    @property
    def time_limit(self) -> int:
        return queues.time_limit(self.queue)


JOBS: dict[str, JobSpec] = {}


def job(*, queue: str, retry: RetryPolicy = RetryPolicy()):
    """Declare a task function a job of `queue`, with its retry policy. The worker runs the
    wrapper, which records the run, keeps the task's lease alive and applies the policy."""
    queues.check_queue(queue)

    def decorate(func):
        name = f"{func.__module__}.{func.__qualname__}"
        spec = JobSpec(name=name, queue=queue, retry=retry, func=func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return execute(spec, args, kwargs)

        JOBS[name] = spec
        wrapper.job_spec = spec
        return wrapper

    return decorate


def job_spec(path: str) -> JobSpec:
    """The spec of a job by dotted path (importing its module registers it). ValueError when
    the path names nothing importable or something that is not a job."""
    if path not in JOBS:
        try:
            target = import_string(path)
        except ImportError as exc:
            raise ValueError(f"{path!r} cannot be imported ({exc}).") from None
        if not hasattr(target, "job_spec"):
            raise ValueError(f"{path} is not a job (declare it with @core.jobs.job).")
    return JOBS[path]
