"""Achievements (analytics/achievements.py) and the selectors the notifications app uses
(analytics/selectors.py): each kind exactly at and just below its threshold, streaks across a
gap, mastery's topics and window, one row per student and achievement (and subject),
idempotence, withdrawal and reinstatement, a backfill that does not flood, claiming an
announcement once, a query count that does not grow with the students, and a random population
checked against a plain Python computation over the same attempts."""

import datetime
import itertools
import random
import zoneinfo
from collections import defaultdict

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test.utils import CaptureQueriesContext

from analytics import achievements
from analytics.achievements import achievements_detect, achievements_withdraw_invalid
from analytics.models import DailyStudentStats, StudentAchievement
from analytics.selectors import (
    achievements_mark_announced,
    achievements_to_announce,
    student_achievements,
)
from core.models import Achievement, Attempt, Question, Subject, Topic
from core.services import student_create

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
NOW = datetime.datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
TODAY = NOW.date()  # also the local date in London (GMT until 29 March)
_hashes = itertools.count(1)


# --- Building a world: questions, students, attempts, and the daily rollup ------------------


def make_questions(code: str, n: int, *, topics: list[str] | None = None) -> list[Question]:
    """n numeric questions of a subject, their topics cycling through `topics` (slugs; None:
    all the subject's topics; a None inside the list: no topic)."""
    subject = Subject.objects.get(code=code)
    by_slug = {t.slug: t for t in Topic.objects.filter(subject=subject)}
    slugs = list(by_slug) if topics is None else topics
    return Question.objects.bulk_create(
        Question(subject=subject, topic=by_slug.get(slugs[i % len(slugs)]) if slugs else None,
                 question_type=Question.Type.NUMERIC, text=f"{code} question {i}", answer="1",
                 content_hash=f"test-{next(_hashes)}")
        for i in range(n))


def make_student(name: str, zone: str = "Europe/London"):
    return student_create(email=f"{name}@example.com", timezone_name=zone).user


def local_noon(student, day: datetime.date, second: int = 0) -> datetime.datetime:
    """An instant on the student's local date `day`: 12:00 local plus `second` seconds."""
    zone = student.profile.zone
    return (datetime.datetime.combine(day, datetime.time(12), tzinfo=zone)
            + datetime.timedelta(seconds=second)).astimezone(UTC)


def answer(student, answers) -> None:
    """Bulk-create attempts from (question, is_correct, answered_at), as attempt_record stamps
    them: local_date in the student's zone, attempt_number counted per question in time
    order (after the attempts already stored)."""
    zone = student.profile.zone
    numbers = defaultdict(int, Attempt.objects.filter(student=student).order_by()
                          .values("question").annotate(n=Count("id")).values_list("question", "n"))
    rows = []
    for question, is_correct, at in sorted(answers, key=lambda a: a[2]):
        numbers[question.pk] += 1
        rows.append(Attempt(student=student, question=question, is_correct=is_correct,
                            time_taken_ms=1000, answered_at=at,
                            local_date=at.astimezone(zone).date(),
                            attempt_number=numbers[question.pk]))
    Attempt.objects.bulk_create(rows)


def answer_on_days(student, days, questions, *, right=lambda i: True, per_day=1) -> None:
    """`per_day` new questions on each local date of `days`, in order, until the questions
    run out; the i-th answer is right when right(i)."""
    slots = [(day, k) for day in days for k in range(per_day)]
    answer(student, [(question, right(i), local_noon(student, day, k))
                     for i, (question, (day, k)) in enumerate(zip(questions, slots, strict=False))])


def rollup(*students) -> None:
    """DailyStudentStats of the students, from their attempts (a small stand-in for the
    rollups, so these tests do not depend on them)."""
    DailyStudentStats.objects.filter(student__in=students).delete()
    rows = (Attempt.objects.filter(student__in=students).order_by()
            .values("student", "local_date")
            .annotate(n=Count("id"), right=Count("id", filter=Q(is_correct=True)),
                      ms=Sum("time_taken_ms"), distinct=Count("question", distinct=True),
                      first=Count("id", filter=Q(attempt_number=1)),
                      sessions=Count("session", distinct=True)))
    DailyStudentStats.objects.bulk_create(
        DailyStudentStats(student_id=r["student"], date=r["local_date"], attempts=r["n"],
                          correct=r["right"], accuracy=r["right"] / r["n"], time_spent_ms=r["ms"],
                          distinct_questions=r["distinct"], first_attempts=r["first"],
                          sessions=r["sessions"], updated_at=NOW)
        for r in rows)


