"""Achievements: which students have earned which of the definitions in core.Achievement,
detected set-based after each rollup and stored once per student and achievement (and subject,
for mastery) in StudentAchievement. docs/analytics.md, "Achievements".

Every rule is evaluated in the database, for a chunk of students at a time, at a detection
date per student (their local today for a live run, `as_of` for a dated run):

- streak: the longest run of consecutive local dates with activity (DailyStudentStats rows with
  attempts) up to the detection date, by gaps and islands (date number − ROW_NUMBER is constant
  along a run of consecutive dates);
- questions: distinct questions answered up to the detection date (the running sum of
  DailyStudentStats.first_attempts);
- accuracy: first-attempt accuracy over distinct questions, held at some point up to the
  detection date: after some first attempt, taken in the order answered, the student had at
  least min_questions first attempts and at least threshold % of them right;
- mastery, per subject: first attempts with a local date in the last window_days days up to
  the detection date, at least min_questions of them, covering at least min_topics distinct
  topics (questions without a topic count as questions, not as topics), at least threshold %
  right.

Each kind is one `WITH … INSERT … SELECT … ON CONFLICT … DO UPDATE` per chunk; only active
definitions are detected. Nothing here knows about email: the notifications app reads
analytics.selectors.achievements_to_announce.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import DailyStudentStats, StudentAchievement
from core.models import Achievement, Attempt, Question, StudentProfile

# Students per statement: an id list is passed as parameters (twice per statement, well under
# SQLite's 32,766), and a chunk's rows are what one statement sorts and aggregates.
CHUNK_SIZE = 500

KINDS = (Achievement.Kind.STREAK, Achievement.Kind.QUESTIONS, Achievement.Kind.ACCURACY,
         Achievement.Kind.MASTERY)

_TABLES = {
    "sa": StudentAchievement._meta.db_table,
    "ach": Achievement._meta.db_table,
    "dss": DailyStudentStats._meta.db_table,
    "att": Attempt._meta.db_table,
    "qu": Question._meta.db_table,
    "prof": StudentProfile._meta.db_table,
}


# --- The two databases ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    """The few expressions PostgreSQL and SQLite spell differently. Dates are `date` values on
    PostgreSQL and ISO text on SQLite (which compares as dates)."""

    postgres: bool

    @classmethod
    def current(cls) -> _Dialect:
        if connection.vendor not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"achievements: no SQL for {connection.vendor}")
        return cls(postgres=connection.vendor == "postgresql")

    @property
    def date_param(self) -> str:
        return "CAST(%s AS date)" if self.postgres else "%s"

    @property
    def timestamp_param(self) -> str:
        return "CAST(%s AS timestamptz)" if self.postgres else "%s"

    def day_number(self, expr: str) -> str:
        if self.postgres:
            return f"({expr} - DATE '2000-01-01')"
        return f"CAST(julianday({expr}) AS INTEGER)"

    def plus_days(self, expr: str, days: str) -> str:  # days ≥ 0
        if self.postgres:
            return f"({expr} + ({days}))"
        return f"date({expr}, '+' || ({days}) || ' days')"

    def minus_days(self, expr: str, days: str) -> str:  # days ≥ 0
        if self.postgres:
            return f"({expr} - ({days}))"
        return f"date({expr}, '-' || ({days}) || ' days')"

    def day_end(self, expr: str) -> str:
        """The end of a date as an instant: 00:00 UTC of the next date."""
        if self.postgres:
            return f"(CAST(({expr}) + 1 AS timestamp) AT TIME ZONE 'UTC')"
        return f"datetime({expr}, '+1 day')"

    def earlier(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})" if self.postgres else f"MIN({a}, {b})"

    @staticmethod
    def date_value(value: datetime.date):
        return connection.ops.adapt_datefield_value(value)

    @staticmethod
    def timestamp_value(value: datetime.datetime):
        return connection.ops.adapt_datetimefield_value(value)


# --- Which students, and their detection dates -----------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """A chunk of students: an explicit id list, or (every student) a range of ids."""

    ids: tuple[int, ...] = ()
    low: int | None = None
    high: int | None = None

    def where(self, column: str) -> tuple[str, list]:
        if self.low is not None:
            return f"{column} BETWEEN %s AND %s", [self.low, self.high]
        return f"{column} IN ({', '.join(['%s'] * len(self.ids))})", list(self.ids)


def _chunks(student_ids: Iterable[int] | None) -> Iterator[_Chunk]:
    if student_ids is None:
        every = list(StudentProfile.objects.order_by("user_id").values_list("user_id", flat=True))
        for start in range(0, len(every), CHUNK_SIZE):
            part = every[start:start + CHUNK_SIZE]
            yield _Chunk(low=part[0], high=part[-1])
        return
    ids = sorted({int(pk) for pk in student_ids})
    for start in range(0, len(ids), CHUNK_SIZE):
        yield _Chunk(ids=tuple(ids[start:start + CHUNK_SIZE]))


def _local_days(now: datetime.datetime) -> dict[str, datetime.date]:
    """Each time zone students live in → its local date at `now` (one query)."""
    zones = StudentProfile.objects.order_by().values_list("timezone", flat=True).distinct()
    return {name: now.astimezone(zoneinfo.ZoneInfo(name)).date() for name in zones}


@dataclass(frozen=True)
class _Days:
    """The detection date: one `as_of` for everybody, or each student's local date at now."""

    as_of: datetime.date | None
    local: dict[str, datetime.date] | None

    def ref_cte(self, d: _Dialect, chunk: _Chunk, *, mastery_earned_on: bool = False
                ) -> tuple[str, list]:
        """`ref(student_id, day)`: the students of the chunk with their detection date(s).
        With `mastery_earned_on` (withdrawal), also each earned mastery's own earned_on."""
        where, ids = chunk.where("p.user_id")
        if self.as_of is not None:
            sql = (f"ref(student_id, day) AS (SELECT p.user_id, {d.date_param} "
                   f"FROM {_TABLES['prof']} p WHERE {where}")
            params = [d.date_value(self.as_of), *ids]
        else:
            values = ", ".join([f"(%s, {d.date_param})"] * len(self.local))
            sql = (f"zones(tz, day) AS (VALUES {values}), "
                   f"ref(student_id, day) AS (SELECT p.user_id, z.day FROM {_TABLES['prof']} p "
                   f"JOIN zones z ON z.tz = p.timezone WHERE {where}")
            params = [v for name, day in self.local.items() for v in (name, d.date_value(day))]
            params += ids
        if mastery_earned_on:
            where, ids = chunk.where("e.student_id")
            sql += (f" UNION SELECT e.student_id, e.earned_on FROM {_TABLES['sa']} e "
                    f"JOIN {_TABLES['ach']} ea ON ea.id = e.achievement_id AND ea.kind = %s "
                    f"WHERE {where} AND e.withdrawn_at IS NULL")
            params += [Achievement.Kind.MASTERY, *ids]
        return sql + ")", params


