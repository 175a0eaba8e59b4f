"""Rollups (analytics/rollups.py): exact figures against a plain Python computation over the
same attempts, students' local days in far-apart zones, ISO weeks across New Year,
idempotence, the open local dates, backfills, and a query count that does not grow with the
number of students."""

import datetime
import random
import zoneinfo
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import rollups
from analytics.models import DailyStudentStats, DailySubjectStats, WeeklyStudentStats
from core.models import Attempt, PracticeSession
from core.services import attempt_record, student_create
from core.tests.factories import make_question

UTC = datetime.UTC
ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London", "America/New_York",
         "Asia/Kolkata", "UTC"]
D = datetime.date


def at(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


# --- Building a world: attempts bulk-created the way attempt_record stamps them -------------


def make_students(n: int, *, offset: int = 0) -> list:
    return [student_create(email=f"s{offset + i}@example.com",
                           timezone_name=ZONES[(offset + i) % len(ZONES)]).user
            for i in range(n)]


def make_questions() -> list:
    return [make_question(subject_code=code) for code in ["MATH"] * 6 + ["PHYS"] * 5 + ["CS"] * 4]


def add_attempts(rng, students, questions, *, start, end, per_student, sessions=2):
    """Random attempts between start and end (UTC instants) with local_date in the student's
    zone and attempt_number counted per (student, question) in time order. Returns the plain
    records that were written, for the expected figures."""
    span = int((end - start).total_seconds())
    existing = defaultdict(int)
    for student_id, question_id, number in Attempt.objects.values_list(
            "student_id", "question_id", "attempt_number"):
        existing[student_id, question_id] = max(existing[student_id, question_id], number)
    choices = {q.pk: list(q.choices.all()) for q in questions}
    records, rows = [], []
    for student in students:
        zone = student.profile.zone
        own_sessions = [PracticeSession.objects.create(student=student, started_at=start)
                        for _ in range(sessions)]
        answers = sorted(
            (start + datetime.timedelta(seconds=rng.randrange(span)), rng.choice(questions))
            for _ in range(per_student))
        for answered_at, question in answers:
            existing[student.pk, question.pk] += 1
            skipped = rng.random() < 0.1
            choice = None if skipped else rng.choice(choices[question.pk])
            session = rng.choice([*own_sessions, None])
            record = dict(
                student_id=student.pk, question_id=question.pk, subject_id=question.subject_id,
                session_id=session.pk if session else None,
                is_correct=bool(choice and choice.is_correct), skipped=skipped,
                time_taken_ms=rng.randrange(1_000, 120_000), answered_at=answered_at,
                local_date=answered_at.astimezone(zone).date(),
                attempt_number=existing[student.pk, question.pk])
            records.append(record)
            rows.append(Attempt(
                student=student, question=question, session=session, choice=choice,
                **{k: v for k, v in record.items()
                   if k not in ("student_id", "question_id", "subject_id", "session_id")}))
    Attempt.objects.bulk_create(rows, batch_size=500)
    return records


def all_records() -> list[dict]:
    """Every attempt in the database as a plain record (for tests that add attempts through
    attempt_record)."""
    return [dict(r, subject_id=r.pop("question__subject_id")) for r in Attempt.objects.values(
        "student_id", "question_id", "question__subject_id", "session_id", "is_correct",
        "skipped", "time_taken_ms", "local_date", "attempt_number")]


# --- The figures, computed in Python ---------------------------------------------------------


def _figures(group: list[dict]) -> dict:
    correct = sum(r["is_correct"] for r in group)
    return dict(attempts=len(group), correct=correct, accuracy=correct / len(group),
                time_spent_ms=sum(r["time_taken_ms"] for r in group),
                distinct_questions=len({r["question_id"] for r in group}))


def _sessions(group):
    return len({r["session_id"] for r in group if r["session_id"] is not None})


def expected_daily(records, dates=None) -> dict:
    groups = defaultdict(list)
    for r in records:
        if dates is None or r["local_date"] in dates:
            groups[r["student_id"], r["local_date"]].append(r)
    return {key: dict(_figures(g), first_attempts=sum(r["attempt_number"] == 1 for r in g),
                      sessions=_sessions(g)) for key, g in groups.items()}


def expected_subject(records, dates=None) -> dict:
    groups = defaultdict(list)
    for r in records:
        if dates is None or r["local_date"] in dates:
            groups[r["student_id"], r["subject_id"], r["local_date"]].append(r)
    return {key: _figures(g) for key, g in groups.items()}


def expected_weekly(records, weeks=None) -> dict:
    groups = defaultdict(list)
    for r in records:
        iso_year, iso_week, _ = r["local_date"].isocalendar()
        if weeks is None or (iso_year, iso_week) in weeks:
            groups[r["student_id"], iso_year, iso_week].append(r)
    result = {}
    for (student_id, iso_year, iso_week), g in groups.items():
        result[student_id, iso_year, iso_week] = dict(
            _figures(g), sessions=_sessions(g),
            active_days=len({r["local_date"] for r in g}),
            week_start=datetime.date.fromisocalendar(iso_year, iso_week, 1))
    return result


# --- What the database holds -----------------------------------------------------------------

DAILY = ["attempts", "correct", "accuracy", "time_spent_ms", "distinct_questions",
         "first_attempts", "sessions"]
SUBJECT = ["attempts", "correct", "accuracy", "time_spent_ms", "distinct_questions"]
WEEKLY = ["attempts", "correct", "accuracy", "time_spent_ms", "distinct_questions", "sessions",
          "active_days", "week_start"]


def stored_daily() -> dict:
    return {(r["student_id"], r["date"]): {k: r[k] for k in DAILY}
            for r in DailyStudentStats.objects.values("student_id", "date", *DAILY)}


def stored_subject() -> dict:
    return {(r["student_id"], r["subject_id"], r["date"]): {k: r[k] for k in SUBJECT}
            for r in DailySubjectStats.objects.values("student_id", "subject_id", "date",
                                                      *SUBJECT)}


def stored_weekly() -> dict:
    return {(r["student_id"], r["iso_year"], r["iso_week"]): {k: r[k] for k in WEEKLY}
            for r in WeeklyStudentStats.objects.values("student_id", "iso_year", "iso_week",
                                                       *WEEKLY)}


def assert_same(stored: dict, expected: dict):
    assert stored.keys() == expected.keys()
    for key, figures in expected.items():
        row = dict(stored[key])
        assert row.pop("accuracy") == pytest.approx(figures["accuracy"], rel=1e-12), key
        assert row == {k: v for k, v in figures.items() if k != "accuracy"}, key


# --- Tests -----------------------------------------------------------------------------------


@pytest.fixture
def world(catalogue):
    """12 students in six zones from UTC−11 to UTC+14 answering 15 questions of three subjects
    between 2026-12-20 and 2027-01-10 UTC, with sessions, skips and repeated questions."""
    rng = random.Random(20261231)
    students = make_students(12)
    questions = make_questions()
    records = add_attempts(rng, students, questions, start=at(2026, 12, 20),
                           end=at(2027, 1, 10), per_student=45)
    return students, questions, records


def test_backfill_matches_python_over_a_random_world(world):
    students, questions, records = world
    now = at(2027, 1, 12, 9)
    result = rollups.rollups_backfill(D(2026, 12, 19), D(2027, 1, 11), now=now)

    daily, subject, weekly = (expected_daily(records), expected_subject(records),
                              expected_weekly(records))
    assert_same(stored_daily(), daily)
    assert_same(stored_subject(), subject)
    assert_same(stored_weekly(), weekly)
    assert (result.daily_rows, result.subject_rows, result.weekly_rows) == (
        len(daily), len(subject), len(weekly))
    assert result.deleted_rows == 0
    assert set(DailyStudentStats.objects.values_list("updated_at", flat=True)) == {now}
    # Local days really are local: the Kiritimati (UTC+14) and Pago Pago (UTC−11) students'
    # dates differ from the UTC dates of the same attempts.
    assert any(r["local_date"] != r["answered_at"].date() for r in records)
    # The world spans ISO weeks 2026-W52, 2026-W53 (Monday 2026-12-28) and 2027-W01.
    assert {(y, w) for _, y, w in weekly} >= {(2026, 52), (2026, 53), (2027, 1)}
    assert {v["week_start"] for (_, y, w), v in weekly.items() if (y, w) == (2026, 53)} == {
        D(2026, 12, 28)}
    assert result.weeks == [(2026, 51), (2026, 52), (2026, 53), (2027, 1), (2027, 2)]
    # Skipped attempts count as (wrong) attempts.
    assert sum(v["attempts"] for v in daily.values()) == len(records)
    assert any(r["skipped"] for r in records)
    assert "daily" in str(result) and "2026-12-19 … 2027-01-11 (24 dates)" in str(result)


def test_some_dates_only_touch_their_rows_and_whole_weeks(world):
    _, _, records = world
    dates = {D(2026, 12, 31), D(2027, 1, 1), D(2027, 1, 5)}
    result = rollups.rollups_for_dates(sorted(dates, reverse=True), now=at(2027, 1, 6))
    assert_same(stored_daily(), expected_daily(records, dates))
    assert_same(stored_subject(), expected_subject(records, dates))
    # The weeks those dates touch are computed whole, from every attempt of the week.
    assert_same(stored_weekly(), expected_weekly(records, {(2026, 53), (2027, 1)}))
    assert result.dates == sorted(dates)
    # Two contiguous runs (4 statements each) and two weeks (2 each).
    assert result.statements == 2 * 4 + 2 * 2


def test_new_year_weeks_follow_iso_years(catalogue):
    london = student_create(email="london@example.com", timezone_name="Europe/London").user
    kiritimati = student_create(email="kiritimati@example.com",
                                timezone_name="Pacific/Kiritimati").user
    pago = student_create(email="pago@example.com", timezone_name="Pacific/Pago_Pago").user
    question = make_question()
    right = question.choices.get(is_correct=True)
    wrong = question.choices.filter(is_correct=False).first()

    def answer(student, when, choice=right, ms=10_000):
        return attempt_record(student=student, question=question, choice=choice,
                              time_taken_ms=ms, answered_at=when)

    # 2025-12-29 … 2026-01-04 is ISO 2026-W01.
    for day in (D(2025, 12, 29), D(2025, 12, 31), D(2026, 1, 2), D(2026, 1, 4)):
        answer(london, datetime.datetime.combine(day, datetime.time(12), UTC))
    # 2026-12-28 … 2027-01-03 is ISO 2026-W53.
    answer(london, at(2026, 12, 31, 23, 30), wrong)
    answer(london, at(2027, 1, 1, 0, 30))
    # 2027-01-03 11:00 UTC is already Monday 2027-01-04 in Kiritimati (UTC+14): 2027-W01.
    answer(kiritimati, at(2027, 1, 3, 11))
    # 2027-01-01 05:00 UTC is still 2026-12-31 in Pago Pago (UTC−11): 2026-W53.
    answer(pago, at(2027, 1, 1, 5), ms=7_000)

    rollups.rollups_backfill(D(2025, 12, 28), D(2027, 1, 5))
    weekly = {(r.student_id, r.iso_year, r.iso_week): r for r in WeeklyStudentStats.objects.all()}
    assert set(weekly) == {(london.pk, 2026, 1), (london.pk, 2026, 53),
                           (kiritimati.pk, 2027, 1), (pago.pk, 2026, 53)}
    w01 = weekly[london.pk, 2026, 1]
    assert (w01.week_start, w01.attempts, w01.active_days, w01.correct) == (
        D(2025, 12, 29), 4, 4, 4)
    w53 = weekly[london.pk, 2026, 53]
    assert (w53.week_start, w53.attempts, w53.active_days, w53.correct, w53.accuracy) == (
        D(2026, 12, 28), 2, 2, 1, 0.5)
    assert weekly[kiritimati.pk, 2027, 1].week_start == D(2027, 1, 4)
    assert set(DailyStudentStats.objects.filter(student=pago).values_list(
        "date", "time_spent_ms")) == {(D(2026, 12, 31), 7_000)}
    assert_same(stored_weekly(), expected_weekly(all_records()))
    assert_same(stored_daily(), expected_daily(all_records()))


def test_rerun_is_idempotent_and_follows_the_attempts(world):
    students, questions, records = world
    dates = [D(2026, 12, 30), D(2026, 12, 31)]
    now = at(2027, 1, 1, 12)
    rollups.rollups_for_dates(dates, now=now)
    tables = (DailyStudentStats, DailySubjectStats, WeeklyStudentStats)

    def snapshot():
        return [sorted(model.objects.values_list()) for model in tables]

    first = snapshot()
    again = rollups.rollups_for_dates(dates, now=now)
    assert snapshot() == first
    assert again.deleted_rows == 0
    # A later run changes nothing but updated_at.
    rollups.rollups_for_dates(dates, now=now + datetime.timedelta(hours=1))
    assert DailyStudentStats.objects.filter(updated_at=now).count() == 0
    assert_same(stored_daily(), expected_daily(records, set(dates)))

    # A later attempt on one of those local days updates its rows.
    student, question = students[2], questions[0]  # Europe/London
    attempt_record(student=student, question=question,
                   choice=question.choices.get(is_correct=True), time_taken_ms=5_000,
                   answered_at=at(2026, 12, 31, 20))
    rollups.rollups_for_dates(dates, now=now)
    everything = all_records()
    assert_same(stored_daily(), expected_daily(everything, set(dates)))
    assert_same(stored_subject(), expected_subject(everything, set(dates)))
    assert_same(stored_weekly(), expected_weekly(everything, {(2026, 53)}))

    # A student's attempts of those days vanish (their sessions deleted): their rows go too.
    victim = students[3]
    gone = Attempt.objects.filter(student=victim, local_date__in=dates)
    assert gone.exists()
    gone.delete()
    result = rollups.rollups_for_dates(dates, now=now + datetime.timedelta(hours=2))
    assert result.deleted_rows > 0
    everything = all_records()
    assert_same(stored_daily(), expected_daily(everything, set(dates)))
    assert_same(stored_subject(), expected_subject(everything, set(dates)))
    assert_same(stored_weekly(), expected_weekly(everything, {(2026, 53)}))


@pytest.mark.parametrize("now, dates", [
    # 11:00 UTC: 2026-03-09 is still open in UTC−12 (until 12:00 UTC); 2026-03-11 has begun
    # in UTC+14 (since 10:00 UTC).
    (at(2026, 3, 10, 11), [D(2026, 3, 9), D(2026, 3, 10), D(2026, 3, 11)]),
    # 13:00 UTC: 2026-03-09 closed an hour ago, within the 2-hour grace.
    (at(2026, 3, 10, 13), [D(2026, 3, 9), D(2026, 3, 10), D(2026, 3, 11)]),
    # 14:30 UTC: it closed 2.5 hours ago.
    (at(2026, 3, 10, 14, 30), [D(2026, 3, 10), D(2026, 3, 11)]),
    # 09:59 UTC: 2026-03-11 has not begun anywhere yet.
    (at(2026, 3, 10, 9, 59), [D(2026, 3, 9), D(2026, 3, 10)]),
    # 23:00 UTC: the 10th is open west of UTC, the 11th east of it; the 12th begins in
    # UTC+14 at 10:00 UTC on the 11th.
    (at(2026, 3, 10, 23), [D(2026, 3, 10), D(2026, 3, 11)]),
    (at(2026, 3, 11, 10), [D(2026, 3, 10), D(2026, 3, 11), D(2026, 3, 12)]),
    # The same instant given in another zone.
    (datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
     [D(2026, 3, 9), D(2026, 3, 10), D(2026, 3, 11)]),
])
def test_open_local_dates(now, dates):
    assert rollups.open_local_dates(now) == dates


def test_open_local_dates_covers_every_real_zone_now():
    """At every half hour of two days, every date current in some IANA zone (UTC−12 …
    UTC+14) is open, and the open dates are consecutive."""
    zones = [zoneinfo.ZoneInfo(name) for name in ("Etc/GMT+12", "Pacific/Kiritimati",
                                                  "Pacific/Pago_Pago", "Asia/Kathmandu",
                                                  "America/St_Johns", "UTC")]
    for hour in range(0, 48):
        now = at(2026, 6, 1) + datetime.timedelta(minutes=30 * hour)
        opened = rollups.open_local_dates(now)
        assert {now.astimezone(z).date() for z in zones} <= set(opened)
        assert opened == [opened[0] + datetime.timedelta(days=n) for n in range(len(opened))]
    with pytest.raises(ValueError):
        rollups.open_local_dates(datetime.datetime(2026, 3, 10, 11))


def test_refresh_rolls_up_exactly_the_open_dates(world):
    _, _, records = world
    now = at(2027, 1, 2, 11)
    result = rollups.rollups_refresh(now)
    dates = {D(2027, 1, 1), D(2027, 1, 2), D(2027, 1, 3)}
    assert result.dates == sorted(dates)
    assert_same(stored_daily(), expected_daily(records, dates))
    assert_same(stored_subject(), expected_subject(records, dates))
    assert_same(stored_weekly(), expected_weekly(records, {(2026, 53)}))


def test_backfill_chunks_give_the_same_rows(world, settings):
    _, _, records = world
    dates = {D(2026, 12, 22) + datetime.timedelta(days=n) for n in range(10)}
    settings.ANALYTICS_ROLLUP_CHUNK_DAYS = 3
    small = rollups.rollups_backfill(D(2026, 12, 22), D(2026, 12, 31))
    assert small.statements == 4 * 4 + 2 * 2  # chunks of 3, 3, 3, 1 dates; weeks 52, 53
    by_three = (stored_daily(), stored_subject(), stored_weekly())
    settings.ANALYTICS_ROLLUP_CHUNK_DAYS = 7
    large = rollups.rollups_backfill(D(2026, 12, 22), D(2026, 12, 31))
    assert large.statements == 2 * 4 + 2 * 2
    assert (stored_daily(), stored_subject(), stored_weekly()) == by_three
    assert_same(by_three[0], expected_daily(records, dates))
    assert_same(by_three[1], expected_subject(records, dates))
    assert_same(by_three[2], expected_weekly(records, {(2026, 52), (2026, 53)}))
    assert (small.daily_rows, small.subject_rows, small.weekly_rows) == (
        large.daily_rows, large.subject_rows, large.weekly_rows)
    with pytest.raises(ValueError):
        rollups.rollups_backfill(D(2026, 12, 31), D(2026, 12, 30))
    assert rollups.rollups_for_dates([]).statements == 0


def test_students_active_on(world):
    _, _, records = world
    dates = [D(2026, 12, 24), D(2026, 12, 25), D(2027, 1, 3)]
    expected = {r["student_id"] for r in records if r["local_date"] in dates}
    assert expected
    with CaptureQueriesContext(connection) as queries:
        assert rollups.students_active_on(dates) == expected
    assert len(queries) == 1
    assert rollups.students_active_on([]) == set()
    assert rollups.students_active_on([D(2020, 1, 1)]) == set()


def test_query_count_does_not_grow_with_students(catalogue, django_assert_max_num_queries):
    rng = random.Random(5)
    questions = make_questions()
    dates = [D(2026, 3, 9), D(2026, 3, 10), D(2026, 3, 11)]
    counts, size = [], 0
    for more in (5, 45):  # 5 students, then 50
        add_attempts(rng, make_students(more, offset=size), questions,
                     start=at(2026, 3, 8, 12), end=at(2026, 3, 12), per_student=12, sessions=1)
        size += more
        # One chunk of three dates (4 statements) and one week (2), each in a transaction.
        with django_assert_max_num_queries(12) as captured:
            result = rollups.rollups_for_dates(dates, now=at(2026, 3, 12))
        counts.append(len(captured.captured_queries))
        assert result.daily_rows == len(expected_daily(all_records(), set(dates)))
        assert len({s for s, _ in stored_daily()}) > size * 0.8
    assert counts[0] == counts[1]
