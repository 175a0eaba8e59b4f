"""Per-student insights (docs/analytics.md, "Insights"): streaks, active days, habit strength,
consistency, the accuracy trend and slope, strong and weak topics, and recommendations, stored
in StudentInsight as of each student's last closed local day.

Students are taken a chunk at a time, and each chunk costs the same four queries whatever its
size: the students' time zones, the daily figures (aggregated in the database from
DailyStudentStats), the topic figures (from first attempts, ranked in the database) and one
upsert. Python only turns each student's handful of sums into the stored figures and sentences.

The chunk's students travel to the database as one JSON parameter, read back as a table by
json_each (SQLite) or jsonb_array_elements (PostgreSQL), so a chunk of any size is one
parameter and never string-formatted SQL."""

from __future__ import annotations

import datetime
import json
import math
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from analytics.models import DailyStudentStats, StudentInsight
from core.models import Attempt, Question, StudentProfile, Subject, Topic

CHUNK_SIZE = 1000
# Loop Habit Tracker's multiplier for a daily habit: 0.5 ** (sqrt(frequency) / 13), frequency 1.
# A missed day multiplies the score by it (half-life 13 days); a practised day adds (1 - m).
HABIT_MULTIPLIER = 0.5 ** (math.sqrt(1) / 13)
CONSISTENCY_MIN_ACTIVE_DAYS = 7
TREND_MIN_ATTEMPTS = 20  # in each of the two 7-day windows
SLOPE_MIN_DAYS = 3  # active days in the 30-day window, or the slope is null
STUDY_MORE_BELOW_HABIT = 50.0  # habit strength under which "study more" is recommended
WILSON_Z = 1.96  # 95 % two-sided


# --- When ---------------------------------------------------------------------------------


def last_closed_day(timezone_name: str, now: datetime.datetime) -> datetime.date:
    """The last local day that has ended in this time zone at `now`: yesterday, locally."""
    local_today = now.astimezone(zoneinfo.ZoneInfo(timezone_name)).date()
    return local_today - datetime.timedelta(days=1)


def insights_due(now: datetime.datetime | None = None) -> list[int]:
    """Students whose last closed local day is after the as_of of their stored insights, or who
    have none yet but were active (a DailyStudentStats row) on or before that day. Two queries:
    the distinct time zones, then the students, with one condition per distinct closed day
    (at most three at any instant: local dates span UTC-12 to UTC+14)."""
    now = now or timezone.now()
    zones_by_day: dict[datetime.date, list[str]] = defaultdict(list)
    for name in StudentProfile.objects.order_by().values_list("timezone", flat=True).distinct():
        zones_by_day[last_closed_day(name, now)].append(name)
    due = Q(pk__in=[])
    for day, names in zones_by_day.items():
        active = Exists(DailyStudentStats.objects.filter(
            student_id=OuterRef("user_id"), date__lte=day, attempts__gt=0))
        due |= Q(timezone__in=names) & (
            Q(user__insight__as_of__lt=day) | (Q(user__insight__isnull=True) & Q(active)))
    return list(StudentProfile.objects.filter(due).order_by("user_id")
                .values_list("user_id", flat=True))


def insights_refresh(now: datetime.datetime | None = None) -> int:
    """The hourly job's part: insights for every student whose local day has closed since their
    last insights, each once per local day. Run after the rollups of the same run."""
    now = now or timezone.now()
    due = insights_due(now)
    return insights_compute(due, now=now) if due else 0


# --- Computing ----------------------------------------------------------------------------


def insights_compute(student_ids: Iterable[int] | None = None, *,
                     now: datetime.datetime | None = None) -> int:
    """Compute and upsert the insights of these students (every student with a profile when
    None), each as of their last closed local day at `now`; ids without a profile are skipped.
    Returns the rows written. Four queries per chunk of CHUNK_SIZE students."""
    now = now or timezone.now()
    written = 0
    for chunk in _chunks(student_ids):
        written += _compute_chunk(chunk, now)
    return written


