"""Which backups to keep: a pure function over (name, created_at, verified), no I/O.

Kept: the newest `keep_last`; one a day for the last `keep_daily` UTC days (today included);
one a week for the last `keep_weekly` ISO weeks (this week included); always the newest
verified backup, however old; and anything dated after `now` (a clock that jumped). In a day or
a week the one kept is the newest verified backup of it, or the newest when none is verified,
so a verification that failed never costs the day its good backup. Everything else goes.

A day's pick only changes while the day is young (a newer backup of the same day replaces it),
so a backup kept as a day's or a week's is kept until its day or week leaves the window.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    name: str
    created_at: datetime.datetime  # aware
    verified: bool


@dataclass
class RetentionPlan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # name → why
    delete: list[str] = field(default_factory=list)  # newest first


def _pick(bucket: list[Candidate]) -> Candidate:
    """The newest verified backup of a day or week, else its newest (bucket: newest first)."""
    return next((c for c in bucket if c.verified), bucket[0])


def retention_plan(backups: Iterable[tuple[str, datetime.datetime, bool] | Candidate], *,
                   now: datetime.datetime, keep_last: int, keep_daily: int,
                   keep_weekly: int) -> RetentionPlan:
    candidates = sorted((b if isinstance(b, Candidate) else Candidate(*b) for b in backups),
                        key=lambda c: (c.created_at, c.name), reverse=True)
    now = now.astimezone(datetime.UTC)
    plan = RetentionPlan()

    def keep(candidate: Candidate, why: str) -> None:
        plan.keep.setdefault(candidate.name, []).append(why)

    for candidate in candidates:
        if candidate.created_at > now:
            keep(candidate, "dated in the future")
    for candidate in candidates[:max(keep_last, 0)]:
        keep(candidate, "last")

    today = now.date()
    this_monday = today - datetime.timedelta(days=today.weekday())
    days: dict[datetime.date, list[Candidate]] = {}
    weeks: dict[datetime.date, list[Candidate]] = {}
    for candidate in candidates:
        day = candidate.created_at.astimezone(datetime.UTC).date()
        if 0 <= (today - day).days < keep_daily:
            days.setdefault(day, []).append(candidate)
        monday = day - datetime.timedelta(days=day.weekday())
        if 0 <= (this_monday - monday).days // 7 < keep_weekly:
            weeks.setdefault(monday, []).append(candidate)
    for day, bucket in days.items():
        keep(_pick(bucket), f"daily {day.isoformat()}")
    for monday, bucket in weeks.items():
        year, week, _ = monday.isocalendar()
        keep(_pick(bucket), f"weekly {year}-W{week:02d}")

    newest_verified = next((c for c in candidates if c.verified), None)
    if newest_verified is not None:
        keep(newest_verified, "newest verified")

    plan.delete = [c.name for c in candidates if c.name not in plan.keep]
    return plan
