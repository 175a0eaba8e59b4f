"""Rollups at 1,000,000 attempts (10,000 students × 100), beside hand-written SQL over the same
rows, and one day's rollup again at 10,000,000 attempts.

    .venv/bin/python bench/analytics.py                 # SQLite (a scratch file)
    .venv/bin/python bench/analytics.py --postgres      # PostgreSQL (scratch database)
    .venv/bin/python bench/analytics.py --skip-10m      # without the 10M comparison
    .venv/bin/python bench/analytics.py --students 1000 --skip-10m   # a quick look

1. The rollup of one local day (`rollups_for_dates([day])`: that day's daily and per-subject
   rows and the rows of its ISO week, with the deletion of stale rows, each in a transaction)
   beside the limit: the three hand-written `INSERT … SELECT … GROUP BY … ON CONFLICT DO
   UPDATE` statements over the same attempts (daily and per subject for the day, weekly for
   its week), run bare. Target: within 1.5× of the limit.
2. A 30-day backfill (`rollups_backfill`: chunks of ANALYTICS_ROLLUP_CHUNK_DAYS days, one
   statement per ISO week) beside three hand-written statements over the whole range (the
   weekly one grouping by the ISO week computed in SQL). Target: within 1.5×.
3. The same day's rollup after 9,000,000 more attempts on other (earlier) dates: its time must
   not grow with the table.

The data is made with set-based SQL (generate_series on PostgreSQL, a recursive CTE on SQLite):
each student answers in bursts of six on 17 of the --days local dates, a fifth of the attempts
outside any session, a tenth skipped, 80 questions tried once and 20 of them again.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would
# shadow the project's `analytics` app: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

FIRST_DAY = datetime.date(2026, 1, 5)  # a Monday
QUESTIONS = 2_000
SESSIONS_PER_STUDENT = 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--pg-database", default="pastq_bench",
                        help="scratch PostgreSQL database (dropped and created)")
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--attempts", type=int, default=100, help="per student")
    parser.add_argument("--days", type=int, default=60, help="local dates they spread over")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the one-day "
                        "rollup (the median is shown); the backfill runs 3 times")
    parser.add_argument("--skip-10m", action="store_true",
                        help="skip loading 9 more attempts per attempt for the 10M comparison")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch database (and print where it is)")
    args = parser.parse_args()

    with scratch_django(postgres=args.postgres, name=args.pg_database, keep=args.keep):
        run(args)



# --- Data -----------------------------------------------------------------------------------


def load_world(args) -> tuple[int, int, int]:
    """Students, questions and sessions through the ORM; attempts in one INSERT … SELECT.
    Returns the first student, question and session ids (each range is contiguous)."""
    from django.db import connection

    from core.models import PracticeSession, Question, Subject, User
    from core.services import catalogue_load

    catalogue_load()
    subjects = list(Subject.objects.order_by("pk"))
    User.objects.bulk_create(
        [User(email=f"bench{n}@example.com", password="!", is_demo=True)
         for n in range(args.students)], batch_size=5_000)
    Question.objects.bulk_create(
        [Question(subject=subjects[n % len(subjects)], question_type="numeric",
                  text=f"Bench question {n}", answer="1", content_hash=f"bench-{n:08d}")
         for n in range(QUESTIONS)], batch_size=2_000)
    students = list(User.objects.order_by("pk").values_list("pk", flat=True))
    started = datetime.datetime.combine(FIRST_DAY, datetime.time(), datetime.UTC)
    PracticeSession.objects.bulk_create(
        [PracticeSession(student_id=pk, started_at=started, last_activity_at=started)
         for pk in students for _ in range(SESSIONS_PER_STUDENT)], batch_size=10_000)
    first_student = students[0]
    first_question = Question.objects.order_by("pk").values_list("pk", flat=True).first()
    first_session = PracticeSession.objects.order_by("pk").values_list("pk", flat=True).first()
    assert students[-1] - first_student == args.students - 1
    assert PracticeSession.objects.order_by("-pk").values_list("pk", flat=True).first() \
        - first_session == args.students * SESSIONS_PER_STUDENT - 1
    insert_attempts(connection, args, first_student, first_question, first_session,
                    extra=False)
    return first_student, first_question, first_session


def insert_attempts(connection, args, student0, question0, session0, *, extra: bool):
    """args.attempts attempts per student over the --days window (extra=False), or nine times
    as many on the 300 dates before it (extra=True), with attempt numbers from 3 up so they
    never collide. One statement; figures are pseudo-random functions of (s, k). Rows go in
    in the order of answered_at, as answers arrive."""
    per_student = args.attempts * 9 if extra else args.attempts
    if extra:
        question = f"(s * 37 + k % 100) % {QUESTIONS}"
        number = "3 + k / 100"
        day = "-1 - (k * 7 + s) % 300"
    else:
        repeats_from = max(1, per_student * 4 // 5)
        question = f"(s * 37 + k % {repeats_from}) % {QUESTIONS}"
        number = f"1 + k / {repeats_from}"
        # A student answers in bursts of 6 on one local date, a week apart (mod --days).
        day = f"(s * 13 + (k / 6) * 7) % {args.days}"
    skipped = "(s * 31 + k * 17) % 10 = 0"
    correct = f"NOT ({skipped}) AND (s * 7919 + k * 104729) % 100 < 65"
    session = (f"CASE WHEN (s + k) % 5 = 0 THEN NULL "
               f"ELSE {session0} + s * {SESSIONS_PER_STUDENT} + k % {SESSIONS_PER_STUDENT} END")
    columns = ("student_id, question_id, session_id, choice_id, answer_text, is_correct, "
               "skipped, time_taken_ms, answered_at, local_date, attempt_number")
    if connection.vendor == "postgresql":
        sql = f"""
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + {question}, {session}, NULL, '',
               {correct}, {skipped}, 2000 + (s * 101 + k * 53) % 90000,
               (DATE '{FIRST_DAY}' + ({day}))::timestamp
                   + make_interval(hours => (s + k) % 24, mins => k % 60),
               DATE '{FIRST_DAY}' + ({day}), {number}
        FROM generate_series(0, {args.students - 1}) AS s,
             generate_series(0, {per_student - 1}) AS k
        ORDER BY 9, 1
        """
    else:
        sql = f"""
        WITH RECURSIVE ss(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM ss
                                 WHERE s < {args.students - 1}),
             kk(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM kk WHERE k < {per_student - 1})
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + {question}, {session}, NULL, '',
               {correct}, {skipped}, 2000 + (s * 101 + k * 53) % 90000,
               datetime('{FIRST_DAY}', (({day})) || ' days', ((s + k) % 24) || ' hours',
                        (k % 60) || ' minutes'),
               date('{FIRST_DAY}', (({day})) || ' days'), {number}
        FROM ss, kk
        ORDER BY 9, 1
        """
    with connection.cursor() as cursor:
        # A bulk load of rows valid by construction: no foreign-key checks (PostgreSQL's would
        # lock a parent row per attempt), the secondary indexes dropped and built again after
        # it (the primary key and the unique constraint stay), a 1 GB page cache for SQLite.
        indexes = secondary_indexes(cursor, connection.vendor) if extra else []
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA cache_size = -1000000")
            cursor.execute("PRAGMA foreign_keys = OFF")
        else:
            cursor.execute("SET session_replication_role = replica")
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute(sql)
        for _, definition in indexes:
            cursor.execute(definition)
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA foreign_keys = ON")
        else:
            cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("ANALYZE")


def secondary_indexes(cursor, vendor: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of core_attempt's indexes that back no constraint."""
    if vendor == "postgresql":
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                       "'core_attempt' AND indexname NOT IN (SELECT conname FROM pg_constraint "
                       "WHERE conrelid = 'core_attempt'::regclass)")
    else:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name "
                       "= 'core_attempt' AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'")
    return [(f'"{name}"', definition) for name, definition in cursor.fetchall()]


