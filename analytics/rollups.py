"""Rollups of students' attempts: per student and local day (DailyStudentStats), per student,
subject and local day (DailySubjectStats) and per student and ISO week of local dates
(WeeklyStudentStats). docs/analytics.md, "Rollups".

Everything is computed in the database, set-based: for each chunk of contiguous local dates one
`INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` per daily table, and for each ISO week one
per week (a week's distinct questions, sessions and active days cannot be summed from its
days, so weeks are computed from the attempts). Each statement reads the attempts of its dates
through the index on `Attempt.local_date`, so a day's rollup costs in proportion to that day's
attempts, and the number of statements depends on the dates, never on the number of students.
Rows whose attempts have gone (a deleted session takes its attempts with it) are deleted in the
same transaction, so a rerun leaves exactly what the attempts say: rerunning is safe.
"""

import datetime
import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from analytics.models import DailyStudentStats, DailySubjectStats, WeeklyStudentStats
from core.models import Attempt, Question

# Local dates exist from UTC−12 to UTC+14: at any instant up to three dates are current
# somewhere, and a date closes last at D+1 12:00 UTC (its end in UTC−12).
EARLIEST_UTC_OFFSET = datetime.timedelta(hours=-12)
LATEST_UTC_OFFSET = datetime.timedelta(hours=14)
# A date that closed this recently is still refreshed, so an hourly run gives every closing
# date its final upsert.
CLOSED_GRACE = datetime.timedelta(hours=2)


@dataclass
class RollupResult:
    """What one rollup run wrote: rows upserted per table (inserted or updated), rows deleted
    because their attempts are gone, and the SQL statements it took."""

    dates: list[datetime.date] = field(default_factory=list)
    daily_rows: int = 0
    subject_rows: int = 0
    weekly_rows: int = 0
    deleted_rows: int = 0
    statements: int = 0
    weeks: list[tuple[int, int]] = field(default_factory=list)

    def __str__(self):
        if not self.dates:
            return "Rollups: no dates."
        span = (self.dates[0].isoformat() if len(self.dates) == 1
                else f"{self.dates[0]} … {self.dates[-1]} ({len(self.dates)} dates)")
        deleted = f", {self.deleted_rows} stale rows deleted" if self.deleted_rows else ""
        return (f"Rollups of {span}: {self.daily_rows} daily, {self.subject_rows} subject, "
                f"{self.weekly_rows} weekly rows written{deleted} ({self.statements} "
                f"statements).")


# --- Dates ----------------------------------------------------------------------------------


def open_local_dates(now: datetime.datetime) -> list[datetime.date]:
    """The local dates still open somewhere (UTC−12 … UTC+14) at `now`, plus any date that
    closed within the last CLOSED_GRACE (2 hours), in order. Usually three or four dates."""
    if timezone.is_naive(now):
        raise ValueError("open_local_dates needs an aware datetime.")
    utc = now.astimezone(datetime.UTC)
    first = (utc + EARLIEST_UTC_OFFSET - CLOSED_GRACE).date()
    last = (utc + LATEST_UTC_OFFSET).date()
    return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]


def _runs(dates: Iterable[datetime.date], chunk_days: int) -> list[tuple[datetime.date,
                                                                        datetime.date]]:
    """Sorted distinct dates as (first, last) spans: contiguous runs, cut every chunk_days."""
    spans: list[list[datetime.date]] = []
    for day in sorted(set(dates)):
        if (spans and day - spans[-1][1] == datetime.timedelta(days=1)
                and (day - spans[-1][0]).days < chunk_days):
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return [(first, last) for first, last in spans]


def _date_ranges_q(dates: Iterable[datetime.date]) -> Q:
    """A filter on Attempt.local_date matching these dates, one BETWEEN per contiguous run."""
    dates = set(dates)
    spans = _runs(dates, chunk_days=max(len(dates), 1))
    return functools.reduce(operator.or_, (Q(local_date__range=span) for span in spans))


def students_active_on(dates: Iterable[datetime.date]) -> set[int]:
    """Ids of the students with an attempt on any of these local dates: whose figures a rollup
    of them may have changed. One query, through the index on Attempt.local_date."""
    dates = list(dates)
    if not dates:
        return set()
    return set(Attempt.objects.filter(_date_ranges_q(dates)).order_by()
               .values_list("student_id", flat=True).distinct())