def _chunks(student_ids: Iterable[int] | None) -> Iterator[list[tuple[int, str]]]:
    """(student id, time zone) pairs, CHUNK_SIZE at a time, in id order."""
    profiles = StudentProfile.objects.order_by("user_id").values_list("user_id", "timezone")
    if student_ids is None:
        last = 0
        while True:
            rows = list(profiles.filter(user_id__gt=last)[:CHUNK_SIZE])
            if rows:
                yield rows
            if len(rows) < CHUNK_SIZE:
                return
            last = rows[-1][0]
    ids = sorted(set(student_ids))
    for start in range(0, len(ids), CHUNK_SIZE):
        rows = list(profiles.filter(user_id__in=ids[start:start + CHUNK_SIZE]))
        if rows:
            yield rows


def _compute_chunk(rows: list[tuple[int, str]], now: datetime.datetime) -> int:
    window = settings.ANALYTICS_TOPIC_WINDOW_DAYS
    closed = {name: last_closed_day(name, now) for name in {tz for _, tz in rows}}
    plan = [(student_id, closed[tz]) for student_id, tz in rows]
    chunk_json = json.dumps([
        [student_id, as_of.isoformat(),
         (as_of - datetime.timedelta(days=window - 1)).isoformat()]
        for student_id, as_of in plan])
    daily = _daily_figures(chunk_json)
    topics = _topic_figures(chunk_json)
    records = []
    for student_id, as_of in plan:
        figures = _figures_from_daily(daily.get(student_id))
        strengths, weaknesses = topics.get(student_id, ([], []))
        records.append({
            "student_id": student_id, "as_of": as_of.isoformat(), **figures,
            "strengths": strengths, "weaknesses": weaknesses,
            "recommendations": _recommendations(figures, weaknesses),
        })
    _upsert(records, now)
    return len(records)


# The chunk as a table: chunk(student_id, as_of, topic_from), from one JSON parameter.
_CHUNK_TABLE = {
    "sqlite": "SELECT CAST(json_extract(value, '$[0]') AS INTEGER) AS student_id, "
              "json_extract(value, '$[1]') AS as_of, json_extract(value, '$[2]') AS topic_from "
              "FROM json_each(%s)",
    "postgresql": "SELECT CAST(e->>0 AS INTEGER) AS student_id, CAST(e->>1 AS DATE) AS as_of, "
                  "CAST(e->>2 AS DATE) AS topic_from "
                  "FROM jsonb_array_elements(CAST(%s AS JSONB)) AS e",
}
# Whole days from a stats row's date back to... its student's as_of (0 = as_of itself).
_DAYS_AGO = {
    "sqlite": "CAST(julianday(c.as_of) - julianday(s.date) AS INTEGER)",
    "postgresql": "(c.as_of - s.date)",
}