# --- The limit: hand-written statements -----------------------------------------------------


def limit_statements(vendor: str, weeks: int) -> tuple[str, str, str]:
    """Daily, per-subject and weekly upserts written by hand over the same attempts: one
    statement each, no deletions, no transactions of their own; the weekly one joins the
    attempts to a list of `weeks` ISO weeks (iso_year, iso_week, Monday, Sunday). On SQLite
    they read through the same index as the rollup (INDEXED BY core_attempt_day)."""
    attempts = ("core_attempt AS a INDEXED BY core_attempt_day" if vendor == "sqlite"
                else "core_attempt AS a")
    figures = ("COUNT(*), COUNT(*) FILTER (WHERE a.is_correct), "
               "CAST(COUNT(*) FILTER (WHERE a.is_correct) AS DOUBLE PRECISION) / COUNT(*), "
               "SUM(a.time_taken_ms), COUNT(DISTINCT a.question_id)")
    daily = f"""
        INSERT INTO analytics_dailystudentstats (student_id, date, attempts, correct, accuracy,
            time_spent_ms, distinct_questions, first_attempts, sessions, updated_at)
        SELECT a.student_id, a.local_date, {figures},
               COUNT(*) FILTER (WHERE a.attempt_number = 1), COUNT(DISTINCT a.session_id), %s
        FROM {attempts} WHERE a.local_date BETWEEN %s AND %s
        GROUP BY a.student_id, a.local_date
        ON CONFLICT (student_id, date) DO UPDATE SET attempts = excluded.attempts,
            correct = excluded.correct, accuracy = excluded.accuracy,
            time_spent_ms = excluded.time_spent_ms,
            distinct_questions = excluded.distinct_questions,
            first_attempts = excluded.first_attempts, sessions = excluded.sessions,
            updated_at = excluded.updated_at"""
    subject = f"""
        INSERT INTO analytics_dailysubjectstats (student_id, subject_id, date, attempts, correct,
            accuracy, time_spent_ms, distinct_questions, updated_at)
        SELECT a.student_id, q.subject_id, a.local_date, {figures}, %s
        FROM {attempts} JOIN core_question q ON q.id = a.question_id
        WHERE a.local_date BETWEEN %s AND %s
        GROUP BY a.student_id, q.subject_id, a.local_date
        ON CONFLICT (student_id, subject_id, date) DO UPDATE SET attempts = excluded.attempts,
            correct = excluded.correct, accuracy = excluded.accuracy,
            time_spent_ms = excluded.time_spent_ms,
            distinct_questions = excluded.distinct_questions, updated_at = excluded.updated_at"""
    values = ", ".join(["(%s, %s, %s, %s)"] * weeks)
    weekly = f"""
        INSERT INTO analytics_weeklystudentstats (student_id, iso_year, iso_week, week_start,
            attempts, correct, accuracy, time_spent_ms, distinct_questions, sessions,
            active_days, updated_at)
        WITH wk (iso_year, iso_week, monday, sunday) AS (VALUES {values})
        SELECT a.student_id, wk.iso_year, wk.iso_week, wk.monday, {figures},
               COUNT(DISTINCT a.session_id), COUNT(DISTINCT a.local_date), %s
        FROM wk JOIN {attempts} ON a.local_date BETWEEN wk.monday AND wk.sunday
        WHERE true
        GROUP BY a.student_id, wk.iso_year, wk.iso_week, wk.monday
        ON CONFLICT (student_id, iso_year, iso_week) DO UPDATE SET
            week_start = excluded.week_start, attempts = excluded.attempts,
            correct = excluded.correct, accuracy = excluded.accuracy,
            time_spent_ms = excluded.time_spent_ms,
            distinct_questions = excluded.distinct_questions, sessions = excluded.sessions,
            active_days = excluded.active_days, updated_at = excluded.updated_at"""
    return daily, subject, weekly


