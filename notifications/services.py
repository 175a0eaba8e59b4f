"""The notifications app's entry points (tasks, the command, the admin and maintenance call
these): the dispatcher, staff reports, test emails, resends, the pause switch.
docs/notifications.md has the whole design."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import Report
from analytics.reports import report_context
from core.jobs import enqueue
from notifications import planning, sending
from notifications.content import batch_contents, common_context
from notifications.models import EmailDelivery, Notification
from notifications.rendering import email_render

Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason

SEND_TASK = "notifications.tasks.send_queued"
# Admin reports built longer ago than this are not mailed any more (a first deploy does not
# mail a backlog).
STAFF_REPORT_WINDOW = datetime.timedelta(hours=48)


def notifications_dispatch(*, now: datetime.datetime | None = None,
                           send: bool = True) -> dict:
    """The dispatcher (every 15 minutes): plan every student email whose local send time has
    come since the last run, queue the admin reports not mailed yet, then send what is due
    within this job's time budget."""
    now = now or timezone.now()
    planned = planning.plan(now=now)
    staff = admin_reports_queue(now=now)
    result = {**planned.as_dict(), "staff_queued": staff}
    if send:
        result["sent"] = sending.send_due(now=now).as_dict()
    return result


# --- Staff mail -----------------------------------------------------------------------------


def staff_addresses() -> list[str]:
    return sorted({a.strip().lower() for a in settings.NOTIFICATIONS_STAFF_EMAILS if a.strip()})


def staff_email_queue(*, kind: str, period: str, context: dict,
                      addresses: list[str] | None = None, report: Report | None = None,
                      now: datetime.datetime | None = None) -> list[Notification]:
    """Render a staff email once and queue it to each address (one ledger row per address,
    kind and period: queueing the same period twice sends nothing more). Staff email is never
    paused and has no send window. A send job is enqueued once the rows are committed.
    Maintenance's system report comes through here."""
    now = now or timezone.now()
    addresses = staff_addresses() if addresses is None else addresses
    if not addresses:
        return []
    rows = []
    for address in addresses:
        row = Notification(address=address, recipient=address.lower(), kind=kind,
                           period=period, status=Status.QUEUED, due_at=now, send_after=now,
                           report=report, created_at=now, updated_at=now)
        rendered = email_render(kind, {**common_context(row), **context,
                                       "chart_src": f"cid:{sending.CHART_CID}",
                                       "has_chart": bool(report and report.chart_png)})
        row.subject, row.text, row.html = rendered.subject[:255], rendered.text, rendered.html
        rows.append(row)
    with transaction.atomic():
        Notification.objects.bulk_create(rows, ignore_conflicts=True)
        enqueue(SEND_TASK)
    return list(Notification.objects.filter(
        kind=kind, period=period, recipient__in=[a.lower() for a in addresses]))


def admin_reports_queue(*, now: datetime.datetime) -> int:
    """Admin reports (daily, weekly) built in the last 48 hours and not mailed to the staff
    yet: queued to each staff address."""
    addresses = staff_addresses()
    if not addresses:
        return 0
    reports = list(Report.objects.filter(
        kind__in=[Report.Kind.ADMIN_DAILY, Report.Kind.ADMIN_WEEKLY],
        created_at__gte=now - STAFF_REPORT_WINDOW))
    if not reports:
        return 0
    periods = {f"{r.kind}:{r.label}": r for r in reports}
    done = set(Notification.objects.filter(
        kind=Kind.ADMIN_REPORT, period__in=list(periods)).values_list("period", "recipient"))
    queued = 0
    for period, report in periods.items():
        missing = [a for a in addresses if (period, a) not in done]
        if missing:
            queued += len(staff_email_queue(kind=Kind.ADMIN_REPORT, period=period,
                                            context=report_context(report),
                                            addresses=missing, report=report, now=now))
    return queued


def test_email_send(*, to: str, sent_by: str = "") -> Notification:
    """Send a test email now (the admin's "Send a test email"): it goes through the ledger and
    the configured backend like any other, and comes back with its outcome."""
    now = timezone.now()
    [row] = staff_email_queue(
        kind=Kind.TEST, period=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        context={"sent_by": sent_by or "an operator", "backend": settings.EMAIL_BACKEND,
                 "sent_at": now},
        addresses=[to.strip()], now=now)
    sending.send_due(now=now, ids=[row.pk])
    row.refresh_from_db()
    return row


