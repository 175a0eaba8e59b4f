"""Running a job in a worker: the run record, the lease, retries, and a graceful stop.

What `@job` adds around the body (core.jobs.definitions):

- a `JobRun` row written when the job starts and finished when it ends, with structured log
  lines carrying the same fields;
- a lease: while the body runs, a thread renews the task's lock in the queue and the run's
  heartbeat every `PASTQ_LEASE_RENEW_SECONDS`. A worker that dies (SIGKILL, out of memory) stops
  renewing, so its task is delivered again once the lease (`PASTQ_LEASE_SECONDS`) runs out,
  whatever the job's time limit; a delivery that finds an earlier one with a fresh heartbeat
  stands aside, so one job never runs twice at once;
- retries: when the body raises a transient error and attempts remain, the next attempt is
  queued to become visible after an exponential backoff with jitter (django-q itself only
  redelivers after a fixed delay). The failed attempt is acknowledged (`ack_failures`);
- a graceful stop: SIGTERM to a worker interrupts its job (its transactions roll back), records
  the run as interrupted and hands the task straight back to the queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import traceback
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connections
from django.utils import timezone
from django_q.exceptions import TimeoutException
from django_q.models import OrmQ

import core.jobs.queues as queues
import core.jobs.signals as signals
from core.jobs.models import JobRun
from core.jobs.packages import PACKAGE_KEY, enqueue_package

logger = logging.getLogger("pastq.jobs")


class JobInterrupted(SystemExit):
    """Raised in a job's body when its worker is told to stop (SIGTERM). A SystemExit, so the
    body's `except Exception` clauses let it through, its transactions roll back, and the
    worker process ends cleanly."""


# --- The task this worker process runs (django-q's worker signals) -------------------------

_current_task: dict | None = None
_running_job = False


def remember_current_task(sender, func=None, task=None, **kwargs):
    """django-q's pre_execute signal, in the worker: the package being run (its id tells one
    delivery from another; its ack id names the queue row the lease renews)."""
    global _current_task
    _current_task = task


def forget_current_task(sender, **kwargs):
    global _current_task
    _current_task = None


def stop_on_sigterm(sender, **kwargs):
    """django-q's post_spawn signal, in each new worker: SIGTERM interrupts the running job (or
    ends an idle worker) instead of killing the process mid-write."""
    signal.signal(signal.SIGTERM, _sigterm)


def _sigterm(signum, frame):
    # Once is enough: a second SIGTERM (a process manager and a terminal, or `timeout`, both
    # signalling the group) must not interrupt the recording of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _running_job:
        raise JobInterrupted(143)
    raise SystemExit(0)


# --- Records --------------------------------------------------------------------------------


def _log(event: str, run: JobRun, **extra) -> None:
    fields = {"event": event, "job": run.job, "queue": run.queue, "chain": run.chain,
              "attempt": run.attempt, "task_id": run.task_id, "outcome": run.outcome,
              "duration_ms": run.duration_ms, **extra}
    level = logging.ERROR if run.outcome in JobRun.FAILURES else logging.INFO
    logger.log(level, " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "")),
               extra={"job_run": fields})


def _finish(run: JobRun, outcome: str, **fields) -> None:
    run.finished_at = timezone.now()
    run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    run.outcome = outcome
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=["finished_at", "duration_ms", "outcome", *fields])


def _identity(job_name: str, task: dict, meta: dict, args, kwargs) -> str:
    """What an operator calls "the same job": a schedule's runs are one job, whatever their
    arguments; an ad-hoc call is its job with its arguments."""
    if meta.get("identity"):
        return meta["identity"]
    group = task.get("group")
    if group and group != job_name:
        return f"schedule:{group}"[:250]
    digest = hashlib.sha256(json.dumps([list(args), kwargs], sort_keys=True, default=str)
                            .encode()).hexdigest()[:16]
    return f"call:{job_name}:{digest}"[:250]


def _spent_attempts(chain: str, attempt: int) -> int:
    """Attempts of a chain that count against its maximum: interrupted deliveries (a stopped
    worker) do not. Callers ask only when the count could matter."""
    interrupted = JobRun.objects.filter(chain=chain, outcome=JobRun.Outcome.INTERRUPTED,
                                        attempt__lt=attempt).count()
    return attempt - interrupted


# --- The lease ------------------------------------------------------------------------------


class Lease(threading.Thread):
    """Renews a running task's lock in the queue and its run's heartbeat, in a thread of the
    worker (on its own database connection), until the job ends."""

    def __init__(self, run_pk: int, ack_id: int | None):
        super().__init__(name=f"lease-{run_pk}", daemon=True)
        self.run_pk, self.ack_id = run_pk, ack_id
        self._done = threading.Event()

    def run(self):
        try:
            while not self._done.wait(settings.PASTQ_LEASE_RENEW_SECONDS):
                try:
                    now = timezone.now()
                    if self.ack_id:
                        OrmQ.objects.filter(pk=self.ack_id).update(
                            lock=now + timedelta(seconds=queues.lease_seconds()))
                    JobRun.objects.filter(pk=self.run_pk).update(heartbeat_at=now)
                except Exception:  # a busy database: try again at the next renewal
                    logger.warning("event=lease_renewal_failed run=%s", self.run_pk,
                                   exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


# --- Executing ------------------------------------------------------------------------------


def _earlier_deliveries(earlier: list[JobRun], now) -> str | None:
    """Earlier deliveries of this very task: "live" when one still renews its lease (stand
    aside), "finished" when one already ended (its result was not acknowledged before its
    cluster stopped), else None; a delivery that stopped renewing died with its worker and is
    marked lost."""
    stale_after = timedelta(seconds=queues.lease_seconds())
    verdict = None
    for run in earlier:
        if run.outcome in JobRun.FINISHED:
            verdict = verdict or "finished"
        elif run.outcome == JobRun.Outcome.RUNNING:
            if now - (run.heartbeat_at or run.started_at) < stale_after:
                return "live"
            _finish(run, JobRun.Outcome.LOST,
                    error="Its worker died (its lease ran out with no result).")
            _log("lost", run)
    return verdict


def execute(spec, args: tuple, kwargs: dict):
    """Run one delivery of the job `spec` (a JobSpec) in this process."""
    global _running_job
    current = _current_task or {}
    # The django-q task this worker is running, when it is this job (not a job body calling
    # another job's function directly).
    task = current if current.get("func") == spec.name else {}
    meta = task.get(PACKAGE_KEY) or {}
    queue = meta.get("queue") or spec.queue
    task_id = task.get("id", "")
    now = timezone.now()

    earlier = list(JobRun.objects.filter(task_id=task_id)) if task_id else []
    verdict = _earlier_deliveries(earlier, now)
    if verdict:
        task["save"] = False  # the result that counts is the other delivery's
    if verdict == "live":
        # Not acknowledged either: the queue row belongs to the live delivery, whose lease keeps
        # it locked (and which will be delivered again should its worker die).
        task["ack_id"] = None
        logger.warning("event=duplicate job=%s task_id=%s: another worker is running it",
                       spec.name, task_id)
        return {"skipped": "another worker is running this task"}
    if verdict == "finished":
        return {"skipped": "this task already ran"}
    if earlier:
        chain, attempt = earlier[0].chain, max(r.attempt for r in earlier) + 1
    else:
        chain = meta.get("chain") or task_id or uuid.uuid4().hex
        attempt = meta.get("attempt", 1)
    base = dict(job=spec.name, queue=queue, chain=chain, attempt=attempt, task_id=task_id,
                identity=_identity(spec.name, task, meta, args, kwargs),
                args=list(args), kwargs=kwargs, host=socket.gethostname(), pid=os.getpid(),
                enqueued_at=task.get("started"), started_at=now, heartbeat_at=now)

    max_attempts = spec.retry.max_attempts
    if attempt > max_attempts and _spent_attempts(chain, attempt) > max_attempts:
        # Only a job whose workers died gets here: retries stop at the maximum by themselves.
        run = JobRun.objects.create(
            **base, outcome=JobRun.Outcome.GAVE_UP, finished_at=now, duration_ms=0,
            error=f"Gave up: delivered {attempt} times, at most {max_attempts} allowed; "
                  "earlier deliveries died with their worker.")
        _log("gave_up", run)
        signals.job_gave_up.send(sender=JobRun, run=run)
        return {"gave_up": True, "attempts": attempt - 1}

    try:
        run = JobRun.objects.create(**base)
    except IntegrityError:
        # Another delivery of the same chain claimed this attempt number first: it runs.
        task["ack_id"], task["save"] = None, False
        logger.warning("event=duplicate job=%s chain=%s attempt=%s", spec.name, chain, attempt)
        return {"skipped": "another worker is running this task"}
    _log("started", run)

    lease = Lease(run.pk, task.get("ack_id")) if task else None
    if lease:
        lease.start()
    _running_job = True
    try:
        result = spec.func(*args, **kwargs)
    except JobInterrupted:
        _stop_lease(lease)
        _finish(run, JobRun.Outcome.INTERRUPTED,
                error="Its worker was told to stop (SIGTERM); the task was handed back to the "
                      "queue.")
        if task.get("ack_id"):
            OrmQ.objects.filter(pk=task["ack_id"]).update(lock=timezone.now())
        _log("interrupted", run)
        raise
    except TimeoutException:
        # django-q raises it (a SystemExit) from SIGALRM at the time limit; the worker is
        # replaced after this. Not retried: a job that ran out of time once will again.
        _stop_lease(lease)
        _finish(run, JobRun.Outcome.FAILED,
                error=f"Timed out: exceeded its queue's time limit of {spec.time_limit}s.")
        _log("timed_out", run)
        signals.job_gave_up.send(sender=JobRun, run=run)
        raise
    except Exception as exc:
        _stop_lease(lease)
        _finish_failed(run, spec, exc, args, kwargs, task)
        _acknowledge(task)
        raise
    finally:
        _running_job = False
    _stop_lease(lease)
    _finish(run, JobRun.Outcome.SUCCEEDED)
    _acknowledge(task)
    _log("finished", run)
    signals.job_succeeded.send(sender=JobRun, run=run)
    return result


def _acknowledge(task: dict) -> None:
    """Take the finished task out of the queue now rather than when django-q's monitor gets
    to it: its worker is free for the broker at once (the run record says how it ended; the
    monitor's own acknowledgement then finds nothing to delete)."""
    if task.get("ack_id"):
        OrmQ.objects.filter(pk=task["ack_id"]).delete()


def _stop_lease(lease: Lease | None) -> None:
    if lease is not None:
        lease.stop()


def _finish_failed(run: JobRun, spec, exc: Exception, args, kwargs, task: dict) -> None:
    error = "".join(traceback.format_exception(exc))[-8000:]
    retry = spec.retry
    transient = retry.is_transient(exc)
    if transient and (run.attempt < retry.max_attempts
                      or _spent_attempts(run.chain, run.attempt) < retry.max_attempts):
        delay = retry.delay(run.attempt)
        retry_at = timezone.now() + timedelta(seconds=delay)
        enqueue_package(spec.name, args=list(args), kwargs=kwargs, queue=run.queue,
                        run_at=retry_at, group=task.get("group"),
                        meta={"chain": run.chain, "attempt": run.attempt + 1,
                              "identity": run.identity})
        _finish(run, JobRun.Outcome.RETRYING, error=error, retry_delay_s=round(delay, 3),
                retry_at=retry_at)
        _log("retry_scheduled", run, retry_in_s=round(delay, 1))
        return
    _finish(run, JobRun.Outcome.GAVE_UP if transient else JobRun.Outcome.FAILED, error=error)
    _log("failed", run, error=type(exc).__name__)
    signals.job_gave_up.send(sender=JobRun, run=run)
