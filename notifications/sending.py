"""Sending: claim a batch of due ledger rows, render them, hand them over on one connection,
record each outcome. At most once (docs/notifications.md, "The send ledger"):

1. Claim: the rows are committed as `sending` (a conditional UPDATE on their status, under
   SKIP LOCKED on PostgreSQL and SQLite's write lock), with this batch's claim token, before
   anything is sent. A second worker, or this job run again, cannot take them.
2. Send: one connection for the batch, one message at a time (at NOTIFICATIONS_SEND_RATE), each
   outcome classified (`classify`): sent; a definite failure (the server refused the
   connection, or answered 4xx/5xx) is `failed` and tried again with backoff while its window
   lasts; an outcome nobody can know (a timeout or a dropped connection after the message was
   handed over) is `unknown` and never sent again automatically.
3. Record: outcomes are written every FLUSH_EVERY messages in one UPDATE … FROM (VALUES …). A worker that
   dies between the send and the record leaves its rows `sending`; `sending_sweep` marks rows
   claimed longer ago than the queue's time limit `unknown` (interrupted), not queued. A batch
   that stops early but in order (an error, or a worker told to stop) puts the rows it never
   handed over back in the queue; only the message being handed over is left to the sweep.
"""

from __future__ import annotations

import datetime
import logging
import smtplib
import time
import uuid
from dataclasses import dataclass, field
from email.mime.image import MIMEImage
from email.utils import make_msgid, parseaddr

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.jobs import queues
from notifications.content import batch_contents
from notifications.models import Notification, UndeliverableAddress
from notifications.preferences import student_email_paused
from notifications.rendering import CHART_CONTENT_ID, RenderedEmail, email_render
from notifications.unsubscribe import list_unsubscribe_headers

logger = logging.getLogger(__name__)

Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason

CHART_CID = CHART_CONTENT_ID
FLUSH_EVERY = 50
DEFER = datetime.timedelta(minutes=15)  # a weekly report not built yet: look again then

RETRY, UNKNOWN, PERMANENT = "retry", "unknown", "permanent"
RESEND_NOTE = "Resent by "


@dataclass
class SendOutcome:
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    more: bool = False

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict:
        return {**self.counts, "batches": self.batches, "more": self.more}


@dataclass(frozen=True)
class Verdict:
    kind: str  # RETRY, UNKNOWN or PERMANENT
    reason: str
    detail: str
    undeliverable: bool = False


def classify(exc: BaseException, *, handed_over: bool) -> Verdict:
    """What a send error means. Before the message was handed over (opening the connection)
    every error is definite: nothing left, try again later. During the hand-over, a refusal
    the server or the email service answered with is definite (4xx, 429 and 5xx try again;
    other 4xx and 5xx refusals of the recipient are permanent), while a timeout or a dropped
    connection leaves the outcome unknown."""
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    if not handed_over:
        return Verdict(RETRY, Reason.CONNECTION, detail)
    if isinstance(exc, AnymailRecipientsRefused):
        return Verdict(PERMANENT, Reason.REJECTED, detail, undeliverable=True)
    if isinstance(exc, AnymailAPIError):
        cause = exc.__cause__
        if isinstance(cause, requests.ConnectTimeout):
            return Verdict(RETRY, Reason.CONNECTION, detail)
        if isinstance(cause, requests.Timeout):
            return Verdict(UNKNOWN, Reason.TIMEOUT, detail)
        if isinstance(cause, requests.ConnectionError):
            return Verdict(RETRY, Reason.CONNECTION, detail)
        status = exc.status_code
        if status is None:
            return Verdict(UNKNOWN, Reason.ERROR, detail)
        if status == 429 or status >= 500:
            return Verdict(RETRY, Reason.TEMPORARY, detail)
        return Verdict(PERMANENT, Reason.REJECTED, detail)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in exc.recipients.values()]
        if codes and all(code >= 500 for code in codes):
            return Verdict(PERMANENT, Reason.REJECTED, detail, undeliverable=True)
        return Verdict(RETRY, Reason.TEMPORARY, detail)
    if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, data refused, …
        if 400 <= exc.smtp_code < 500:
            return Verdict(RETRY, Reason.TEMPORARY, detail)
        return Verdict(PERMANENT, Reason.REJECTED, detail)
    if isinstance(exc, ConnectionRefusedError):
        return Verdict(RETRY, Reason.CONNECTION, detail)
    if isinstance(exc, (TimeoutError, smtplib.SMTPServerDisconnected, OSError)):
        return Verdict(UNKNOWN, Reason.TIMEOUT, detail)
    return Verdict(PERMANENT, Reason.ERROR, detail)