def notifications_resend(ids: list[int], *, by: str = "") -> sending.SendOutcome:
    """Send failed or unknown entries again now (the admin's "Resend", after confirmation:
    an unknown one may have arrived already). Other statuses are left alone."""
    now = timezone.now()
    window = planning.send_window()
    resendable = list(Notification.objects.filter(
        pk__in=ids, status__in=[Status.FAILED, Status.UNKNOWN]).values_list("pk", flat=True))
    note = f"{sending.RESEND_NOTE}{by or 'an operator'} at {now:%Y-%m-%d %H:%M} UTC."
    Notification.objects.filter(pk__in=resendable, status__in=[Status.FAILED, Status.UNKNOWN]
                                ).update(status=Status.QUEUED, reason="", detail=note,
                                         send_after=now, retry_at=None, claim="",
                                         expires_at=now + window, updated_at=now)
    return sending.send_due(now=now, ids=resendable)


# --- Pause ----------------------------------------------------------------------------------


def student_email_pause(*, by=None, note: str = "") -> None:
    """Pause every student email (the admin's switch; a restore does it too). Queued mail
    waits; staff mail still goes."""
    EmailDelivery.objects.update_or_create(pk=1, defaults={
        "student_email_paused": True, "changed_at": timezone.now(), "changed_by": by,
        "note": note[:200]})


def student_email_resume(*, by=None, note: str = "") -> int:
    """Resume student email. What waited and is still inside its send window goes out; what
    outlived its window while paused is skipped with the reason "paused" (returned: how many)."""
    now = timezone.now()
    with transaction.atomic():
        skipped = sending.expire(now, reason=Reason.PAUSED)
        EmailDelivery.objects.update_or_create(pk=1, defaults={
            "student_email_paused": False, "changed_at": now, "changed_by": by,
            "note": note[:200]})
        enqueue(SEND_TASK)
    return skipped


# --- An operator's send of one kind (send_notifications) --------------------------------------


@dataclass
class KindPreview:
    """What `send_notifications` would do (or did): per student, the outcome and why."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (address, period, what)
    counts: dict[str, int] = field(default_factory=dict)
    result: dict[str, int] = field(default_factory=dict)  # statuses after sending

    def add(self, address: str, period: str, what: str, key: str) -> None:
        self.lines.append((address, period, what))
        self.counts[key] = self.counts.get(key, 0) + 1


def notifications_send_kind(kind: str, *, day: datetime.date | None = None,
                            emails: list[str] | None = None, dry_run: bool = False,
                            now: datetime.datetime | None = None) -> KindPreview:
    """Send (or, dry run, say what would be sent) the emails of `kind` now rather than at
    their local time: every rule applies (preferences, undeliverable addresses, quiet hours,
    nothing to say, the pause, the ledger's once per period)."""
    now = now or timezone.now()
    rows = planning.rows_for_kind(kind, now=now, day=day, emails=emails)
    decided = planning.decide(rows, now=now)
    existing = {(n.recipient, n.period): n for n in Notification.objects.filter(
        kind=kind, recipient__in=[d.recipient for d in decided],
        period__in={d.period for d in decided})}
    preview = KindPreview()
    fresh = []
    for row in decided:
        if (row.recipient, row.period) in existing:
            earlier = existing[(row.recipient, row.period)]
            preview.add(row.address, row.period,
                        f"already in the ledger: {earlier.get_status_display().lower()}"
                        + (f" ({earlier.get_reason_display().lower()})" if earlier.reason else ""),
                        "already")
        elif row.status == Status.SKIPPED:
            preview.add(row.address, row.period, f"skipped: {row.get_reason_display().lower()}",
                        "skipped")
        else:
            fresh.append(row)
    paused = kind in Notification.STUDENT_KINDS and sending.student_email_paused()
    contents = batch_contents(fresh, now=now) if fresh else []
    for row, content in zip(fresh, contents, strict=True):
        if content.skip:
            preview.add(row.address, row.period,
                        f"skipped: {Reason(content.skip).label.lower()}"
                        + (f" ({content.skip_detail})" if content.skip_detail else ""), "skipped")
        elif content.defer:
            preview.add(row.address, row.period, "waits: its weekly report is not built yet",
                        "waiting")
        elif paused:
            preview.add(row.address, row.period, "waits: student email is paused", "waiting")
        else:
            preview.add(row.address, row.period,
                        "would send" if dry_run else "sending", "send")
    if dry_run or not rows:
        return preview
    planning.write(rows, now=now)
    # Every new row, not only those that go: the sender records the ones with nothing to say
    # (or a goal met) as skipped now, as printed, instead of leaving them queued.
    ids = list(Notification.objects.filter(
        kind=kind, status=Status.QUEUED, recipient__in=[r.recipient for r in fresh],
        period__in={r.period for r in fresh}).values_list("pk", flat=True))
    preview.result = sending.send_due(now=now, ids=ids).counts
    return preview