_DAILY_SQL = """
WITH chunk AS ({chunk}),
days AS (
    SELECT s.student_id, {days_ago} AS ago, s.attempts, s.correct,
           CAST(s.time_spent_ms AS DOUBLE PRECISION) / 60000 AS minutes
    FROM {daily} s JOIN chunk c ON c.student_id = s.student_id
    WHERE s.date <= c.as_of AND s.attempts > 0
),
runs AS (
    -- Gaps and islands: consecutive days share ago - row_number.
    SELECT student_id, MIN(ago) AS newest, COUNT(*) AS length
    FROM (SELECT student_id, ago,
                 ago - ROW_NUMBER() OVER (PARTITION BY student_id ORDER BY ago) AS island
          FROM days) AS numbered
    GROUP BY student_id, island
),
streaks AS (
    SELECT student_id, MAX(length) AS longest,
           MAX(CASE WHEN newest = 0 THEN length ELSE 0 END) AS current_streak
    FROM runs GROUP BY student_id
),
habit AS (
    SELECT student_id, SUM(POWER(CAST(%s AS DOUBLE PRECISION), ago)) AS decayed
    FROM days GROUP BY student_id
),
month AS (
    SELECT student_id, ago, attempts, correct, minutes,
           AVG(minutes) OVER (PARTITION BY student_id) AS mean_minutes
    FROM days WHERE ago < 30
),
month_sums AS (
    SELECT student_id, COUNT(*) AS active_days, MAX(mean_minutes) AS mean_minutes,
           AVG((minutes - mean_minutes) * (minutes - mean_minutes)) AS variance_minutes,
           SUM(CASE WHEN ago < 7 THEN attempts ELSE 0 END) AS attempts_7,
           SUM(CASE WHEN ago < 7 THEN correct ELSE 0 END) AS correct_7,
           SUM(CASE WHEN ago >= 7 AND ago < 14 THEN attempts ELSE 0 END) AS attempts_prev_7,
           SUM(CASE WHEN ago >= 7 AND ago < 14 THEN correct ELSE 0 END) AS correct_prev_7,
           SUM(attempts) AS w, SUM(attempts * ago) AS w_ago, SUM(attempts * ago * ago) AS w_ago2,
           SUM(correct) AS c, SUM(correct * ago) AS c_ago
    FROM month GROUP BY student_id
)
SELECT st.student_id, st.longest, st.current_streak, h.decayed,
       m.active_days, m.mean_minutes, m.variance_minutes,
       m.attempts_7, m.correct_7, m.attempts_prev_7, m.correct_prev_7,
       m.w, m.w_ago, m.w_ago2, m.c, m.c_ago
FROM streaks st
JOIN habit h ON h.student_id = st.student_id
LEFT JOIN month_sums m ON m.student_id = st.student_id
"""

_DAILY_COLUMNS = ("longest", "current", "decayed", "active_days", "mean_minutes",
                  "variance_minutes", "attempts_7", "correct_7", "attempts_prev_7",
                  "correct_prev_7", "w", "w_ago", "w_ago2", "c", "c_ago")


def _daily_figures(chunk_json: str) -> dict[int, dict]:
    vendor = connection.vendor
    sql = _DAILY_SQL.format(chunk=_CHUNK_TABLE[vendor], days_ago=_DAYS_AGO[vendor],
                            daily=DailyStudentStats._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [chunk_json, HABIT_MULTIPLIER])
        return {row[0]: dict(zip(_DAILY_COLUMNS, row[1:], strict=True))
                for row in cursor.fetchall()}


def _figures_from_daily(daily: dict | None) -> dict:
    """The stored figures from one student's daily sums (None: no active day up to as_of)."""
    figures = {"current_streak": 0, "longest_streak": 0, "active_days_30": 0,
               "habit_strength": 0.0, "consistency": 0.0, "accuracy_7": None,
               "accuracy_prev_7": None, "trend": None, "slope_per_week": None,
               "attempts_7": 0}
    if daily is None:
        return figures
    figures.update(current_streak=daily["current"], longest_streak=daily["longest"],
                   habit_strength=100 * (1 - HABIT_MULTIPLIER) * daily["decayed"])
    active_days = daily["active_days"] or 0
    if not active_days:  # nothing in the last 30 days
        return figures
    figures["active_days_30"] = active_days
    mean = daily["mean_minutes"]
    if active_days >= CONSISTENCY_MIN_ACTIVE_DAYS and mean > 0:
        cv = math.sqrt(max(daily["variance_minutes"], 0.0)) / mean
        figures["consistency"] = max(0.0, 100 - 100 * cv)
    attempts_7, attempts_prev_7 = daily["attempts_7"], daily["attempts_prev_7"]
    figures["attempts_7"] = attempts_7
    if attempts_7:
        figures["accuracy_7"] = daily["correct_7"] / attempts_7
    if attempts_prev_7:
        figures["accuracy_prev_7"] = daily["correct_prev_7"] / attempts_prev_7
    if attempts_7 >= TREND_MIN_ATTEMPTS and attempts_prev_7 >= TREND_MIN_ATTEMPTS:
        figures["trend"] = figures["accuracy_7"] - figures["accuracy_prev_7"]
    # Weighted least squares of daily accuracy (correct / attempts) on the day, each day
    # weighted by its attempts; the sums are integers, so the algebra is exact until the
    # division. x = -ago (days relative to as_of), hence the sign.
    w, w_ago, w_ago2, c, c_ago = (daily[k] for k in ("w", "w_ago", "w_ago2", "c", "c_ago"))
    denominator = w * w_ago2 - w_ago * w_ago
    if active_days >= SLOPE_MIN_DAYS and denominator > 0:
        figures["slope_per_week"] = -(w * c_ago - w_ago * c) / denominator * 100 * 7
    return figures