# --- The rules: each ends in a CTE q(student_id, day, achievement_id, [subject_id,] value,
# first_on), one row per student, detection date and achievement (and subject) that holds;
# first_on is the first local date on which it held (mastery: the detection date). ---------


def _rule_ctes(kind: str, d: _Dialect, chunk: _Chunk, *, active_only: bool) -> tuple[str, list]:
    t = _TABLES
    active = "AND ach.is_active" if active_only else ""
    if kind == Achievement.Kind.STREAK:
        where, ids = chunk.where("s.student_id")
        sql = f"""
        d AS (
            SELECT s.student_id, r.day, s.date AS on_date,
                   {d.day_number('s.date')}
                   - ROW_NUMBER() OVER (PARTITION BY s.student_id, r.day ORDER BY s.date) AS grp
            FROM {t['dss']} s JOIN ref r ON r.student_id = s.student_id
            WHERE {where} AND s.date <= r.day AND s.attempts > 0
        ),
        islands AS (
            SELECT student_id, day, COUNT(*) AS len, MIN(on_date) AS start
            FROM d GROUP BY student_id, day, grp
        ),
        q AS (
            SELECT i.student_id, i.day, ach.id AS achievement_id, MAX(i.len) AS value,
                   MIN({d.plus_days('i.start', 'ach.threshold - 1')}) AS first_on
            FROM islands i
            JOIN {t['ach']} ach ON ach.kind = %s {active} AND i.len >= ach.threshold
            GROUP BY i.student_id, i.day, ach.id
        )"""
        return sql, [*ids, kind]
    if kind == Achievement.Kind.QUESTIONS:
        where, ids = chunk.where("s.student_id")
        sql = f"""
        d AS (
            SELECT s.student_id, r.day, s.date AS on_date,
                   SUM(s.first_attempts) OVER (PARTITION BY s.student_id, r.day ORDER BY s.date
                                               ROWS UNBOUNDED PRECEDING) AS total
            FROM {t['dss']} s JOIN ref r ON r.student_id = s.student_id
            WHERE {where} AND s.date <= r.day
        ),
        q AS (
            SELECT d.student_id, d.day, ach.id AS achievement_id, MAX(d.total) AS value,
                   MIN(d.on_date) AS first_on
            FROM d JOIN {t['ach']} ach ON ach.kind = %s {active} AND d.total >= ach.threshold
            GROUP BY d.student_id, d.day, ach.id
        )"""
        return sql, [*ids, kind]
    if kind == Achievement.Kind.ACCURACY:
        where, ids = chunk.where("a.student_id")
        sql = f"""
        f AS (
            SELECT a.student_id, r.day, a.local_date,
                   ROW_NUMBER() OVER w AS n,
                   SUM(CASE WHEN a.is_correct THEN 1 ELSE 0 END) OVER w AS c
            FROM {t['att']} a JOIN ref r ON r.student_id = a.student_id
            WHERE {where} AND a.attempt_number = 1 AND a.local_date <= r.day
            WINDOW w AS (PARTITION BY a.student_id, r.day ORDER BY a.answered_at, a.id
                         ROWS UNBOUNDED PRECEDING)
        ),
        hits AS (
            SELECT f.student_id, f.day, ach.id AS achievement_id, f.local_date,
                   100.0 * f.c / f.n AS value,
                   ROW_NUMBER() OVER (PARTITION BY f.student_id, f.day, ach.id ORDER BY f.n) AS k
            FROM f JOIN {t['ach']} ach ON ach.kind = %s {active}
                 AND f.n >= ach.min_questions AND 100 * f.c >= ach.threshold * f.n
        ),
        q AS (
            SELECT student_id, day, achievement_id, value, local_date AS first_on
            FROM hits WHERE k = 1
        )"""
        return sql, [*ids, kind]
    if kind == Achievement.Kind.MASTERY:
        where, ids = chunk.where("a.student_id")
        right = "SUM(CASE WHEN a.is_correct THEN 1 ELSE 0 END)"
        sql = f"""
        q AS (
            SELECT a.student_id, r.day, ach.id AS achievement_id, qu.subject_id,
                   100.0 * {right} / COUNT(*) AS value, r.day AS first_on
            FROM {t['att']} a JOIN ref r ON r.student_id = a.student_id
            JOIN {t['qu']} qu ON qu.id = a.question_id
            JOIN {t['ach']} ach ON ach.kind = %s {active}
            WHERE {where} AND a.attempt_number = 1 AND a.local_date <= r.day
              AND (ach.window_days = 0
                   OR a.local_date > {d.minus_days('r.day', 'ach.window_days')})
            GROUP BY a.student_id, r.day, ach.id, ach.threshold, ach.min_questions,
                     ach.min_topics, qu.subject_id
            HAVING COUNT(*) >= ach.min_questions
               AND COUNT(DISTINCT qu.topic_id) >= ach.min_topics
               AND 100 * {right} >= ach.threshold * COUNT(*)
        )"""
        return sql, [kind, *ids]
    raise ValueError(f"unknown achievement kind {kind!r}")