def retry_delay(attempts: int) -> datetime.timedelta:
    """Exponential: base · 2^(attempts−1), at most 4 hours."""
    seconds = settings.NOTIFICATIONS_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)
    return datetime.timedelta(seconds=min(seconds, 4 * 3600))


def time_budget() -> float:
    """A send job stops taking batches after a third of its queue's time limit."""
    return queues.time_limit("notifications") / 3


# --- Claiming -------------------------------------------------------------------------------


def eligible(now: datetime.datetime, *, paused: bool):
    rows = Notification.objects.filter(
        Q(status=Status.QUEUED, send_after__lte=now)
        | Q(status=Status.FAILED, retry_at__lte=now))
    if paused:
        rows = rows.exclude(kind__in=Notification.STUDENT_KINDS)
    return rows


def claim(now: datetime.datetime, *, limit: int, paused: bool,
          ids: list[int] | None = None) -> list[Notification]:
    """Commit up to `limit` due rows as `sending` under a new claim token and return them with
    what rendering needs loaded (two queries and the claim)."""
    token = uuid.uuid4().hex
    with transaction.atomic():
        candidates = eligible(now, paused=paused)
        if ids is not None:
            candidates = candidates.filter(pk__in=ids)
        candidates = candidates.order_by("send_after", "id").values_list("pk", flat=True)
        if db_connection.vendor == "postgresql":
            candidates = candidates.select_for_update(skip_locked=True)
        chosen = list(candidates[:limit])
        if not chosen:
            return []
        Notification.objects.filter(
            pk__in=chosen, status__in=[Status.QUEUED, Status.FAILED],
        ).update(status=Status.SENDING, claim=token, claimed_at=now, retry_at=None,
                 attempts=F("attempts") + 1, updated_at=now)
    return list(Notification.objects.filter(claim=token, status=Status.SENDING)
                .select_related("user__profile", "report", "achievement__achievement",
                                "achievement__subject")
                .order_by("send_after", "id"))


def expire(now: datetime.datetime, *, reason: str) -> int:
    """Student rows whose send window has passed: queued ones are skipped with `reason`
    (outside the window, or paused when the pause outlasted it); failed ones stop retrying."""
    late = Notification.objects.filter(kind__in=Notification.STUDENT_KINDS, expires_at__lte=now)
    skipped = late.filter(status=Status.QUEUED).update(
        status=Status.SKIPPED, reason=reason, updated_at=now)
    late.filter(status=Status.FAILED, retry_at__isnull=False).update(
        retry_at=None, updated_at=now)
    return skipped


def sending_sweep(now: datetime.datetime) -> int:
    """Rows left `sending` by a worker that died mid-batch become `unknown`: whether their
    message left is not known, so they are not sent again (an operator may resend them)."""
    stale = now - datetime.timedelta(seconds=queues.time_limit("notifications") + 60)
    return Notification.objects.filter(status=Status.SENDING, claimed_at__lt=stale).update(
        status=Status.UNKNOWN, reason=Reason.INTERRUPTED, claim="", updated_at=now,
        detail="The sender stopped while this was being sent; it may have gone out.")


# --- Messages -------------------------------------------------------------------------------


def _message_domain() -> str:
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return address.rpartition("@")[2] or "localhost"


def message_build(row: Notification, rendered: RenderedEmail, chart_png: bytes = b"",
                  *, connection=None) -> EmailMultiAlternatives:
    """The email of a ledger row: text and HTML alternatives, the chart inline by Content-ID
    (multipart/related), List-Unsubscribe (RFC 8058) on student mail, our Message-ID."""
    headers = {"Message-ID": make_msgid(domain=_message_domain()),
               "X-Pastq-Kind": row.kind}
    subject = rendered.subject
    if row.kind in Notification.STUDENT_KINDS and row.user_id:
        headers.update(list_unsubscribe_headers(row.user_id, row.kind))
        headers["Auto-Submitted"] = "auto-generated"
    else:
        subject = f"{settings.EMAIL_SUBJECT_PREFIX}{subject}"
    message = EmailMultiAlternatives(subject, rendered.text, settings.DEFAULT_FROM_EMAIL,
                                     [row.address], headers=headers, connection=connection)
    message.attach_alternative(rendered.html, "text/html")
    if chart_png:
        image = MIMEImage(chart_png, "png")
        image.add_header("Content-ID", f"<{CHART_CID}>")
        image.add_header("Content-Disposition", "inline", filename="chart.png")
        message.attach(image)
        message.mixed_subtype = "related"
    return message


def message_id_of(message: EmailMultiAlternatives) -> str:
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id:
        return str(status.message_id)[:255]
    return message.extra_headers.get("Message-ID", "")[:255]


# --- The batch ------------------------------------------------------------------------------