_TOPIC_SQL = """
WITH chunk AS ({chunk}),
counts AS (
    SELECT a.student_id, q.topic_id, COUNT(*) AS n,
           SUM(CASE WHEN a.is_correct THEN 1 ELSE 0 END) AS k
    FROM {attempt} a
    JOIN chunk c ON c.student_id = a.student_id
    JOIN {question} q ON q.id = a.question_id
    WHERE a.attempt_number = 1 AND q.topic_id IS NOT NULL
      AND a.local_date >= c.topic_from AND a.local_date <= c.as_of
    GROUP BY a.student_id, q.topic_id
    HAVING COUNT(*) >= %s
),
rates AS (
    SELECT student_id, topic_id, n, k, CAST(k AS DOUBLE PRECISION) / n AS p,
           CAST(%s AS DOUBLE PRECISION) / n AS z2n
    FROM counts
),
bounds AS (
    -- Wilson score interval: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n).
    SELECT student_id, topic_id, n, k, p,
           (p + z2n / 2 - CAST(%s AS DOUBLE PRECISION) * SQRT(p * (1 - p) / n + z2n / (4 * n)))
               / (1 + z2n) AS lower_bound,
           (p + z2n / 2 + CAST(%s AS DOUBLE PRECISION) * SQRT(p * (1 - p) / n + z2n / (4 * n)))
               / (1 + z2n) AS upper_bound,
           CASE WHEN p >= CAST(%s AS DOUBLE PRECISION) THEN 1 ELSE 0 END AS strong
    FROM rates
),
ranked AS (
    SELECT student_id, topic_id, n, k, p, lower_bound, upper_bound, strong,
           ROW_NUMBER() OVER (
               PARTITION BY student_id, strong
               ORDER BY CASE WHEN strong = 1 THEN -lower_bound ELSE upper_bound END,
                        n DESC, topic_id) AS position
    FROM bounds
)
SELECT r.student_id, r.strong, r.topic_id, t.name, s.code, s.name,
       r.n, r.k, r.p, r.lower_bound, r.upper_bound
FROM ranked r
JOIN {topic} t ON t.id = r.topic_id
JOIN {subject} s ON s.id = t.subject_id
WHERE r.position <= %s
ORDER BY r.student_id, r.strong, r.position
"""