# --- Detection ------------------------------------------------------------------------------


def achievements_detect(student_ids: Iterable[int] | None = None, *,
                        now: datetime.datetime | None = None,
                        as_of: datetime.date | None = None) -> int:
    """Detect the achievements the students (every student when None) have earned, and store
    each once. Returns the rows inserted or reinstated (a withdrawn row whose rule holds again
    gets withdrawn_at cleared; its earned_at and announced_at are kept, so it is never
    announced twice).

    Live run (`as_of` None): each student's detection date is their local date at `now`;
    earned_at = now and earned_on = that local date.
    Dated run (`as_of` given, e.g. a backfill): the detection date is `as_of` for everybody;
    earned_on = the first local date on which the rule held (mastery: `as_of`), and earned_at =
    the end of earned_on (00:00 UTC of the next date), never later than now. So a backfill
    over old dates stores achievements the announcement window (48 h) does not pick up, while
    one first held yesterday or today is still announced.

    Queries: one for the student ids (every student), one for the time zones (live run),
    then one statement per kind for each chunk of CHUNK_SIZE students."""
    now = now or timezone.now()
    d = _Dialect.current()
    chunks = list(_chunks(student_ids))
    if not chunks:
        return 0
    days = _Days(as_of=as_of, local=None if as_of is not None else _local_days(now))
    if as_of is None and not days.local:
        return 0
    written = 0
    for chunk in chunks:
        with transaction.atomic():
            for kind in KINDS:
                written += _detect_kind(kind, d, chunk, days, now)
    return written


