"""Spaced review (FSRS): the review-card updates of one local day of 1,000,000 attempts, the
query count beside its bound, and the FSRS arithmetic alone for the same reviews.

    .venv/bin/python bench/review.py                      # SQLite (a scratch file)
    .venv/bin/python bench/review.py --postgres           # PostgreSQL (scratch database)
    .venv/bin/python bench/review.py --students 1000      # a quick look (100,000 attempts)

The data (set-based SQL: generate_series on PostgreSQL, a recursive CTE on SQLite): --students
students and 2,000 questions. History: each student answered 50 distinct questions once over
the 14 days before the measured day, 35 % wrongly; `reviews_apply(dates=None)` turns it into
cards (timed too: a backfill). The day: 100 attempts per student: 30 at history questions
(a review when the question has a card; a new card when it was right before and is wrong now),
60 at new questions (a card when wrong), and 10 second tries later the same day at new
questions (ignored when the first try made a card or was right and this one too).

Measured: `reviews_apply(dates=[day])` (a fresh copy of the post-history cards each time) with
the default chunk (analytics.review.CHUNK_ATTEMPTS) and with one chunk for the whole day; then
the same call again (idempotent: nothing to write); and bare, the same number of
fsrs.Scheduler.review_card calls on cards in memory. Limit: the query count stays
1 + 3 · ⌈attempts / CHUNK_ATTEMPTS⌉ whatever the number of students; the time has no target.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and bench/analytics.py would
# shadow the project's `analytics` app: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

DAY = datetime.date(2026, 3, 2)
HISTORY_DAYS = 14
HISTORY_PER_STUDENT = 50
DAY_PER_STUDENT = 100
QUESTIONS = 2_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--pg-database", default="pastq_bench",
                        help="scratch PostgreSQL database (dropped and created)")
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    with scratch_django(postgres=args.postgres, name=args.pg_database, keep=args.keep):
        run(args)


# --- Data -----------------------------------------------------------------------------------


def load_world(students: int) -> None:
    from django.db import connection

    from core.models import Question, Subject, User
    from core.services import catalogue_load

    catalogue_load()
    subjects = list(Subject.objects.order_by("pk"))
    User.objects.bulk_create([User(email=f"bench{n}@example.com", password="!", is_demo=True)
                              for n in range(students)], batch_size=5_000)
    Question.objects.bulk_create(
        [Question(subject=subjects[n % len(subjects)], question_type="numeric",
                  text=f"Bench question {n}", answer="1", content_hash=f"bench-{n:08d}")
         for n in range(QUESTIONS)], batch_size=2_000)
    student0 = User.objects.order_by("pk").values_list("pk", flat=True).first()
    question0 = Question.objects.order_by("pk").values_list("pk", flat=True).first()
    insert_attempts(connection, students, student0, question0, day=False)


def insert_attempts(connection, students, student0, question0, *, day: bool):
    """History (day=False): k < 50, question (37 s + k) mod Q, attempt 1, on one of the 14
    days before DAY. The day (day=True): k < 30 the history question k again (attempt 2),
    30 ≤ k < 90 a new question (attempt 1), 90 ≤ k < 100 the new question of k − 60 again
    (attempt 2), k · 14 minutes into the day. One statement."""
    if day:
        per_student = DAY_PER_STUDENT
        question = (f"CASE WHEN k < 30 THEN (s * 37 + k) % {QUESTIONS} "
                    f"WHEN k < 90 THEN (s * 37 + 20 + k) % {QUESTIONS} "
                    f"ELSE (s * 37 + 20 + k - 60) % {QUESTIONS} END")
        number = "CASE WHEN k < 30 OR k >= 90 THEN 2 ELSE 1 END"
        offset_days, minutes = "0", "k * 14 + s % 7"
        correct = "(s * 7907 + k * 104723) % 100 < 65"
    else:
        per_student = HISTORY_PER_STUDENT
        question, number = f"(s * 37 + k) % {QUESTIONS}", "1"
        offset_days = f"-1 - (s + k) % {HISTORY_DAYS}"
        minutes = "((s + k * 7) % 24) * 60 + k % 60"
        correct = "(s * 7919 + k * 104729) % 100 < 65"
    columns = ("student_id, question_id, session_id, choice_id, answer_text, is_correct, "
               "skipped, time_taken_ms, answered_at, local_date, attempt_number")
    if connection.vendor == "postgresql":
        sql = f"""
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + {question}, NULL, NULL, '', {correct}, false,
               5000, (DATE '{DAY}' + ({offset_days}))::timestamp
                     + make_interval(mins => {minutes}),
               DATE '{DAY}' + ({offset_days}), {number}
        FROM generate_series(0, {students - 1}) AS s,
             generate_series(0, {per_student - 1}) AS k
        """
    else:
        sql = f"""
        WITH RECURSIVE ss(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM ss
                                 WHERE s < {students - 1}),
             kk(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM kk WHERE k < {per_student - 1})
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + {question}, NULL, NULL, '', {correct}, 0, 5000,
               datetime('{DAY}', ({offset_days}) || ' days', ({minutes}) || ' minutes'),
               date('{DAY}', ({offset_days}) || ' days'), {number}
        FROM ss, kk
        """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        cursor.execute("ANALYZE")


# --- Measuring ------------------------------------------------------------------------------


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cards_save():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_cards")
        cursor.execute("CREATE TABLE bench_cards AS SELECT * FROM analytics_reviewcard")


def cards_restore():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_reviewcard")
        cursor.execute("INSERT INTO analytics_reviewcard SELECT * FROM bench_cards")
        cursor.execute("ANALYZE")


def apply_day(now):
    """reviews_apply(dates=[DAY]) timed, with its queries counted."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from analytics import review

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = review.reviews_apply(dates=[DAY], now=now)
        seconds = time.perf_counter() - started
    return seconds, len(queries.captured_queries), result