def _topic_figures(chunk_json: str) -> dict[int, tuple[list[dict], list[dict]]]:
    """Per student: (strengths, weaknesses), at most ANALYTICS_INSIGHT_TOPICS of each."""
    vendor = connection.vendor
    sql = _TOPIC_SQL.format(
        chunk=_CHUNK_TABLE[vendor], attempt=Attempt._meta.db_table,
        question=Question._meta.db_table, topic=Topic._meta.db_table,
        subject=Subject._meta.db_table)
    params = [chunk_json, settings.ANALYTICS_TOPIC_MIN_ATTEMPTS, WILSON_Z * WILSON_Z,
              WILSON_Z, WILSON_Z, settings.ANALYTICS_TOPIC_TARGET_ACCURACY,
              settings.ANALYTICS_INSIGHT_TOPICS]
    result: dict[int, tuple[list[dict], list[dict]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for (student_id, strong, topic_id, topic, subject, subject_name,
             n, k, p, lower, upper) in cursor.fetchall():
            strengths, weaknesses = result.setdefault(student_id, ([], []))
            (strengths if strong else weaknesses).append({
                "topic_id": topic_id, "topic": topic, "subject": subject,
                "subject_name": subject_name, "attempts": n, "correct": k,
                "accuracy": round(p, 4), "wilson_lower": round(lower, 4),
                "wilson_upper": round(upper, 4),
            })
    return result


# --- Recommendations ----------------------------------------------------------------------


def _recommendations(figures: dict, weaknesses: list[dict]) -> list[dict]:
    """What to do next, most pressing first. Each item: {"code", "text", ...its figures}."""
    items: list[dict] = []
    # Questions due for review ("review_due") go first here once the spaced-review work lands:
    # they need the chunk's due counts, fetched with the other figures in one query per chunk.
    if figures["habit_strength"] < STUDY_MORE_BELOW_HABIT:
        days = figures["active_days_30"]
        items.append({
            "code": "study_more",
            "text": f"Practise a little every day: you practised on {days} of the last 30 "
                    f"day{'s' if days != 1 else ''}." if days else
                    "Practise a little every day: you have not practised in the last 30 days.",
            "active_days_30": days, "habit_strength": round(figures["habit_strength"], 1),
            "current_streak": figures["current_streak"],
        })
    for topic in weaknesses:
        items.append({
            "code": "review_topic",
            "text": f"Review {topic['topic']} ({topic['subject_name']}): you got "
                    f"{topic['correct']} of {topic['attempts']} right on first tries "
                    f"({round(100 * topic['accuracy'])}%).",
            "topic_id": topic["topic_id"], "topic": topic["topic"],
            "subject": topic["subject"], "attempts": topic["attempts"],
            "accuracy": topic["accuracy"],
        })
    accuracy_7, attempts_7 = figures["accuracy_7"], figures["attempts_7"]
    if (attempts_7 >= settings.ANALYTICS_MOVE_UP_MIN_ATTEMPTS
            and accuracy_7 >= settings.ANALYTICS_MOVE_UP_ACCURACY):
        items.append({
            "code": "move_up",
            "text": f"Move up in difficulty: you got {round(100 * accuracy_7)}% of "
                    f"{attempts_7} answers right in the last 7 days.",
            "accuracy": round(accuracy_7, 4), "attempts": attempts_7,
        })
    return items


# --- Storing ------------------------------------------------------------------------------

_STORED = (  # StudentInsight's columns as written, with their PostgreSQL types
    ("student_id", "INTEGER"), ("as_of", "DATE"), ("current_streak", "INTEGER"),
    ("longest_streak", "INTEGER"), ("active_days_30", "INTEGER"),
    ("habit_strength", "DOUBLE PRECISION"), ("consistency", "DOUBLE PRECISION"),
    ("accuracy_7", "DOUBLE PRECISION"), ("accuracy_prev_7", "DOUBLE PRECISION"),
    ("trend", "DOUBLE PRECISION"), ("slope_per_week", "DOUBLE PRECISION"),
    ("strengths", "JSONB"), ("weaknesses", "JSONB"), ("recommendations", "JSONB"),
)


def _read_field(vendor: str, name: str, sql_type: str) -> str:
    if vendor == "sqlite":  # json_extract gives arrays back as JSON text, scalars as values
        return f"json_extract(value, '$.{name}')"
    if sql_type == "JSONB":
        return f"e->'{name}'"
    return f"CAST(e->>'{name}' AS {sql_type})"


def _upsert(records: list[dict], now: datetime.datetime) -> None:
    """One INSERT … SELECT … ON CONFLICT DO UPDATE for the chunk, its rows as one JSON
    parameter. (`WHERE true` keeps SQLite from reading ON CONFLICT as a join's ON.)"""
    if not records:
        return
    vendor = connection.vendor
    source = ("json_each(%s)" if vendor == "sqlite"
              else "jsonb_array_elements(CAST(%s AS JSONB)) AS e")
    names = [name for name, _ in _STORED]
    sql = (
        f"INSERT INTO {StudentInsight._meta.db_table} (computed_at, {', '.join(names)}) "
        f"SELECT %s, {', '.join(_read_field(vendor, *column) for column in _STORED)} "
        f"FROM {source} WHERE true "
        f"ON CONFLICT (student_id) DO UPDATE SET computed_at = excluded.computed_at, "
        + ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    )
    payload = json.dumps([{name: record[name] for name in names} for record in records])
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), payload])