def run_limit(first: datetime.date, last: datetime.date, now) -> int:
    """The hand-written statements over first … last (the weekly one over the whole ISO weeks
    those dates touch, as the rollup reads them). Returns the rows they wrote."""
    from django.db import connection

    monday = first - datetime.timedelta(days=first.weekday())
    mondays = [monday + datetime.timedelta(days=7 * n)
               for n in range((last - monday).days // 7 + 1)]
    weeks = [value for m in mondays
             for value in (*m.isocalendar()[:2], m, m + datetime.timedelta(days=6))]
    daily, subject, weekly = limit_statements(connection.vendor, len(mondays))
    stamp = connection.ops.adapt_datetimefield_value(now)
    rows = 0
    with connection.cursor() as cursor:
        for sql, params in ((daily, [stamp, first, last]), (subject, [stamp, first, last]),
                            (weekly, [*weeks, stamp])):
            cursor.execute(sql, params)
            rows += cursor.rowcount
    return rows


# --- Measuring ------------------------------------------------------------------------------


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def compare(label, ours, limit, repeat: int) -> dict:
    """Alternate the two, `repeat` times each after one warm-up of each; medians."""
    ours(), limit()
    ours_s, limit_s, rows = [], [], None
    for _ in range(repeat):
        seconds, result = timed(ours)
        ours_s.append(seconds)
        rows = result
        seconds, _ = timed(limit)
        limit_s.append(seconds)
    ours_m, limit_m = statistics.median(ours_s), statistics.median(limit_s)
    return dict(label=label, ours=ours_m, limit=limit_m, ratio=ours_m / limit_m, result=rows)


def digest() -> tuple:
    """Row counts and sums of every figure of the three tables: the rollup and the limit must
    leave the same."""
    from django.db import connection

    with connection.cursor() as cursor:
        found = []
        for table, extra in (("analytics_dailystudentstats", "SUM(first_attempts), SUM(sessions)"),
                             ("analytics_dailysubjectstats", "0, 0"),
                             ("analytics_weeklystudentstats", "SUM(sessions), SUM(active_days)")):
            cursor.execute(f"SELECT COUNT(*), SUM(attempts), SUM(correct), SUM(time_spent_ms), "
                           f"SUM(distinct_questions), SUM(accuracy), {extra} FROM {table}")
            row = cursor.fetchone()
            found.append((*row[:5], round(row[5] or 0, 6), *row[6:]))
    return tuple(found)


def count_queries(function) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        function()
    return len(captured)


def run(args):
    from django.db import connection
    from django.utils import timezone

    from analytics import rollups
    from core.models import Attempt

    database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    seconds, (student0, question0, session0) = timed(load_world, args)
    total = Attempt.objects.count()
    print(f"{database}: {args.students:,} students × {args.attempts} attempts = {total:,} "
          f"attempts over {args.days} local dates, loaded in {seconds:.1f}s")

    day = FIRST_DAY + datetime.timedelta(days=min(31, args.days - 1))  # a Thursday
    first, last = FIRST_DAY + datetime.timedelta(days=7), FIRST_DAY + datetime.timedelta(days=36)
    day_attempts = Attempt.objects.filter(local_date=day).count()
    now = timezone.now()

    def one_day_rollup(label):
        settle()
        row = compare(label, lambda: rollups.rollups_for_dates([day], now=now),
                      lambda: run_limit(day, day, now), args.repeat)
        row["queries"] = count_queries(lambda: rollups.rollups_for_dates([day], now=now))
        return row

    settle()
    backfill = compare(
        f"30-day backfill ({first} … {last})",
        lambda: rollups.rollups_backfill(first, last, now=now),
        lambda: run_limit(first, last, now), 3)
    backfill["queries"] = count_queries(lambda: rollups.rollups_backfill(first, last, now=now))
    ours_digest = digest()
    run_limit(first, last, now)
    assert digest() == ours_digest, (digest(), ours_digest)
    print(f"the backfill: {backfill['result']} The limit leaves the same rows.")
    one_day = one_day_rollup(f"one local day (daily + subject + its week), {total:,} in all")
    print(f"the day: {day} with {day_attempts:,} attempts; {one_day['result']}")
    rows = [one_day, backfill]

    if not args.skip_10m:
        seconds, _ = timed(insert_attempts, connection, args, student0, question0, session0,
                           extra=True)
        total_10m = Attempt.objects.count()
        print(f"loaded {total_10m - total:,} more attempts on 300 earlier dates in "
              f"{seconds:.1f}s (indexes rebuilt): {total_10m:,} in all; the day still has "
              f"{Attempt.objects.filter(local_date=day).count():,}")
        rows.append(one_day_rollup(f"the same day, {total_10m:,} attempts in all"))

    print(f"\n{'measure':<58}{'rollup':>10}{'limit':>10}{'ratio':>8}{'target':>8}"
          f"{'queries':>9}")
    for row in rows:
        print(f"{row['label']:<58}{row['ours'] * 1000:>8.0f}ms{row['limit'] * 1000:>8.0f}ms"
              f"{row['ratio']:>8.2f}{1.5:>8}{row['queries']:>9}")
    if not args.skip_10m:
        print(f"{'the day: time at ' + format(total_10m, ',') + ' / at ' + format(total, ','):<58}"
              f"{rows[2]['ours'] / rows[0]['ours']:>10.2f}"
              f"{rows[2]['limit'] / rows[0]['limit']:>10.2f}")


def settle():
    """PostgreSQL: vacuum the rollup tables (earlier runs left dead row versions), so each
    measure starts from the same state."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE analytics_dailystudentstats, "
                           "analytics_dailysubjectstats, analytics_weeklystudentstats")


if __name__ == "__main__":
    main()