def bare_fsrs(applied: int) -> float:
    """The FSRS arithmetic alone: `applied` review_card calls on in-memory cards, in the same
    mix (one Again to make a card, then a Good or an Again a few days later)."""
    from fsrs import Card, Rating

    from analytics import review

    fsrs = review.scheduler()
    start = datetime.datetime.combine(DAY, datetime.time(9), datetime.UTC)
    started = time.perf_counter()
    done = 0
    while done < applied:
        card, _ = fsrs.review_card(Card(card_id=done, due=start), Rating.Again, start)
        card, _ = fsrs.review_card(card, Rating.Good if done % 3 else Rating.Again,
                                   start + datetime.timedelta(days=3))
        done += 2
    return time.perf_counter() - started


def run(args):
    from django.db import connection
    from django.utils import timezone

    from analytics import review
    from analytics.models import ReviewCard
    from core.models import Attempt

    database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    started = time.perf_counter()
    load_world(args.students)
    history = Attempt.objects.count()
    print(f"{database}: {args.students:,} students, history of {history:,} attempts "
          f"loaded in {time.perf_counter() - started:.1f}s")
    now = timezone.now()
    started = time.perf_counter()
    backfill = review.reviews_apply(dates=None, now=now)
    print(f"history backfill (dates=None): {time.perf_counter() - started:.1f}s, {backfill}")

    from core.models import Question, User

    student0 = User.objects.order_by("pk").values_list("pk", flat=True).first()
    question0 = Question.objects.order_by("pk").values_list("pk", flat=True).first()
    insert_attempts(connection, args.students, student0, question0, day=True)
    day_attempts = Attempt.objects.filter(local_date=DAY).count()
    cards_save()
    chunk = review.CHUNK_ATTEMPTS
    bound = 1 + 3 * math.ceil(day_attempts / chunk)
    print(f"the day: {day_attempts:,} attempts; cards before it: {ReviewCard.objects.count():,}"
          f"; query bound 1 + 3 × ⌈{day_attempts:,} / {chunk:,}⌉ = {bound}")

    rows = []
    seconds, queries, result = apply_day(now)
    rows.append((f"chunks of {chunk:,}", seconds, queries, bound, result, rss_mib()))
    digest = card_digest()
    again_s, again_q, again = apply_day(now)
    assert (again.cards_created, again.cards_updated, again.attempts_applied) == (0, 0, 0), again
    assert card_digest() == digest
    rows.append(("again (idempotent)", again_s, again_q, bound, again, rss_mib()))
    cards_restore()
    review.CHUNK_ATTEMPTS = day_attempts + 1
    one_s, one_q, one = apply_day(now)
    assert card_digest() == digest, "one chunk and several chunks must agree"
    rows.append(("one chunk", one_s, one_q, 4, one, rss_mib()))
    review.CHUNK_ATTEMPTS = chunk
    bare_s = bare_fsrs(result.attempts_applied)

    print(f"\n{'run':<22} {'seconds':>8} {'queries':>8} {'bound':>6} {'created':>9} "
          f"{'updated':>9} {'applied':>9} {'peak RSS':>9}")
    for label, s, q, b, r, rss in rows:
        print(f"{label:<22} {s:8.1f} {q:8d} {b:6d} {r.cards_created:9,} {r.cards_updated:9,} "
              f"{r.attempts_applied:9,} {rss:7.0f} MiB")
    print(f"{'bare FSRS arithmetic':<22} {bare_s:8.1f} {'':>8} {'':>6} {'':>9} {'':>9} "
          f"{result.attempts_applied:9,}")
    print(f"\nreviews_apply / bare FSRS: {seconds / bare_s:.2f}×; queries {queries} ≤ {bound}: "
          f"{'yes' if queries <= bound else 'NO'}")


def card_digest() -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), SUM(reviews), SUM(lapses), SUM(applied_attempt_id), "
                       "SUM(stability), SUM(difficulty) FROM analytics_reviewcard")
        count, reviews, lapses, mark, stability, difficulty = cursor.fetchone()
    return count, reviews, lapses, mark, round(stability or 0, 3), round(difficulty or 0, 3)


if __name__ == "__main__":
    main()
