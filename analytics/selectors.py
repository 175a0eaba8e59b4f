"""Reads of analytics that other apps (notifications, the API, the admin) use. Analytics never
imports those apps: they come here. docs/analytics.md, "Achievements"."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import StudentAchievement

# Achievements earned longer ago than this are not announced any more: a backfill, which dates
# what it finds in the past, does not flood students with old news.
ANNOUNCE_WINDOW = datetime.timedelta(hours=48)

# Ids per UPDATE … WHERE id IN (…).
_CLAIM_CHUNK = 500


def achievements_to_announce(*, now: datetime.datetime | None = None,
                             window: datetime.timedelta = ANNOUNCE_WINDOW
                             ) -> QuerySet[StudentAchievement]:
    """Achievements to announce: not withdrawn, not announced yet, earned at or after
    now − window (and not after now), oldest first per student, with the student, the
    achievement and the subject (mastery) loaded for the email."""
    now = now or timezone.now()
    return (StudentAchievement.objects
            .filter(withdrawn_at__isnull=True, announced_at__isnull=True,
                    earned_at__gte=now - window, earned_at__lte=now)
            .select_related("student", "achievement", "subject")
            .order_by("student_id", "earned_at", "id"))


def achievements_mark_announced(ids: Iterable[int], *,
                                now: datetime.datetime | None = None) -> int:
    """Claim achievements for announcement: set announced_at on those of `ids` that nobody has
    announced yet, with a conditional UPDATE (… WHERE announced_at IS NULL), so of two senders
    racing for a row exactly one claims it. Returns how many rows this call claimed."""
    now = now or timezone.now()
    ids = sorted({int(pk) for pk in ids})
    claimed = 0
    for start in range(0, len(ids), _CLAIM_CHUNK):
        claimed += StudentAchievement.objects.filter(
            pk__in=ids[start:start + _CLAIM_CHUNK], announced_at__isnull=True,
        ).update(announced_at=now)
    return claimed


def student_achievements(student, *, include_withdrawn: bool = False
                         ) -> QuerySet[StudentAchievement]:
    """A student's achievements, newest first, with the definition and subject loaded; the
    withdrawn ones only when asked."""
    rows = StudentAchievement.objects.filter(student=student)
    if not include_withdrawn:
        rows = rows.filter(withdrawn_at__isnull=True)
    return rows.select_related("achievement", "subject").order_by("-earned_at", "-id")
