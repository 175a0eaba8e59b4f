"""Alerts: tell the staff once, resolve when the problem clears, let a person acknowledge.

An alert is keyed by what it is about (`queue-down:analytics`, `job-gave-up:<identity>`): while
one is open for a key no second email goes out, from any process (a partial unique constraint).
The job plumbing announces failures with signals (core.jobs.signals); the receivers at the end
of this module turn them into alerts, and resolve an alert when the same job later succeeds.
"""

from __future__ import annotations

import hashlib
import logging

from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.jobs.models import JobRun
from maintenance.models import OpsAlert

logger = logging.getLogger("pastq.alerts")

MAX_KEY_LENGTH = 200


def _key(prefix: str, subject: str) -> str:
    key = f"{prefix}:{subject}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{prefix}:{hashlib.sha256(subject.encode()).hexdigest()}"


def alert_open(*, key: str, summary: str, detail: str = "") -> bool:
    """Record the alert and email the `ADMINS`: True when this opened it, False when it was
    open already. A failed email is logged; the alert stays recorded (and shown)."""
    try:
        with transaction.atomic():
            OpsAlert.objects.create(key=key, summary=summary[:300], detail=detail)
    except IntegrityError:
        return False  # open already (the partial unique constraint), maybe from another process
    logger.error("alert opened key=%s summary=%s", key, summary)
    try:
        mail_admins(summary, f"{summary}\n\n{detail}")  # EMAIL_SUBJECT_PREFIX: "[pastq] "
    except Exception:
        logger.exception("The alert email could not be sent (key=%s).", key)
    return True


def alert_resolve(*, key: str, resolution: str = "") -> bool:
    return bool(OpsAlert.objects.filter(key=key, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolution=resolution[:300]))


def alert_acknowledge(alert: OpsAlert, *, by: str) -> bool:
    """A person has seen it (it stays open until the problem clears); False when it was
    acknowledged or resolved already."""
    return bool(OpsAlert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True,
                                        resolved_at__isnull=True)
                .update(acknowledged_at=timezone.now(), acknowledged_by=by[:254]))


# --- What the job plumbing announces --------------------------------------------------------


def job_alert_key(identity: str) -> str:
    return _key("job-gave-up", identity)


def on_job_gave_up(sender, run: JobRun, **kwargs) -> None:
    if run.outcome == JobRun.Outcome.FAILED:
        summary = f"Job {run.job} failed (not retried)"
    else:
        summary = f"Job {run.job} gave up after {run.attempt} attempts"
    alert_open(
        key=job_alert_key(run.identity or f"run:{run.pk}"), summary=summary,
        detail=f"Queue: {run.queue}\nChain: {run.chain}\nIdentity: {run.identity}\n"
               f"Arguments: {run.args} {run.kwargs}\n\n{run.error}")


def on_job_succeeded(sender, run: JobRun, **kwargs) -> None:
    if run.identity:
        alert_resolve(key=job_alert_key(run.identity),
                      resolution=f"The same job succeeded at {run.finished_at:%Y-%m-%d %H:%M:%S} "
                                 f"UTC (run {run.pk}).")


def on_task_undeliverable(sender, run: JobRun, **kwargs) -> None:
    alert_open(key=_key("task-undeliverable", run.queue),
               summary=f"A queued task of {run.queue} could not be verified and was set aside",
               detail=f"{run.error}\n\nSee job run {run.pk} in the admin (its payload is kept).")
