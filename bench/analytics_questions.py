"""Question statistics (item analysis) for 1,000 questions over 1,000,000 attempts: the
scheduled refresh that stores them, and the live analysis `manage.py item_analysis` prints.
Limit: the refresh under 10 s on SQLite and on PostgreSQL.

    .venv/bin/python bench/analytics_questions.py                 # SQLite (a scratch file)
    .venv/bin/python bench/analytics_questions.py --postgres      # PostgreSQL (scratch database)
    .venv/bin/python bench/analytics_questions.py --attempts 200000

The data: 5 subjects of 200 questions (80 % multiple choice, 10 % true/false, 10 % numeric;
half of each subject in 4 papers of 25), 9,000 students answering 100 questions each in one or
two subjects on a logistic ability model with 5 % skips (whole papers for a quarter of them),
and 10 % of the attempts second tries. Loaded with executemany (SQLite) or COPY (PostgreSQL),
then ANALYZE, as autovacuum would have done on a live database.

Also timed: the three read statements one by one, and the median done the other way: every
first attempt's time fetched, ordered, into Python (the chosen way: percentile_cont on
PostgreSQL, a ROW_NUMBER window on SQLite, inside the one per-question statement).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

LIMIT_SECONDS = 10.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--database", default="pastq_bench",
                        help="PostgreSQL scratch database (dropped and created)")
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--questions-per-subject", type=int, default=200)
    parser.add_argument("--reuse", metavar="DATABASE_URL",
                        help="measure a database an earlier run loaded, without loading")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch database (for a later --reuse)")
    args = parser.parse_args()

    with scratch_django(postgres=args.postgres, name=args.database, reuse=args.reuse,
                        keep=args.keep, init_db=True) as url:
        return run(args, url)


def load(args) -> int:
    """The data set described above; returns the number of attempts written."""
    from django.db import connection, transaction

    from core.models import Attempt, Choice, ExamPaper, Question, Subject, User

    rng = random.Random(11)
    subjects = list(Subject.objects.order_by("code"))
    per_subject = args.questions_per_subject
    papers = ExamPaper.objects.bulk_create(
        ExamPaper(subject=subject, exam_body="Bench board", year=2020 + n, sitting="June")
        for subject in subjects for n in range(4))
    questions = []
    for s, subject in enumerate(subjects):
        for n in range(per_subject):
            kind = ("numeric" if n % 10 == 9 else "true_false" if n % 10 == 8
                    else "multiple_choice")
            paper = papers[s * 4 + n // 25] if n < 100 else None
            questions.append(Question(
                subject=subject, paper=paper, year=paper.year if paper else None,
                question_type=kind, text=f"Bench question {s}-{n}", answer="42",
                content_hash=f"bench-items-{s}-{n}"))
    Question.objects.bulk_create(questions, batch_size=2000)
    Choice.objects.bulk_create(
        [Choice(question=q, label=label, text=label, is_correct=label == labels[0])
         for q in questions if q.question_type != "numeric"
         for labels in [("T", "F") if q.question_type == "true_false" else "BACD"]
         for label in labels], batch_size=5000)
    choices: dict[int, tuple[int, list[int]]] = {}
    for choice_id, question_id, is_correct in Choice.objects.values_list(
            "id", "question_id", "is_correct"):
        key, wrong = choices.setdefault(question_id, (0, []))
        choices[question_id] = (choice_id, wrong) if is_correct else (key, [*wrong, choice_id])
    by_subject = [questions[s * per_subject:(s + 1) * per_subject] for s in range(len(subjects))]
    difficulty = {q.pk: rng.gauss(0, 1.2) for q in questions}

    first_per_student = 100
    students = int(args.attempts * 0.9) // first_per_student
    User.objects.bulk_create(
        (User(email=f"bench{i}@example.com", password="!", is_demo=True)
         for i in range(students)), batch_size=5000)
    user_ids = list(User.objects.filter(is_demo=True).order_by("pk").values_list("pk", flat=True))
    start = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)
    rows = []
    for i, student in enumerate(user_ids):
        ability = rng.gauss(0, 1)
        picked = rng.sample(range(len(subjects)), rng.choice((1, 2)))
        answered = []
        for s in picked:
            share = first_per_student // len(picked)
            if i % 4 == 0:  # whole papers first
                answered += by_subject[s][:share]
            else:
                answered += rng.sample(by_subject[s], share)
        for k, question in enumerate(answered):
            at = start + datetime.timedelta(minutes=i % 50_000 + k)
            right = rng.random() < 1 / (1 + math.exp(difficulty[question.pk] - ability))
            skipped = rng.random() < 0.05
            key, wrong = choices.get(question.pk, (None, []))
            choice = None if skipped or key is None else (key if right else rng.choice(wrong))
            row = (student, question.pk, choice, right and not skipped, skipped,
                   rng.randint(3_000, 180_000), at, at.date(), 1)
            rows.append(row)
            if len(rows) % 9 == 0:  # a second try at one in nine
                rows.append((*row[:3], True if key is None else choice == key, False,
                             row[5] // 2, at + datetime.timedelta(days=3),
                             (at + datetime.timedelta(days=3)).date(), 2))
    rows = rows[:args.attempts]
    columns = ["student_id", "question_id", "choice_id", "is_correct", "skipped",
               "time_taken_ms", "answered_at", "local_date", "attempt_number", "answer_text"]
    table = Attempt._meta.db_table
    with transaction.atomic():
        _insert(connection, table, columns, rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return len(rows)


def _insert(connection, table, columns, rows):
    if connection.vendor == "postgresql":
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(["\\N" if v is None else
                                    v.isoformat() if hasattr(v, "isoformat") else
                                    ("t" if v else "f") if isinstance(v, bool) else str(v)
                                    for v in row]) + "\t\n")
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})",
                [(*row[:6], connection.ops.adapt_datetimefield_value(row[6]),
                  row[7].isoformat(), row[8],
                  "") for row in rows])


def timed(function):
    """(wall seconds, this process's CPU seconds, the result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run(args, url):
    from django.conf import settings
    from django.db import connection

    from analytics import item_analysis as items
    from analytics.models import ChoiceStats, PaperStats, QuestionStats
    from core.models import Attempt, Question, Subject

    settings.DEBUG = False  # no query log
    if not args.reuse:
        seconds, _, _ = timed(lambda: load(args))
        print(f"loaded in {seconds:.0f} s")
    attempts = Attempt.objects.count()
    first = Attempt.objects.filter(attempt_number=1).count()
    postgres = connection.vendor == "postgresql"
    print(f"{'PostgreSQL' if postgres else 'SQLite'}: {Question.objects.count():,} questions, "
          f"{attempts:,} attempts ({first:,} first), "
          f"{Attempt.objects.values('student').distinct().count():,} students")

    runs = [timed(items.question_stats_refresh) for _ in range(3)]
    assert runs[0][2] == QuestionStats.objects.count() == Question.objects.count()
    subject = Subject.objects.order_by("code").first()
    live = timed(lambda: items.item_analysis(subject))
    rows = timed(lambda: items._first_attempt_rows(None))
    computed = timed(lambda: items._figures(None))
    print(f"{'measure':<60}{'wall s':>8}{'cpu s':>7}{'limit':>7}")

    def line(name, measured, limit=""):
        print(f"{name:<60}{measured[0]:>8.2f}{measured[1]:>7.2f}{limit:>7}")

    for number, measured in enumerate(runs, 1):
        line(f"question_stats_refresh(), all subjects, run {number}", measured, LIMIT_SECONDS)
    line(f"item_analysis({subject.code}), one subject, live", live)
    line("  first-attempt rows: SQL (totals, rest scores) and fetch", rows)
    line("  all figures (the rows, then numpy; no writes)", computed)
    print(f"  written: {QuestionStats.objects.count():,} questions, "
          f"{ChoiceStats.objects.count():,} options, {PaperStats.objects.count():,} papers; "
          f"{sum(1 for q in live[2].questions if q.flags):,} of {subject.code}'s "
          f"{len(live[2].questions)} questions flagged")

    # A reference, and the ways not taken, each timed alone (SQL executed, rows fetched).
    sql, params = items._first_attempts_sql(None, settings.ANALYTICS_MIN_OTHER_ATTEMPTS)
    types = ", ".join(f"'{kind}'" for kind in sorted(items.CHOICE_TYPES))
    median = (
        "SELECT question_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY time_taken_ms) "
        "FROM core_attempt WHERE attempt_number = 1 GROUP BY question_id"
        if postgres else
        "SELECT o.question_id, AVG(o.time_taken_ms) FROM ("
        "  SELECT question_id, time_taken_ms, ROW_NUMBER() OVER ("
        "    PARTITION BY question_id ORDER BY time_taken_ms) AS r,"
        "  COUNT(*) OVER (PARTITION BY question_id) AS k"
        "  FROM core_attempt WHERE attempt_number = 1) o"
        " WHERE o.r IN ((o.k + 1) / 2, (o.k + 2) / 2) GROUP BY o.question_id")
    others = [
        ("reference: first attempts' columns fetched bare (no totals)",
         "SELECT question_id, student_id, time_taken_ms, choice_id, is_correct, skipped "
         "FROM core_attempt WHERE attempt_number = 1", []),
        ("not taken: Pearson sums in SQL (GROUP BY question)",
         f"SELECT question_id, COUNT(*), SUM(CASE WHEN outcome = 1 THEN 1 ELSE 0 END), "
         f"SUM(CASE WHEN rest >= 0 THEN 1 ELSE 0 END), SUM(CASE WHEN rest >= 0 THEN rest END), "
         f"SUM(CASE WHEN rest >= 0 THEN rest * rest END), "
         f"SUM(CASE WHEN rest >= 0 AND outcome = 1 THEN rest END) "
         f"FROM ({sql}) r GROUP BY question_id", params),
        ("not taken: medians by " + ("percentile_cont" if postgres else "ROW_NUMBER window"),
         median, []),
        ("not taken: thirds by NTILE(3), counts by GROUP BY (question, choice)",
         f"SELECT question_id, choice, COUNT(*), SUM(CASE WHEN third = 1 THEN 1 ELSE 0 END), "
         f"SUM(CASE WHEN third = 3 THEN 1 ELSE 0 END) FROM ("
         f"  SELECT r.question_id, r.choice, NTILE(3) OVER ("
         f"    PARTITION BY r.question_id ORDER BY r.rest DESC, r.student_id) AS third"
         f"  FROM ({sql}) r JOIN core_question q ON q.id = r.question_id"
         f"  WHERE r.rest >= 0 AND q.question_type IN ({types})) t "
         f"GROUP BY question_id, choice", params),
    ]
    with connection.cursor() as cursor:
        for name, statement, values in others:
            line(name, timed(lambda s=statement, v=values: (cursor.execute(s, v),
                                                             cursor.fetchall())))
    ok = all(measured[0] < LIMIT_SECONDS for measured in runs)
    print("within the limit" if ok else "OVER THE LIMIT")
    print(f"(cpu s: this process only; {'PostgreSQL works in its own processes' if postgres else 'SQLite runs inside it'}; "
          f"database: {url})")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