def held(student=None) -> dict:
    """(student id, code, subject code or None) → value, of the rows not withdrawn."""
    rows = StudentAchievement.objects.filter(withdrawn_at__isnull=True)
    if student is not None:
        rows = rows.filter(student=student)
    return {(r.student_id, r.achievement.code, r.subject.code if r.subject else None): r.value
            for r in rows.select_related("achievement", "subject")}


def codes(student) -> set[str]:
    return {code for (_, code, _) in held(student)}


def days_before(day: datetime.date, n: int) -> list[datetime.date]:
    """The n local dates ending on `day`, oldest first."""
    return [day - DAY * k for k in range(n - 1, -1, -1)]


# --- A plain Python reference over the same attempts ----------------------------------------


def longest_run(dates) -> tuple[int, dict[int, datetime.date]]:
    """Longest run of consecutive dates, and for each length the first date a run reached it."""
    best, run, previous, reached = 0, 0, None, {}
    for day in sorted(set(dates)):
        run = run + 1 if previous is not None and day - previous == DAY else 1
        previous = day
        best = max(best, run)
        reached.setdefault(run, day)
    return best, reached


def reference(detection_day: dict[int, datetime.date]) -> dict:
    """What should be held: (student id, code, subject code) → (value, first_on), computed
    in Python from the Attempt rows, for each student's detection date."""
    rows = list(Attempt.objects.values_list(
        "student_id", "question__subject__code", "question__topic_id", "is_correct",
        "answered_at", "id", "local_date", "attempt_number"))
    expected = {}
    for student_id, day in detection_day.items():
        mine = [r for r in rows if r[0] == student_id and r[6] <= day]
        firsts = sorted((r for r in mine if r[7] == 1), key=lambda r: (r[4], r[5]))
        longest, reached = longest_run(r[6] for r in mine)
        for a in Achievement.objects.filter(is_active=True):
            key = (student_id, a.code, None)
            if a.kind == "streak" and longest >= a.threshold:
                expected[key] = (longest, reached[a.threshold])
            elif a.kind == "questions" and len(firsts) >= a.threshold:
                expected[key] = (len(firsts), sorted(r[6] for r in firsts)[a.threshold - 1])
            elif a.kind == "accuracy":
                right = 0
                for n, r in enumerate(firsts, 1):
                    right += r[3]
                    if n >= a.min_questions and 100 * right >= a.threshold * n:
                        expected[key] = (100 * right / n, r[6])
                        break
            elif a.kind == "mastery":
                window = [r for r in firsts if r[6] > day - DAY * a.window_days]
                for code in {r[1] for r in window}:
                    subject = [r for r in window if r[1] == code]
                    right = sum(r[3] for r in subject)
                    topics = {r[2] for r in subject if r[2] is not None}
                    if (len(subject) >= a.min_questions and len(topics) >= a.min_topics
                            and 100 * right >= a.threshold * len(subject)):
                        expected[(student_id, a.code, code)] = (100 * right / len(subject), day)
    return expected


# --- Each kind at and just below its threshold ----------------------------------------------


@pytest.mark.parametrize("length", [3, 7, 30])
def test_a_streak_is_earned_at_its_length_and_not_one_day_short(catalogue, length):
    questions = make_questions("MATH", 2 * length)
    at, short = make_student("at"), make_student("short")
    answer_on_days(at, days_before(TODAY - DAY, length), questions[:length])
    answer_on_days(short, days_before(TODAY - DAY, length - 1), questions[length:])
    rollup(at, short)

    achievements_detect([at.pk, short.pk], now=NOW)

    assert f"streak-{length}" in codes(at)
    assert f"streak-{length}" not in codes(short)
    assert held(at)[at.pk, f"streak-{length}", None] == length
    shorter = {f"streak-{n}" for n in (3, 7, 30) if n <= length - 1}
    assert {c for c in codes(short) if c.startswith("streak")} == shorter