def _detect_kind(kind: str, d: _Dialect, chunk: _Chunk, days: _Days,
                 now: datetime.datetime) -> int:
    ref_sql, ref_params = days.ref_cte(d, chunk)
    rule_sql, rule_params = _rule_ctes(kind, d, chunk, active_only=True)
    if days.as_of is None:
        earned_at, earned_on = d.timestamp_param, "q.day"
    else:
        earned_at = d.earlier(d.timestamp_param, d.day_end("q.first_on"))
        earned_on = "q.first_on"
    if kind == Achievement.Kind.MASTERY:
        subject, target = "q.subject_id", "(student_id, achievement_id, subject_id) " \
                                          "WHERE subject_id IS NOT NULL"
    else:
        subject, target = "NULL", "(student_id, achievement_id) WHERE subject_id IS NULL"
    table = _TABLES["sa"]
    # `WHERE true`: without it SQLite would read ON CONFLICT as the join constraint of FROM q.
    # The WITH is inside the INSERT: Python 3.11's sqlite3 reports no rowcount for a statement
    # that starts with WITH.
    sql = f"""
        INSERT INTO {table} (student_id, achievement_id, subject_id, earned_at, earned_on, value)
        WITH {ref_sql}, {rule_sql}
        SELECT q.student_id, q.achievement_id, {subject}, {earned_at}, {earned_on}, q.value
        FROM q WHERE true
        ON CONFLICT {target}
        DO UPDATE SET withdrawn_at = NULL, value = excluded.value
        WHERE {table}.withdrawn_at IS NOT NULL"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ref_params, *rule_params, d.timestamp_value(now)])
        return max(cursor.rowcount, 0)


# --- Withdrawal -----------------------------------------------------------------------------


def achievements_withdraw_invalid(student_ids: Iterable[int], *,
                                  now: datetime.datetime | None = None) -> int:
    """Withdraw (withdrawn_at = now) the students' earned, not yet withdrawn achievements whose
    rule no longer holds on the data as it is now: the regrade service calls this after an
    answer key was corrected. Returns the rows withdrawn. announced_at is never touched.

    "Holds" is what detection would find: streak, questions and accuracy are judged up to each
    student's local date at `now` (accuracy: held after some first attempt, so an accuracy
    that merely drifted below the threshold since is not withdrawn); a mastery is kept if it
    holds as of its own earned_on or as of the local date at `now`. Definitions made inactive
    are still checked. One statement per kind for each chunk of students, plus one query for
    the time zones."""
    now = now or timezone.now()
    d = _Dialect.current()
    chunks = list(_chunks(student_ids))
    if not chunks:
        return 0
    days = _Days(as_of=None, local=_local_days(now))
    withdrawn = 0
    for chunk in chunks:
        with transaction.atomic():
            for kind in KINDS:
                withdrawn += _withdraw_kind(kind, d, chunk, days, now)
    return withdrawn


def _withdraw_kind(kind: str, d: _Dialect, chunk: _Chunk, days: _Days,
                   now: datetime.datetime) -> int:
    table = _TABLES["sa"]
    where, ids = chunk.where("student_id")
    sql = f"""
        UPDATE {table} SET withdrawn_at = {d.timestamp_param}
        WHERE withdrawn_at IS NULL AND {where}
          AND achievement_id IN (SELECT id FROM {_TABLES['ach']} WHERE kind = %s)"""
    params = [d.timestamp_value(now), *ids, kind]
    if days.local:  # else nobody has a profile, so a local date: nothing holds
        ref_sql, ref_params = days.ref_cte(
            d, chunk, mastery_earned_on=kind == Achievement.Kind.MASTERY)
        rule_sql, rule_params = _rule_ctes(kind, d, chunk, active_only=False)
        same_subject = "AND q.subject_id = e.subject_id" if kind == Achievement.Kind.MASTERY else ""
        # Not correlated, so evaluated once: the ids of the rows that still hold. (The WITH is
        # inside: Python 3.11's sqlite3 reports no rowcount for a statement starting with WITH.)
        sql += f"""
          AND id NOT IN (
            WITH {ref_sql}, {rule_sql}
            SELECT e.id FROM {table} e JOIN q ON q.student_id = e.student_id
                   AND q.achievement_id = e.achievement_id {same_subject}
          )"""
        params += [*ref_params, *rule_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)