# --- SQL ------------------------------------------------------------------------------------


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "attempt": quote(Attempt._meta.db_table),
        "question": quote(Question._meta.db_table),
        "daily": quote(DailyStudentStats._meta.db_table),
        "subject": quote(DailySubjectStats._meta.db_table),
        "weekly": quote(WeeklyStudentStats._meta.db_table),
    }


# The attempts of a span of local dates. With statistics, SQLite may plan a skip-scan of the
# (student, local_date) index instead (a seek per student, however few answered that day):
# INDEXED BY holds it to the local_date index, so the cost follows the span's attempts.
_ATTEMPTS = {
    "sqlite": "{attempt} AS a INDEXED BY core_attempt_day",
    "postgresql": "{attempt} AS a",
}

# Counts as integers, accuracy as a float division; skipped attempts are attempts (wrong ones).
_FIGURES = """COUNT(*),
           COUNT(*) FILTER (WHERE a.is_correct),
           CAST(COUNT(*) FILTER (WHERE a.is_correct) AS DOUBLE PRECISION) / COUNT(*),
           SUM(a.time_taken_ms),
           COUNT(DISTINCT a.question_id)"""

_DAILY_UPSERT = """
INSERT INTO {daily} (student_id, date, attempts, correct, accuracy, time_spent_ms,
                     distinct_questions, first_attempts, sessions, updated_at)
SELECT a.student_id, a.local_date, """ + _FIGURES + """,
       COUNT(*) FILTER (WHERE a.attempt_number = 1),
       COUNT(DISTINCT a.session_id),
       %s
FROM {attempts}
WHERE a.local_date BETWEEN %s AND %s
GROUP BY a.student_id, a.local_date
ORDER BY a.student_id, a.local_date
ON CONFLICT (student_id, date) DO UPDATE SET
    attempts = excluded.attempts, correct = excluded.correct, accuracy = excluded.accuracy,
    time_spent_ms = excluded.time_spent_ms, distinct_questions = excluded.distinct_questions,
    first_attempts = excluded.first_attempts, sessions = excluded.sessions,
    updated_at = excluded.updated_at
"""

# Run after the upsert, in its transaction: the rows of the span it did not just write
# (updated_at ≠ now: cheap to tell) and that have no attempts left.
_DAILY_STALE = """
DELETE FROM {daily} WHERE date BETWEEN %s AND %s AND updated_at <> %s AND NOT EXISTS (
    SELECT 1 FROM {attempt} AS a
    WHERE a.student_id = {daily}.student_id AND a.local_date = {daily}.date)
"""

_SUBJECT_UPSERT = """
INSERT INTO {subject} (student_id, subject_id, date, attempts, correct, accuracy,
                       time_spent_ms, distinct_questions, updated_at)
SELECT a.student_id, q.subject_id, a.local_date, """ + _FIGURES + """,
       %s
FROM {attempts} JOIN {question} AS q ON q.id = a.question_id
WHERE a.local_date BETWEEN %s AND %s
GROUP BY a.student_id, q.subject_id, a.local_date
ORDER BY a.student_id, q.subject_id, a.local_date
ON CONFLICT (student_id, subject_id, date) DO UPDATE SET
    attempts = excluded.attempts, correct = excluded.correct, accuracy = excluded.accuracy,
    time_spent_ms = excluded.time_spent_ms, distinct_questions = excluded.distinct_questions,
    updated_at = excluded.updated_at
"""

_SUBJECT_STALE = """
DELETE FROM {subject} WHERE date BETWEEN %s AND %s AND updated_at <> %s AND NOT EXISTS (
    SELECT 1 FROM {attempt} AS a JOIN {question} AS q ON q.id = a.question_id
    WHERE a.student_id = {subject}.student_id AND a.local_date = {subject}.date
      AND q.subject_id = {subject}.subject_id)
"""