def test_a_streak_counts_consecutive_local_days_across_a_gap(catalogue):
    questions = make_questions("MATH", 20)
    student = make_student("gappy")
    d0 = TODAY - 20 * DAY
    # Days 0, 1, (gap), 3, 4: two runs of two; several answers on one day are one day.
    answer_on_days(student, [d0, d0 + DAY, d0 + 3 * DAY, d0 + 4 * DAY], questions, per_day=2)
    rollup(student)
    achievements_detect([student.pk], now=NOW)
    assert not codes(student) & {"streak-3", "streak-7", "streak-30"}

    answer_on_days(student, [d0 + 5 * DAY], questions[8:], per_day=2)  # 3, 4, 5: three in a row
    rollup(student)
    # Not as of day 4 (the detection date bounds the run and the count) ...
    assert achievements_detect([student.pk], now=NOW, as_of=d0 + 4 * DAY) == 0
    # ... but as of day 5, first reached on day 5 (with the tenth question).
    assert achievements_detect([student.pk], now=NOW, as_of=d0 + 5 * DAY) == 2
    assert codes(student) == {"streak-3", "questions-10"}
    row = StudentAchievement.objects.get(student=student, achievement__code="streak-3")
    assert (row.value, row.earned_on) == (3, d0 + 5 * DAY)
    assert longest_run([d0, d0 + DAY, d0 + 3 * DAY, d0 + 4 * DAY, d0 + 5 * DAY])[0] == 3


