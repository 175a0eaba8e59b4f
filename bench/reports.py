"""Weekly reports for 10,000 students, charts included, built in bulk
(`student_weekly_reports_build`), beside the time of drawing one chart alone.

    .venv/bin/python bench/reports.py                      # SQLite (a scratch file)
    .venv/bin/python bench/reports.py --postgres           # PostgreSQL (scratch database)
    .venv/bin/python bench/reports.py --students 1000      # a quick look

Printed: one chart alone (`activity_chart_png`): the first, which builds the figure; the
median of charts with the week's title and days (as in a bulk build: only the figures change);
with a title of its own each time (the kept background redrawn); and with a new figure each
time. Then the bulk build, its time per report split into the chart, the upserts, and the rest
(reads, figures, HTML), its query count, and what is stored per report. The students
answer 30 questions a week on five local days over the week and the week before, in eight
time zones, 2,000 questions in five subjects.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

WEEK = datetime.date(2026, 3, 9)  # Monday of ISO week 2026-W11
QUESTIONS = 2_000
ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati",
         "Pacific/Pago_Pago", "Australia/Sydney", "America/Los_Angeles", "Africa/Lagos"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--pg-database", default="pastq_bench",
                        help="scratch PostgreSQL database (dropped and created)")
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--per-week", type=int, default=30, help="answers per student and week")
    parser.add_argument("--charts", type=int, default=200, help="redraws timed for the median")
    args = parser.parse_args()

    with scratch_django(postgres=args.postgres, name=args.pg_database):
        run(args)


# --- Data -----------------------------------------------------------------------------------


def load_world(args) -> None:
    """Students with profiles and questions through the ORM; attempts in one INSERT … SELECT:
    per student and week, per_week answers on five of the seven days, 65 % right."""
    from django.db import connection

    from core.models import Question, StudentProfile, Subject, User
    from core.services import catalogue_load

    catalogue_load()
    subjects = list(Subject.objects.order_by("pk"))
    User.objects.bulk_create(
        [User(email=f"bench{n}@example.com", password="!", is_demo=True,
              first_name=f"Student {n}") for n in range(args.students)], batch_size=5_000)
    students = list(User.objects.order_by("pk").values_list("pk", flat=True))
    StudentProfile.objects.bulk_create(
        [StudentProfile(user_id=pk, timezone=ZONES[n % len(ZONES)])
         for n, pk in enumerate(students)], batch_size=5_000)
    Question.objects.bulk_create(
        [Question(subject=subjects[n % len(subjects)], question_type="numeric",
                  text=f"Bench question {n}", answer="1", content_hash=f"bench-{n:08d}")
         for n in range(QUESTIONS)], batch_size=2_000)
    student0 = students[0]
    question0 = Question.objects.order_by("pk").values_list("pk", flat=True).first()
    per_student = 2 * args.per_week
    # k < per_week: the week before; then the week. Five active days a week (Mon … Fri
    # shifted by the student), question (s*37 + k) mod QUESTIONS, tried once.
    day = (f"(CASE WHEN k < {args.per_week} THEN -7 ELSE 0 END) "
           f"+ ((s + k % {args.per_week} / {max(1, args.per_week // 5)}) % 7)")
    correct = "(s * 7919 + k * 104729) % 100 < 65"
    columns = ("student_id, question_id, session_id, choice_id, answer_text, is_correct, "
               "skipped, time_taken_ms, answered_at, local_date, attempt_number")
    if connection.vendor == "postgresql":
        sql = f"""
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + (s * 37 + k) % {QUESTIONS}, NULL, NULL, '',
               {correct}, false, 2000 + (s * 101 + k * 53) % 90000,
               (DATE '{WEEK}' + ({day}))::timestamp + make_interval(hours => 12),
               DATE '{WEEK}' + ({day}), 1
        FROM generate_series(0, {args.students - 1}) AS s,
             generate_series(0, {per_student - 1}) AS k
        """
    else:
        sql = f"""
        WITH RECURSIVE ss(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM ss
                                 WHERE s < {args.students - 1}),
             kk(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM kk WHERE k < {per_student - 1})
        INSERT INTO core_attempt ({columns})
        SELECT {student0} + s, {question0} + (s * 37 + k) % {QUESTIONS}, NULL, NULL, '',
               {correct}, 0, 2000 + (s * 101 + k * 53) % 90000,
               datetime('{WEEK}', ({day}) || ' days', '12 hours'),
               date('{WEEK}', ({day}) || ' days'), 1
        FROM ss, kk
        """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        cursor.execute("ANALYZE")


# --- Timing ---------------------------------------------------------------------------------


def time_charts(args) -> dict:
    from analytics import charts

    days = [WEEK + datetime.timedelta(days=n) for n in range(7)]

    def inputs(n):
        attempts = [(n * 7 + d * 13) % 40 for d in range(7)]
        accuracy = [None if a == 0 else (n * 11 + d * 17) % 101 for d, a in enumerate(attempts)]
        return days, attempts, accuracy

    title = "Your week 2026-W11: 9 Mar 2026 – 15 Mar 2026"
    charts._forget_templates()
    started = time.perf_counter()
    charts.activity_chart_png(*inputs(0), title=title)
    first = time.perf_counter() - started

    def timed(count, title_of, forget=False):
        times = []
        for n in range(count):
            if forget:
                charts._forget_templates()
            started = time.perf_counter()
            png = charts.activity_chart_png(*inputs(n), title=title_of(n))
            times.append(time.perf_counter() - started)
        return sorted(times), png

    # As in a bulk build: the week's days and title, each student's figures.
    warm, png = timed(args.charts, lambda n: title)
    # A title of its own each time: the kept background is redrawn every time.
    retitled, _ = timed(max(10, args.charts // 4), lambda n: f"{title} #{n}")
    # No reuse at all: a new figure every time.
    fresh, _ = timed(max(10, args.charts // 10), lambda n: title, forget=True)
    return {"first": first, "warm_median": statistics.median(warm),
            "warm_p90": warm[int(0.9 * len(warm))],
            "retitled_median": statistics.median(retitled),
            "fresh_median": statistics.median(fresh), "png_bytes": len(png)}


def time_build(args) -> dict:
    from django.db import connection
    from django.db.models import Avg, Count
    from django.db.models.functions import Length

    from analytics import reports
    from analytics.models import Report

    spent = {"chart": 0.0, "upsert": 0.0}
    queries = [0]

    def timed(name, function):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    original_chart, original_upsert = reports.activity_chart_png, reports._upsert
    reports.activity_chart_png = timed("chart", original_chart)
    reports._upsert = timed("upsert", original_upsert)
    now = datetime.datetime.combine(WEEK + datetime.timedelta(days=9), datetime.time(),
                                    datetime.UTC)
    try:
        started = time.perf_counter()
        with connection.execute_wrapper(count):
            due = reports.student_weekly_reports_due(now)
        due_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with connection.execute_wrapper(count):
            built = reports.student_weekly_reports_build(now=now)
        total = time.perf_counter() - started
    finally:
        reports.activity_chart_png, reports._upsert = original_chart, original_upsert
    stored = Report.objects.aggregate(n=Count("id"), html=Avg(Length("html")))
    with connection.cursor() as cursor:
        cursor.execute("SELECT AVG(LENGTH(chart_png)) FROM analytics_report")
        png = cursor.fetchone()[0]
    return {"due": len(due), "due_seconds": due_seconds, "built": built, "total": total,
            "queries": queries[0], "stored": stored["n"], "html_bytes": stored["html"],
            "png_bytes": png, **spent}


def run(args):
    from django.db import connection

    started = time.perf_counter()
    load_world(args)
    print(f"data: {args.students:,} students, {2 * args.per_week * args.students:,} attempts "
          f"({connection.vendor}) in {time.perf_counter() - started:.1f} s", flush=True)
    chart = time_charts(args)
    print(f"one chart alone: first {1000 * chart['first']:.1f} ms (builds the figure); "
          f"then the week's title and days kept, median {1000 * chart['warm_median']:.1f} ms "
          f"(p90 {1000 * chart['warm_p90']:.1f}); a title of its own each time (background "
          f"redrawn) {1000 * chart['retitled_median']:.1f} ms; a new figure each time "
          f"{1000 * chart['fresh_median']:.1f} ms; {chart['png_bytes']:,} bytes", flush=True)
    build = time_build(args)
    n = build["built"]
    per = build["total"] / n
    other = build["total"] - build["chart"] - build["upsert"]
    print(f"due: {build['due']:,} students in {build['due_seconds']:.2f} s")
    print(f"bulk build: {n:,} reports in {build['total']:.1f} s = {1000 * per:.1f} ms per "
          f"report: chart {1000 * build['chart'] / n:.1f} ms, upsert "
          f"{1000 * build['upsert'] / n:.1f} ms, reads + figures + HTML "
          f"{1000 * other / n:.1f} ms; {build['queries']} queries in all "
          f"(due included)")
    print(f"per report / chart alone (title and days kept): "
          f"{per / chart['warm_median']:.2f}")
    print(f"stored: {build['stored']:,} rows, HTML {build['html_bytes']:,.0f} bytes, "
          f"PNG {build['png_bytes']:,.0f} bytes on average")


if __name__ == "__main__":
    main()