_WEEKLY_UPSERT = """
INSERT INTO {weekly} (student_id, iso_year, iso_week, week_start, attempts, correct, accuracy,
                      time_spent_ms, distinct_questions, sessions, active_days, updated_at)
SELECT a.student_id, %s, %s, %s, """ + _FIGURES + """,
       COUNT(DISTINCT a.session_id),
       COUNT(DISTINCT a.local_date),
       %s
FROM {attempts}
WHERE a.local_date BETWEEN %s AND %s
GROUP BY a.student_id
ORDER BY a.student_id
ON CONFLICT (student_id, iso_year, iso_week) DO UPDATE SET
    week_start = excluded.week_start, attempts = excluded.attempts,
    correct = excluded.correct, accuracy = excluded.accuracy,
    time_spent_ms = excluded.time_spent_ms, distinct_questions = excluded.distinct_questions,
    sessions = excluded.sessions, active_days = excluded.active_days,
    updated_at = excluded.updated_at
"""

_WEEKLY_STALE = """
DELETE FROM {weekly} WHERE week_start = %s AND updated_at <> %s AND NOT EXISTS (
    SELECT 1 FROM {attempt} AS a
    WHERE a.student_id = {weekly}.student_id AND a.local_date BETWEEN %s AND %s)
"""


def _sql(template: str) -> str:
    tables = _tables()
    attempts = _ATTEMPTS.get(connection.vendor, "{attempt} AS a").format(**tables)
    return template.format(attempts=attempts, **tables)


# --- Rollups --------------------------------------------------------------------------------


def rollups_for_dates(dates: Iterable[datetime.date], *,
                      now: datetime.datetime | None = None) -> RollupResult:
    """Re-upsert the daily and per-subject rows of these local dates (contiguous runs, up to
    ANALYTICS_ROLLUP_CHUNK_DAYS dates per statement), and the weekly rows of every ISO week
    they touch, from the attempts; then delete the rows of those dates and weeks that this run
    did not write (updated_at ≠ now) and whose attempts are gone. `updated_at` = now, so give
    each run its own `now` (the default, the current time, does). Each chunk and each week is
    one transaction."""
    now = now or timezone.now()
    dates = sorted(set(dates))
    result = RollupResult(dates=dates)
    if not dates:
        return result
    stamp = connection.ops.adapt_datetimefield_value(now)
    chunk_days = max(1, settings.ANALYTICS_ROLLUP_CHUNK_DAYS)
    daily_upsert, daily_stale = _sql(_DAILY_UPSERT), _sql(_DAILY_STALE)
    subject_upsert, subject_stale = _sql(_SUBJECT_UPSERT), _sql(_SUBJECT_STALE)
    weekly_upsert, weekly_stale = _sql(_WEEKLY_UPSERT), _sql(_WEEKLY_STALE)

    for first, last in _runs(dates, chunk_days):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(daily_upsert, [stamp, first, last])
            result.daily_rows += max(cursor.rowcount, 0)
            cursor.execute(daily_stale, [first, last, stamp])
            result.deleted_rows += max(cursor.rowcount, 0)
            cursor.execute(subject_upsert, [stamp, first, last])
            result.subject_rows += max(cursor.rowcount, 0)
            cursor.execute(subject_stale, [first, last, stamp])
            result.deleted_rows += max(cursor.rowcount, 0)
            result.statements += 4

    mondays = sorted({day - datetime.timedelta(days=day.weekday()) for day in dates})
    for monday in mondays:
        iso_year, iso_week, _ = monday.isocalendar()
        sunday = monday + datetime.timedelta(days=6)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(weekly_upsert, [iso_year, iso_week, monday, stamp, monday, sunday])
            result.weekly_rows += max(cursor.rowcount, 0)
            cursor.execute(weekly_stale, [monday, stamp, monday, sunday])
            result.deleted_rows += max(cursor.rowcount, 0)
            result.statements += 2
        result.weeks.append((iso_year, iso_week))
    return result


def rollups_backfill(start: datetime.date, end: datetime.date, *,
                     now: datetime.datetime | None = None) -> RollupResult:
    """rollups_for_dates for every local date from start to end, both included."""
    if end < start:
        raise ValueError(f"The backfill ends ({end}) before it starts ({start}).")
    days = (end - start).days + 1
    return rollups_for_dates((start + datetime.timedelta(days=n) for n in range(days)), now=now)


def rollups_refresh(now: datetime.datetime | None = None) -> RollupResult:
    """The hourly run: re-upsert every local date still open somewhere, and those that just
    closed, with their weeks."""
    now = now or timezone.now()
    return rollups_for_dates(open_local_dates(now), now=now)