@pytest.mark.parametrize("count", [10, 100, 1000])
def test_distinct_questions_at_the_count_and_one_short(catalogue, count):
    questions = make_questions("MATH", 2 * count)
    at, short = make_student("at"), make_student("short")
    days = days_before(TODAY, 10)
    answer_on_days(at, days, questions[:count], per_day=count // 10)
    # One question short, however often the same questions are answered again.
    answer_on_days(short, days, questions[count:2 * count - 1], per_day=count // 10)
    answer(short, [(questions[count], False, local_noon(short, TODAY, k)) for k in range(5)])
    rollup(at, short)

    achievements_detect([at.pk, short.pk], now=NOW)

    assert held(at)[at.pk, f"questions-{count}", None] == count
    assert f"questions-{count}" not in codes(short)
    assert Attempt.objects.filter(student=short).count() == count + 4  # more answers than at
    assert Attempt.objects.filter(student=short, attempt_number=1).count() == count - 1


def test_accuracy_needs_its_percentage_over_enough_distinct_questions(catalogue):
    questions = make_questions("MATH", 300)
    pool = iter(questions)
    days = days_before(TODAY, 5)

    def student(name, n, right, *, retries=False):
        user = make_student(name)
        asked = [next(pool) for _ in range(n)]
        answer_on_days(user, days, asked, right=lambda i: i < right, per_day=-(-n // 5))
        if retries:  # second tries at the wrong ones, all right: they do not count
            answer(user, [(q, True, local_noon(user, TODAY, 600)) for q in asked[right:]])
        return user

    at = student("at", 50, 40)                    # 80% of 50
    short = student("short", 50, 39, retries=True)  # 78%; 100% on the second tries
    few = student("few", 49, 49)                  # 100% of 49: not enough questions
    rollup(at, short, few)

    achievements_detect([at.pk, short.pk, few.pk], now=NOW)

    assert held(at)[at.pk, "accuracy-80", None] == pytest.approx(80.0)
    assert "accuracy-80" not in codes(short)
    assert "accuracy-80" not in codes(few)
    assert codes(few) >= {"questions-10"}


def test_accuracy_once_reached_is_earned_from_the_first_attempt_it_held(catalogue):
    questions = make_questions("MATH", 70)
    student = make_student("peak")
    d0 = TODAY - 30 * DAY
    # 50 first attempts over days 0-4 with 40 right (80% after the 50th, on day 4), then 20
    # wrong ones on days 5-6: 40/70 now.
    answer_on_days(student, [d0 + DAY * k for k in range(5)], questions[:50],
                   right=lambda i: i >= 10, per_day=10)
    answer_on_days(student, [d0 + 5 * DAY, d0 + 6 * DAY], questions[50:], right=lambda i: False,
                   per_day=10)
    rollup(student)

    achievements_detect([student.pk], now=NOW, as_of=d0 + 6 * DAY)

    row = StudentAchievement.objects.get(student=student, achievement__code="accuracy-80")
    assert (row.value, row.earned_on) == (pytest.approx(80.0), d0 + 4 * DAY)
    expected = reference({student.pk: d0 + 6 * DAY})
    assert expected[student.pk, "accuracy-80", None] == (80.0, d0 + 4 * DAY)


# --- Mastery: per subject, topics, window ---------------------------------------------------


def test_mastery_needs_questions_topics_accuracy_and_the_window(catalogue):
    math = make_questions("MATH", 400, topics=["algebra", "calculus", "geometry", None])
    two_topics = [q for q in math if q.topic and q.topic.slug in ("algebra", "calculus")]
    with_topic = [q for q in math if q.topic]
    no_topic = [q for q in math if not q.topic]
    window = Achievement.objects.get(code="subject-mastery").window_days  # 90

    def student(name, asked, right, day=TODAY):
        user = make_student(name)
        answer(user, [(q, i < right, local_noon(user, day, i)) for i, q in enumerate(asked)])
        return user

    cases = {
        "at": (student("at", with_topic[:30], 24), True),             # 30, 3 topics, 80%
        "few": (student("few", with_topic[30:59], 29), False),        # 29 questions
        "narrow": (student("narrow", two_topics[:30], 30), False),    # 2 topics
        "weak": (student("weak", with_topic[60:90], 23), False),      # 76.7%
        # Questions without a topic count as questions, not as topics.
        "untopiced": (student("untopiced", with_topic[90:117] + no_topic[:3], 30), True),
        "untopiced-narrow": (student("untopiced-narrow", two_topics[40:68] + no_topic[3:8], 33),
                             False),
        # The window: the last `window` local dates up to the detection date, inclusive.
        "edge": (student("edge", with_topic[120:150], 30, TODAY - DAY * (window - 1)), True),
        "outside": (student("outside", with_topic[150:180], 30, TODAY - DAY * window), False),
    }
    users = [user for user, _ in cases.values()]
    rollup(*users)

    achievements_detect([u.pk for u in users], now=NOW)

    expected = reference({u.pk: TODAY for u in users})
    for name, (user, earned) in cases.items():
        key = (user.pk, "subject-mastery", "MATH")
        assert (key in held(user)) is earned, name
        assert (key in expected) is earned, name
        if earned:
            assert held(user)[key] == pytest.approx(expected[key][0]), name
    assert held(cases["at"][0])[cases["at"][0].pk, "subject-mastery", "MATH"] == 80.0


def test_mastery_is_stored_once_per_subject(catalogue):
    math, phys = make_questions("MATH", 40), make_questions("PHYS", 40)
    student = make_student("both")
    answer(student, [(q, True, local_noon(student, TODAY - DAY, i))
                     for i, q in enumerate(math[:30] + phys[:30])])
    rollup(student)

    # questions-10, accuracy-80, mastery of MATH and of PHYS
    assert achievements_detect([student.pk], now=NOW) == 4
    assert achievements_detect([student.pk], now=NOW) == 0
    answer(student, [(q, True, local_noon(student, TODAY, i)) for i, q in enumerate(math[30:])])
    rollup(student)
    assert achievements_detect([student.pk], now=NOW) == 0

    mastery = StudentAchievement.objects.filter(student=student,
                                                achievement__code="subject-mastery")
    assert sorted(mastery.values_list("subject__code", flat=True)) == ["MATH", "PHYS"]
    assert StudentAchievement.objects.filter(student=student).count() == 4


def test_inactive_definitions_are_not_detected(catalogue):
    questions = make_questions("MATH", 10)
    student = make_student("quiet")
    answer_on_days(student, days_before(TODAY, 5), questions, per_day=2)
    rollup(student)
    Achievement.objects.filter(code="streak-3").update(is_active=False)

    achievements_detect([student.pk], now=NOW)

    assert codes(student) == {"questions-10"}


# --- Storing once, withdrawing, reinstating -------------------------------------------------


def test_detecting_twice_writes_nothing_the_second_time(catalogue):
    questions = make_questions("MATH", 60)
    students = [make_student(f"s{i}") for i in range(3)]
    for i, student in enumerate(students):
        answer_on_days(student, days_before(TODAY, 5), questions[20 * i:20 * i + 15], per_day=3)
    rollup(*students)

    first = achievements_detect(None, now=NOW)
    before = list(StudentAchievement.objects.order_by("id").values())
    second = achievements_detect(None, now=NOW + DAY)

    assert first == len(before) == 3 * 2  # streak-3 and questions-10 each
    assert second == 0
    assert list(StudentAchievement.objects.order_by("id").values()) == before


def test_withdrawn_when_a_regrade_breaks_it_and_reinstated_when_it_holds_again(catalogue):
    questions = make_questions("MATH", 50, topics=[])  # no topics: no mastery here
    student = make_student("regraded")
    answer_on_days(student, days_before(TODAY - DAY, 5), questions, right=lambda i: i < 40,
                   per_day=10)
    rollup(student)
    achievements_detect([student.pk], now=NOW)
    sharp = StudentAchievement.objects.get(student=student, achievement__code="accuracy-80")
    achievements_mark_announced([sharp.pk], now=NOW)
    others = held(student).keys() - {(student.pk, "accuracy-80", None)}
    assert {k[1] for k in others} == {"streak-3", "questions-10"}

    # A corrected key turns one right answer wrong: 39 of 50.
    flipped = Attempt.objects.filter(student=student, is_correct=True).order_by("id").first()
    Attempt.objects.filter(pk=flipped.pk).update(is_correct=False)
    later = NOW + DAY
    assert achievements_withdraw_invalid([student.pk], now=later) == 1
    sharp.refresh_from_db()
    assert (sharp.withdrawn_at, sharp.announced_at) == (later, NOW)
    assert held(student).keys() == others  # what still holds is untouched
    assert achievements_detect([student.pk], now=later) == 0  # and it is not earned again
    assert achievements_withdraw_invalid([student.pk], now=later) == 0

    # Corrected back: it holds again, and is reinstated, not announced a second time.
    Attempt.objects.filter(pk=flipped.pk).update(is_correct=True)
    assert achievements_detect([student.pk], now=later + DAY) == 1
    sharp.refresh_from_db()
    assert (sharp.withdrawn_at, sharp.announced_at, sharp.earned_at) == (None, NOW, NOW)
    assert not achievements_to_announce(now=later + DAY).filter(pk=sharp.pk).exists()
    assert StudentAchievement.objects.filter(student=student).count() == 3


def test_withdrawal_keeps_what_held_when_it_was_earned(catalogue):
    questions = make_questions("MATH", 100)
    student = make_student("drifter")
    answer(student, [(q, i < 40, local_noon(student, TODAY, i))
                     for i, q in enumerate(questions[:50])])
    rollup(student)
    achievements_detect([student.pk], now=NOW)
    assert codes(student) >= {"accuracy-80", "subject-mastery"}

    # Later: 20 wrong answers (40/70 now), and the mastery window has moved past them all.
    later = NOW + 120 * DAY
    answer(student, [(q, False, local_noon(student, later.date() - DAY, i))
                     for i, q in enumerate(questions[50:70])])
    rollup(student)
    assert (student.pk, "subject-mastery", "MATH") not in reference({student.pk: later.date()})
    assert achievements_withdraw_invalid([student.pk], now=later) == 0

    # But a mastery that, after a regrade, did not hold on its own earned_on is withdrawn.
    Attempt.objects.filter(student=student, question__in=questions[:2]).update(is_correct=False)
    assert achievements_withdraw_invalid([student.pk], now=later) == 2  # mastery, accuracy
    assert codes(student) == {"questions-10"}


# --- Announcing: the 48-hour window, backfills, claims --------------------------------------


def test_a_backfill_does_not_flood_students_with_old_achievements(catalogue):
    questions = make_questions("MATH", 400)
    old, fresh = make_student("old", "Pacific/Kiritimati"), make_student("fresh")
    d0 = TODAY - 40 * DAY
    answer_on_days(old, [d0 + DAY * k for k in range(10)], questions[:120], per_day=12,
                   right=lambda i: i % 4 > 0)  # 75%: no accuracy-80, no mastery
    answer_on_days(fresh, [TODAY - DAY], questions[200:210], per_day=10)  # yesterday
    rollup(old, fresh)

    as_of = TODAY - DAY
    written = achievements_detect([old.pk, fresh.pk], now=NOW, as_of=as_of)

    expected = reference({old.pk: as_of, fresh.pk: as_of})
    rows = {(r.student_id, r.achievement.code, None): r
            for r in StudentAchievement.objects.select_related("achievement")}
    assert written == len(expected) == 5  # old: streak-3, -7, questions-10, -100; fresh: -10
    for key, (value, first_on) in expected.items():
        row = rows[key]
        assert (row.value, row.earned_on) == (pytest.approx(value), first_on), key
        # The end of earned_on: 00:00 UTC of the next date.
        assert row.earned_at == datetime.datetime.combine(first_on + DAY, datetime.time(),
                                                          tzinfo=UTC)
    # Old's were first held 30-40 days ago: out of the window. Fresh's yesterday: announced.
    announce = list(achievements_to_announce(now=NOW))
    assert [(r.student_id, r.achievement.code) for r in announce] == [
        (fresh.pk, "questions-10")]
    assert rows[old.pk, "questions-100", None].earned_on == d0 + 8 * DAY  # 108 by day 8


def test_a_live_run_earns_now_on_each_students_local_date(catalogue):
    questions = make_questions("MATH", 40)
    east, west = make_student("east", "Pacific/Kiritimati"), make_student("west",
                                                                         "Pacific/Pago_Pago")
    east_today = NOW.astimezone(zoneinfo.ZoneInfo("Pacific/Kiritimati")).date()
    west_today = NOW.astimezone(zoneinfo.ZoneInfo("Pacific/Pago_Pago")).date()
    assert (east_today, west_today) == (TODAY + DAY, TODAY)
    # East's tenth question is on their local today, which is tomorrow in UTC.
    answer_on_days(east, [TODAY, east_today], questions[:10], per_day=5)
    answer_on_days(west, [TODAY], questions[10:20], per_day=10)
    rollup(east, west)

    assert achievements_detect([east.pk, west.pk], now=NOW) == 2
    rows = {r.student_id: r for r in StudentAchievement.objects.all()}
    assert (rows[east.pk].earned_at, rows[east.pk].earned_on) == (NOW, east_today)
    assert (rows[west.pk].earned_at, rows[west.pk].earned_on) == (NOW, west_today)
    assert {r.pk for r in achievements_to_announce(now=NOW)} == {r.pk for r in rows.values()}
    # A dated run as of today never dates an achievement after now.
    StudentAchievement.objects.all().delete()
    achievements_detect([west.pk], now=NOW, as_of=TODAY)
    assert StudentAchievement.objects.get().earned_at == NOW


def test_the_announcement_window_and_claiming_once(catalogue, student):
    definitions = {a.code: a for a in Achievement.objects.all()}

    def row(code, hours_ago, **extra):
        return StudentAchievement.objects.create(
            student=student, achievement=definitions[code],
            earned_at=NOW - datetime.timedelta(hours=hours_ago), earned_on=TODAY, **extra)

    inside, edge = row("streak-3", 47), row("streak-7", 48)
    row("streak-30", 49)                               # too old
    row("questions-10", 1, withdrawn_at=NOW)            # withdrawn
    row("questions-100", 1, announced_at=NOW)           # already announced
    row("questions-1000", -1)                           # not yet (earned after now)

    with CaptureQueriesContext(connection) as ctx:
        due = [(r.pk, r.student.email, r.achievement.title, r.subject)
               for r in achievements_to_announce(now=NOW)]
    assert len(ctx.captured_queries) == 1  # everything an email needs, in one query
    assert due == [(edge.pk, student.email, "A full week", None),
                   (inside.pk, student.email, "Three in a row", None)]

    assert achievements_mark_announced([inside.pk, edge.pk], now=NOW) == 2
    assert achievements_mark_announced([inside.pk, edge.pk], now=NOW + DAY) == 0
    assert not achievements_to_announce(now=NOW).exists()
    inside.refresh_from_db()
    assert inside.announced_at == NOW  # the first claim stands
    assert achievements_mark_announced([], now=NOW) == 0

    assert [r.achievement.code for r in student_achievements(student)] == [
        "questions-1000", "questions-100", "streak-3", "streak-7", "streak-30"]
    assert len(student_achievements(student, include_withdrawn=True)) == 6


# --- Query counts and a random population ---------------------------------------------------


def _population(n: int, questions, *, offset: int = 0) -> list:
    zones = ["Europe/London", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata"]
    students = [make_student(f"p{offset + i}", zones[i % len(zones)]) for i in range(n)]
    for i, student in enumerate(students):
        answer_on_days(student, days_before(TODAY, 4), questions[12 * i:12 * i + 12],
                       right=lambda k: k % 5 > 0, per_day=3)
    rollup(*students)
    return students


def _queries(**kwargs) -> int:
    with CaptureQueriesContext(connection) as ctx:
        achievements_detect(now=NOW, **kwargs)
    return len(ctx.captured_queries)


def test_the_query_count_does_not_grow_with_the_students(catalogue, monkeypatch,
                                                         django_assert_max_num_queries):
    questions = make_questions("MATH", 12 * 24)
    small = _population(2, questions)
    large = _population(10, questions[24:], offset=100)
    per_chunk = len(achievements.KINDS) + 2  # a statement per kind, in a savepoint

    assert _queries(student_ids=[s.pk for s in small]) == 1 + per_chunk  # + the time zones
    StudentAchievement.objects.all().delete()
    with django_assert_max_num_queries(1 + per_chunk):
        achievements_detect([s.pk for s in large], now=NOW)
    assert StudentAchievement.objects.count() == 10 * 2  # streak-3, questions-10
    # Every student: the ids, the time zones, and a chunk; four chunks of 3 for 12 students.
    StudentAchievement.objects.all().delete()
    assert _queries(student_ids=None) == 2 + per_chunk
    StudentAchievement.objects.all().delete()
    monkeypatch.setattr(achievements, "CHUNK_SIZE", 3)
    assert _queries(student_ids=None) == 2 + 4 * per_chunk
    assert StudentAchievement.objects.count() == 12 * 2
    with CaptureQueriesContext(connection) as ctx:
        achievements_withdraw_invalid([s.pk for s in small + large], now=NOW)
    assert len(ctx.captured_queries) == 1 + 4 * per_chunk
    assert StudentAchievement.objects.filter(withdrawn_at__isnull=False).count() == 0
    assert achievements_detect([], now=NOW) == 0


def test_a_random_population_matches_a_python_computation(catalogue, monkeypatch):
    rng = random.Random(20260310)
    math = make_questions("MATH", 300, topics=["algebra", "calculus", "geometry", "statistics",
                                               None])
    phys = make_questions("PHYS", 120)
    zones = ["Europe/London", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata",
             "America/New_York"]
    students = [make_student(f"r{i}", zones[i % len(zones)]) for i in range(14)]
    for student in students:
        skill = rng.choice([0.6, 0.8, 0.9, 0.97])
        bank = rng.choice([math, phys, math + phys])
        day, answers = TODAY - 120 * DAY, []
        while day <= TODAY:
            if rng.random() < 0.75:
                for _ in range(rng.randrange(1, 8)):
                    when = local_noon(student, day, rng.randrange(-36000, 36000))
                    if when <= NOW:
                        answers.append((rng.choice(bank), rng.random() < skill, when))
            day += DAY * rng.choice([1, 1, 1, 2, 3])
        answer(student, answers)
    rollup(*students)
    monkeypatch.setattr(achievements, "CHUNK_SIZE", 5)

    # Live: each student's local date at NOW.
    achievements_detect(None, now=NOW)
    local = {s.pk: NOW.astimezone(s.profile.zone).date() for s in students}
    expected = reference(local)
    assert held() == pytest.approx({k: v for k, (v, _) in expected.items()})
    # Every kind is exercised, each earned by some students and not by others.
    for kind in ("streak-7", "questions-100", "accuracy-80", "subject-mastery"):
        earners = {k[0] for k in expected if k[1] == kind}
        assert 0 < len(earners) < len(students), kind

    # Dated, as of 50 days ago, from scratch: earned_on is the first date each held.
    StudentAchievement.objects.all().delete()
    as_of = TODAY - 50 * DAY
    achievements_detect(None, now=NOW, as_of=as_of)
    expected = reference({s.pk: as_of for s in students})
    got = {(r.student_id, r.achievement.code, r.subject.code if r.subject else None):
           (r.value, r.earned_on)
           for r in StudentAchievement.objects.select_related("achievement", "subject")}
    assert got.keys() == expected.keys()
    for key, (value, first_on) in expected.items():
        assert got[key] == (pytest.approx(value), first_on), key
    assert not achievements_to_announce(now=NOW).exists()
