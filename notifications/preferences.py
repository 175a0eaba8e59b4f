"""What a student agreed to receive, and where nothing may go: reads shared by planning,
sending and the admin."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from notifications.models import (
    EmailDelivery,
    Notification,
    NotificationPreference,
    UndeliverableAddress,
)

Kind = Notification.Kind

# Ledger kind → the preference field that opts in to it.
PREFERENCE_FIELD = {
    Kind.DAILY_SUMMARY: "daily_summary",
    Kind.STUDY_REMINDER: "study_reminder",
    Kind.ACHIEVEMENT: "achievements",
    Kind.WEEKLY_REPORT: "weekly_report",
}


def kind_allowed(preference: NotificationPreference, kind: str) -> bool:
    """The master switch and the kind's own opt-in (staff kinds have none)."""
    if kind not in PREFERENCE_FIELD:
        return True
    return preference.email_enabled and getattr(preference, PREFERENCE_FIELD[kind])


def undeliverable_addresses(addresses: Iterable[str]) -> set[str]:
    """Those of `addresses` (lower-cased) a bounce or complaint marked undeliverable: one
    query per 500 addresses."""
    wanted = sorted({a.lower() for a in addresses if a})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(UndeliverableAddress.objects.filter(
            address__in=wanted[start:start + 500]).values_list("address", flat=True))
    return found


def student_email_paused() -> bool:
    """The NOTIFICATIONS_PAUSED setting or the admin's switch."""
    if settings.NOTIFICATIONS_PAUSED:
        return True
    return EmailDelivery.objects.filter(pk=1, student_email_paused=True).exists()