class _Rate:
    def __init__(self, per_second: float):
        self.interval = 1 / per_second if per_second > 0 else 0
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next = max(self.next, time.monotonic()) + self.interval


def render_row(row: Notification, context: dict) -> RenderedEmail:
    if context.get("stored"):
        return RenderedEmail(subject=row.subject, text=row.text, html=row.html)
    if "chart_src" in context or context.get("has_chart"):
        context = {**context, "chart_src": f"cid:{CHART_CID}"}
    return email_render(row.kind, context)


def send_batch(rows: list[Notification], *, now: datetime.datetime,
               outcome: SendOutcome, rate: _Rate | None = None) -> None:
    """Send claimed rows over one connection and record every outcome. Rows never handed
    over when the batch stops early (an error, or the worker told to stop) go back to the
    queue; only the one being handed over at that moment is left for the sweep."""
    rate = rate or _Rate(settings.NOTIFICATIONS_SEND_RATE)
    pending: list[Notification] = []
    recorded: set[int] = set()
    in_flight = None
    undeliverable: list[tuple[str, str]] = []
    connection = get_connection(fail_silently=False)
    opened, open_error = False, None
    try:
        contents = batch_contents(rows, now=now)
        for row, content in zip(rows, contents, strict=True):
            if content.skip:
                _set(row, Status.SKIPPED, content.skip, content.skip_detail, now)
            elif content.defer:
                _defer(row, now)
            else:
                try:
                    rendered = render_row(row, content.context)
                    message = message_build(row, rendered, content.chart_png,
                                            connection=connection)
                except Exception as exc:  # noqa: BLE001  (one email's fault, not the batch's)
                    # Nothing was handed over: this email fails for good (the operator sees
                    # why in the ledger) and the rest of the batch still goes, rather than
                    # every row being left `sending` for the sweep to call unknown.
                    logger.exception("notification %s could not be rendered", row.pk)
                    _failed(row, Verdict(PERMANENT, Reason.ERROR,
                                         f"{type(exc).__name__}: {exc}"[:2000]), now)
                    pending.append(row)
                    recorded.add(row.pk)
                    outcome.add(row.status)
                    continue
                row.subject, row.text, row.html = rendered.subject[:255], rendered.text, rendered.html
                if not opened and open_error is None:
                    try:
                        connection.open()
                        opened = True
                    except Exception as exc:  # noqa: BLE001  (any failure to connect: retry)
                        # Once per batch: the rest of it waits for the next attempt too,
                        # instead of each waiting out its own connection timeout.
                        open_error = classify(exc, handed_over=False)
                if open_error is not None:
                    _failed(row, open_error, now)
                    pending.append(row)
                    recorded.add(row.pk)
                    outcome.add(row.status)
                    continue
                rate.wait()
                in_flight = row.pk
                try:
                    sent = connection.send_messages([message])
                except Exception as exc:  # noqa: BLE001  (classified: every error is recorded)
                    verdict = classify(exc, handed_over=True)
                    _failed(row, verdict, now)
                    if verdict.undeliverable:
                        undeliverable.append((row.address, verdict.detail))
                    # The connection may be broken half-way through a conversation: a new one
                    # for the next message.
                    _close_quietly(connection)
                    opened = False
                else:
                    if sent:
                        # An operator's resend keeps its note ("Resent by … at …").
                        note = row.detail if row.detail.startswith(RESEND_NOTE) else ""
                        _set(row, Status.SENT, "", note, now, sent_at=timezone.now(),
                             message_id=message_id_of(message))
                    else:
                        _failed(row, Verdict(RETRY, Reason.CONNECTION,
                                             "The backend sent nothing."), now)
            pending.append(row)
            recorded.add(row.pk)
            in_flight = None
            outcome.add(row.status)
            if len(pending) >= FLUSH_EVERY:
                _flush(pending)
                pending = []
    finally:
        _flush(pending)
        _release([r for r in rows if r.pk not in recorded and r.pk != in_flight], now)
        if undeliverable:
            _undeliverable_record(undeliverable, now)
        if opened:
            _close_quietly(connection)


def _release(rows: list[Notification], now) -> None:
    """Claimed rows never handed over go back to the queue, the attempt not counted (rather
    than staying `sending` for the sweep to call unknown: nothing of them left)."""
    if not rows:
        return
    try:
        Notification.objects.filter(
            pk__in=[r.pk for r in rows], claim=rows[0].claim, status=Status.SENDING,
        ).update(status=Status.QUEUED, claim="", attempts=F("attempts") - 1, updated_at=now)
    except Exception:  # noqa: BLE001  (the error that stopped the batch is the one to raise)
        logger.exception("could not put %d unsent notifications back in the queue", len(rows))


def _close_quietly(connection) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001  (closing a broken connection)
        logger.debug("closing the mail connection failed", exc_info=True)


def _set(row, status, reason, detail, now, **values) -> None:
    row.status, row.reason, row.detail, row.updated_at = status, reason, detail, now
    row.claim = ""
    for name, value in values.items():
        setattr(row, name, value)


def _defer(row, now) -> None:
    row.attempts = max(0, row.attempts - 1)  # waiting for its report is no attempt
    _set(row, Status.QUEUED, "", "Waiting for the weekly report to be built.", now,
         send_after=now + DEFER)


def _failed(row, verdict: Verdict, now) -> None:
    if verdict.kind == UNKNOWN:
        _set(row, Status.UNKNOWN, verdict.reason, verdict.detail, now)
        return
    retry_at = None
    if verdict.kind == RETRY and row.attempts < settings.NOTIFICATIONS_MAX_ATTEMPTS:
        retry_at = now + retry_delay(row.attempts)
        if row.expires_at is not None and retry_at >= row.expires_at:
            retry_at = None
    detail = verdict.detail
    if verdict.kind == RETRY and retry_at is None:
        detail = f"Given up after {row.attempts} attempt(s): {detail}"
    _set(row, Status.FAILED, verdict.reason, detail, now, retry_at=retry_at)


_FLUSH_FIELDS = ["status", "reason", "detail", "claim", "retry_at", "send_after", "attempts",
                 "message_id", "subject", "text", "html", "sent_at", "updated_at"]


_FLUSH_DATETIMES = {"retry_at", "send_after", "sent_at", "updated_at"}


def _flush(rows: list[Notification]) -> None:
    """Record a group of outcomes in one `WITH v(…) AS (VALUES …) UPDATE … FROM v` (SQLite
    3.33+ and PostgreSQL). Django's bulk_update builds a CASE WHEN per field and row, which
    cost 2.2 ms of the 5.2 ms per message (bench/notifications.py); an upsert by id would bring
    back a row deleted meanwhile (a student deleted mid-send)."""
    if not rows:
        return
    ops, vendor = db_connection.ops, db_connection.vendor
    placeholders = ["%s"]
    for name in _FLUSH_FIELDS:
        if vendor == "postgresql" and name in _FLUSH_DATETIMES:
            placeholders.append("CAST(%s AS timestamptz)")
        elif vendor == "postgresql" and name == "attempts":
            placeholders.append("CAST(%s AS integer)")
        else:
            placeholders.append("%s")
    one = f"({', '.join(placeholders)})"
    params: list = []
    for row in rows:
        params.append(row.pk)
        for name in _FLUSH_FIELDS:
            value = getattr(row, name)
            params.append(ops.adapt_datetimefield_value(value) if name in _FLUSH_DATETIMES
                          else value)
    table = ops.quote_name(Notification._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in ["id", *_FLUSH_FIELDS])
    assignments = ", ".join(f"{ops.quote_name(c)} = v.{ops.quote_name(c)}"
                            for c in _FLUSH_FIELDS)
    sql = (f"WITH v({columns}) AS (VALUES {', '.join([one] * len(rows))}) "
           f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{ops.quote_name('id')} = "
           f"v.{ops.quote_name('id')}")
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)


def _undeliverable_record(found: list[tuple[str, str]], now) -> None:
    UndeliverableAddress.objects.bulk_create(
        [UndeliverableAddress(address=address.lower(), reason="rejected", description=detail,
                              recorded_at=now) for address, detail in found],
        ignore_conflicts=True)


def send_due(*, now: datetime.datetime | None = None, budget_seconds: float | None = None,
             batch_size: int | None = None, ids: list[int] | None = None) -> SendOutcome:
    """Send what is due, batch after batch, until nothing is left or the time budget is used
    (`more` then says so: the task queues another run)."""
    now = now or timezone.now()
    budget = time_budget() if budget_seconds is None else budget_seconds
    batch_size = batch_size or settings.NOTIFICATIONS_BATCH_SIZE
    outcome = SendOutcome()
    paused = student_email_paused()
    expire(now, reason=Reason.PAUSED if paused else Reason.OUTSIDE_WINDOW)
    sending_sweep(now)
    started = time.monotonic()
    rate = _Rate(settings.NOTIFICATIONS_SEND_RATE)
    while True:
        rows = claim(now, limit=batch_size, paused=paused, ids=ids)
        if not rows:
            break
        outcome.batches += 1
        send_batch(rows, now=now, outcome=outcome, rate=rate)
        if time.monotonic() - started > budget:
            outcome.more = eligible(now, paused=paused).exists()
            break
    return outcome
