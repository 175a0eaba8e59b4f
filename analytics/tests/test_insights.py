"""Insights (analytics/insights.py): exact figures on crafted histories, each checked against a
computation written here independently (plain Python recurrences, numpy), the time-zone rule,
the due list, and query counts that do not grow with the number of students."""

import datetime as dt
import math
import zoneinfo

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from analytics import insights
from analytics.models import DailyStudentStats, StudentInsight
from core.models import Attempt, Topic
from core.services import student_create
from core.tests.factories import make_question

UTC = dt.UTC
# At NOW, a Europe/London student's last closed day is AS_OF (GMT in March, before DST).
NOW = dt.datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
AS_OF = dt.date(2026, 3, 9)
M = 0.5 ** (1 / 13)  # Loop Habit Tracker's multiplier for a daily habit, written out again

pytestmark = pytest.mark.django_db


# --- Building histories -----------------------------------------------------------------------


_emails = iter(range(1, 10_000))


def new_student(zone="Europe/London"):
    return student_create(email=f"s{next(_emails)}@example.com", timezone_name=zone).user


def put_days(student, days):
    """DailyStudentStats rows as a rollup would write them: {date: (attempts, correct, minutes)}."""
    DailyStudentStats.objects.bulk_create([
        DailyStudentStats(student=student, date=day, attempts=attempts, correct=correct,
                          accuracy=correct / attempts, time_spent_ms=round(minutes * 60_000),
                          distinct_questions=attempts, first_attempts=attempts, sessions=1,
                          updated_at=NOW)
        for day, (attempts, correct, minutes) in days.items()])


def add_attempts(student, answers, time_ms=30_000):
    """Attempt rows for [(question, local_date, is_correct), ...], answered at local noon, each
    numbered after the student's earlier tries at the question."""
    zone = student.profile.zone
    numbers = dict(Attempt.objects.filter(student=student).order_by().values("question")
                   .annotate(n=Max("attempt_number")).values_list("question", "n"))
    rows = []
    for question, day, correct in answers:
        numbers[question.pk] = numbers.get(question.pk, 0) + 1
        answered_at = dt.datetime.combine(day, dt.time(12), tzinfo=zone).astimezone(UTC)
        rows.append(Attempt(student=student, question=question, is_correct=correct,
                            time_taken_ms=time_ms, answered_at=answered_at,
                            local_date=answered_at.astimezone(zone).date(),
                            attempt_number=numbers[question.pk]))
    Attempt.objects.bulk_create(rows)


def rollup(students):
    """DailyStudentStats from the students' attempts, aggregated here with the ORM."""
    rows = (Attempt.objects.filter(student__in=students).order_by()
            .values("student_id", "local_date")
            .annotate(n=Count("id"), k=Count("id", filter=Q(is_correct=True)),
                      ms=Sum("time_taken_ms"), questions=Count("question", distinct=True),
                      first=Count("id", filter=Q(attempt_number=1))))
    DailyStudentStats.objects.filter(student__in=students).delete()
    DailyStudentStats.objects.bulk_create([
        DailyStudentStats(student_id=r["student_id"], date=r["local_date"], attempts=r["n"],
                          correct=r["k"], accuracy=r["k"] / r["n"], time_spent_ms=r["ms"],
                          distinct_questions=r["questions"], first_attempts=r["first"],
                          sessions=0, updated_at=NOW)
        for r in rows])


def insight_of(student, now=NOW):
    assert insights.insights_compute([student.pk], now=now) == 1
    return StudentInsight.objects.get(student=student)


def ago(days):
    return AS_OF - dt.timedelta(days=days)


# --- Independent computations -----------------------------------------------------------------


def streaks_by_hand(dates, as_of):
    days = sorted(d for d in set(dates) if d <= as_of)
    longest = run = 0
    for previous, day in zip([None, *days], days, strict=False):
        run = run + 1 if previous is not None and (day - previous).days == 1 else 1
        longest = max(longest, run)
    current, day = 0, as_of
    while day in days:
        current, day = current + 1, day - dt.timedelta(days=1)
    return current, longest


def habit_by_hand(dates, as_of):
    """Loop Habit Tracker's recurrence, day by day from the first active day."""
    active = set(dates)
    score, day = 0.0, min(active)
    while day <= as_of:
        score = score * M + (1.0 if day in active else 0.0) * (1 - M)
        day += dt.timedelta(days=1)
    return 100 * score


def wilson_by_hand(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# --- Streaks, active days, habit strength -----------------------------------------------------


def test_streaks_across_a_gap_longest_and_current(catalogue):
    student = new_student()
    long_run = [dt.date(2026, 2, 1) + dt.timedelta(days=i) for i in range(5)]
    short_run = [ago(2), ago(1), ago(0)]
    today_open = [AS_OF + dt.timedelta(days=1)]  # London's 10 March is still open at NOW
    put_days(student, dict.fromkeys(long_run + short_run + today_open, (5, 3, 10)))

    insight = insight_of(student)
    assert insight.as_of == AS_OF
    assert (insight.current_streak, insight.longest_streak) == (3, 5)
    assert streaks_by_hand(long_run + short_run + today_open, AS_OF) == (3, 5)
    assert insight.active_days_30 == 3  # 1-5 February is more than 30 days before 9 March

    # A day missed at as_of ends the current streak but not the longest.
    lapsed = new_student()
    put_days(lapsed, dict.fromkeys(long_run + [ago(3), ago(2), ago(1)], (5, 3, 10)))
    insight = insight_of(lapsed)
    assert (insight.current_streak, insight.longest_streak) == (0, 5)
    assert streaks_by_hand(long_run + [ago(3), ago(2), ago(1)], AS_OF) == (0, 5)

    # Never active: a row of zeros.
    idle = insight_of(new_student())
    assert (idle.current_streak, idle.longest_streak, idle.active_days_30) == (0, 0, 0)
    assert idle.habit_strength == 0 and idle.consistency == 0
    assert idle.trend is None and idle.slope_per_week is None


def test_habit_strength_decays_on_missed_days_without_resetting(catalogue):
    student = new_student()
    # Twenty days on, three days off (6-8 March), then 9 March on again.
    on = [dt.date(2026, 2, 14) + dt.timedelta(days=i) for i in range(20)]  # 14 Feb - 5 Mar
    put_days(student, dict.fromkeys(on, (4, 2, 10)))

    def as_of(day):  # a `now` whose London closed day is `day`
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(9), tzinfo=UTC)

    before = insight_of(student, now=as_of(dt.date(2026, 3, 5))).habit_strength
    after_miss = insight_of(student, now=as_of(dt.date(2026, 3, 8))).habit_strength
    assert before == pytest.approx(habit_by_hand(on, dt.date(2026, 3, 5)), rel=1e-12)
    assert after_miss == pytest.approx(habit_by_hand(on, dt.date(2026, 3, 8)), rel=1e-12)
    assert after_miss == pytest.approx(before * M ** 3, rel=1e-12)  # decayed, three times
    assert 0 < after_miss < before and after_miss > 40  # not reset

    put_days(student, {AS_OF: (4, 2, 10)})
    back = insight_of(student)
    assert back.habit_strength == pytest.approx(habit_by_hand([*on, AS_OF], AS_OF), rel=1e-12)
    assert back.habit_strength == pytest.approx(after_miss * M + 100 * (1 - M), rel=1e-12)
    assert (back.current_streak, back.longest_streak) == (1, 20)


# --- Consistency --------------------------------------------------------------------------------


def test_consistency_needs_seven_active_days_then_is_100_minus_cv(catalogue):
    student = new_student()
    minutes = [12, 30, 18, 25, 40, 9]
    put_days(student, {ago(i * 4): (10, 5, m) for i, m in enumerate(minutes)})
    put_days(student, {ago(30): (10, 5, 500)})  # just outside the 30 days: ignored
    insight = insight_of(student)
    assert insight.active_days_30 == 6
    assert insight.consistency == 0  # six active days: 0, whatever the minutes

    put_days(student, {ago(27): (10, 5, 21)})
    minutes.append(21)
    insight = insight_of(student)
    assert insight.active_days_30 == 7
    values = np.array(minutes, dtype=float)
    expected = max(0.0, 100 - 100 * values.std(ddof=0) / values.mean())
    assert insight.consistency == pytest.approx(expected, rel=1e-9)
    assert 50 < insight.consistency < 70

    erratic = new_student()
    put_days(erratic, {ago(i): (10, 5, 1 if i else 200) for i in range(7)})
    values = np.array([200, 1, 1, 1, 1, 1, 1], dtype=float)
    assert values.std() / values.mean() > 1  # so the formula goes below zero, and stops at it
    assert insight_of(erratic).consistency == 0


# --- Trend and slope ---------------------------------------------------------------------------


def test_trend_only_with_twenty_attempts_in_each_week(catalogue):
    student = new_student()
    put_days(student, {ago(0): (12, 9, 10), ago(6): (10, 8, 10),       # last 7: 17 of 22
                       ago(7): (10, 5, 10), ago(13): (9, 4, 10),       # previous 7: 9 of 19
                       ago(14): (30, 0, 10)})                          # before both: ignored
    insight = insight_of(student)
    assert insight.accuracy_7 == pytest.approx(17 / 22)
    assert insight.accuracy_prev_7 == pytest.approx(9 / 19)
    assert insight.trend is None  # 19 attempts in the previous week

    put_days(student, {ago(10): (1, 1, 10)})  # now 10 of 20
    insight = insight_of(student)
    assert insight.accuracy_prev_7 == pytest.approx(10 / 20)
    assert insight.trend == pytest.approx(17 / 22 - 10 / 20, abs=1e-12)


def test_slope_is_the_attempt_weighted_least_squares_slope(catalogue):
    student = new_student()
    history = {29: (40, 10), 25: (5, 5), 20: (12, 3), 14: (30, 18), 9: (8, 6),
               5: (50, 35), 2: (3, 0), 0: (20, 17)}
    put_days(student, {ago(days): (n, k, 15) for days, (n, k) in history.items()})
    put_days(student, {ago(30): (100, 100, 15)})  # outside the 30-day window
    insight = insight_of(student)

    x = np.array([-days for days in history], dtype=float)
    attempts = np.array([n for n, _ in history.values()], dtype=float)
    accuracy = np.array([100 * k / n for n, k in history.values()])
    slope_per_day = np.polyfit(x, accuracy, 1, w=np.sqrt(attempts))[0]
    assert insight.slope_per_week == pytest.approx(7 * slope_per_day, rel=1e-9)
    # The closed form too: Σw(x - x̄)(y - ȳ) / Σw(x - x̄)², with weighted means.
    x_bar, y_bar = np.average(x, weights=attempts), np.average(accuracy, weights=attempts)
    closed = (attempts * (x - x_bar) * (accuracy - y_bar)).sum() / (attempts * (x - x_bar) ** 2).sum()
    assert insight.slope_per_week == pytest.approx(7 * closed, rel=1e-9)

    two_days = new_student()
    put_days(two_days, {ago(3): (10, 2, 15), ago(0): (10, 9, 15)})
    assert insight_of(two_days).slope_per_week is None  # fewer than 3 active days


# --- Topics: strengths and weaknesses ----------------------------------------------------------


def topic_questions(subject, slug, count):
    topic = Topic.objects.get(subject__code=subject, slug=slug)
    return [make_question(subject_code=subject, topic=topic) for _ in range(count)]


def answers(questions, right, days):
    """First tries at `questions`, the first `right` of them correct, spread over `days` ago."""
    return [(q, ago(days[i % len(days)]), i < right) for i, q in enumerate(questions)]


@pytest.fixture
def topic_history(catalogue, settings):
    """A student's first tries by topic (right, of n) in the 90-day window, with noise the
    insights must ignore. Returns (student, {slug: (right, n)})."""
    settings.ANALYTICS_TOPIC_MIN_ATTEMPTS = 10
    settings.ANALYTICS_TOPIC_TARGET_ACCURACY = 0.7
    settings.ANALYTICS_TOPIC_WINDOW_DAYS = 90
    settings.ANALYTICS_INSIGHT_TOPICS = 3
    student = new_student()
    counted = {("MATH", "algebra"): (26, 40), ("MATH", "calculus"): (6, 10),
               ("MATH", "geometry"): (0, 9), ("PHYS", "mechanics"): (36, 40),
               ("PHYS", "optics"): (10, 10), ("PHYS", "thermodynamics"): (9, 12),
               ("CS", "algorithms"): (7, 10)}  # exactly on the target: strong
    questions = {}
    for (subject, slug), (right, n) in counted.items():
        questions[slug] = topic_questions(subject, slug, n)
        add_attempts(student, answers(questions[slug], right, days=[0, 1, 5, 30, 89]))
    # Noise: second tries (wrong) at algebra and mechanics; first tries outside the window
    # (90 days before as_of) and after it (today, still open); questions without a topic.
    add_attempts(student, [(q, ago(0), False) for q in questions["algebra"][:26]])
    add_attempts(student, [(q, ago(0), False) for q in questions["mechanics"][:36]])
    add_attempts(student, answers(topic_questions("PHYS", "optics", 10), 0, days=[90]))
    add_attempts(student, answers(topic_questions("MATH", "geometry", 10), 0, days=[-1]))
    no_topic = [make_question(subject_code="MATH") for _ in range(15)]
    add_attempts(student, answers(no_topic, 0, days=[2]))
    rollup([student])
    return student, {slug: value for (_, slug), value in counted.items()}


def test_strengths_and_weaknesses_ranked_by_wilson_bounds(topic_history):
    student, counted = topic_history
    insight = insight_of(student)

    def expected(slug):
        right, n = counted[slug]
        lower, upper = wilson_by_hand(right, n)
        return right, n, lower, upper

    # By hand: the target accuracy separates strong from weak; strengths by lower bound
    # descending, weaknesses by upper bound ascending; fewer than 10 attempts: neither.
    eligible = [slug for slug, (_, n) in counted.items() if n >= 10]
    strong = sorted((s for s in eligible if counted[s][0] / counted[s][1] >= 0.7),
                    key=lambda s: -expected(s)[2])
    weak = sorted((s for s in eligible if counted[s][0] / counted[s][1] < 0.7),
                  key=lambda s: expected(s)[3])
    assert strong == ["mechanics", "optics", "thermodynamics", "algorithms"]  # 90 % of 40 first
    assert weak == ["algebra", "calculus"]  # 65 % of 40 is surer than 60 % of 10
    slug_of = {t.pk: t.slug for t in Topic.objects.all()}
    assert [slug_of[t["topic_id"]] for t in insight.strengths] == strong[:3]  # the best three
    assert [slug_of[t["topic_id"]] for t in insight.weaknesses] == weak
    assert "geometry" not in [slug_of[t["topic_id"]] for t in insight.weaknesses]  # 0 of 9

    for item in insight.strengths + insight.weaknesses:
        right, n, lower, upper = expected(slug_of[item["topic_id"]])
        assert set(item) == {"topic_id", "topic", "subject", "subject_name", "attempts",
                             "correct", "accuracy", "wilson_lower", "wilson_upper"}
        assert (item["correct"], item["attempts"]) == (right, n)
        assert item["accuracy"] == pytest.approx(right / n, abs=5e-5)
        assert item["wilson_lower"] == pytest.approx(lower, abs=5e-5)
        assert item["wilson_upper"] == pytest.approx(upper, abs=5e-5)
        # Each Wilson bound solves (p - b)² = z² b(1 - b) / n: checked without the formula.
        for bound in (lower, upper):
            assert (right / n - bound) ** 2 == pytest.approx(1.96 ** 2 * bound * (1 - bound) / n)
    assert insight.weaknesses[0] == {
        "topic_id": Topic.objects.get(slug="algebra").pk, "topic": "Algebra",
        "subject": "MATH", "subject_name": "Mathematics", "attempts": 40, "correct": 26,
        "accuracy": 0.65, "wilson_lower": round(expected("algebra")[2], 4),
        "wilson_upper": round(expected("algebra")[3], 4)}


def test_topic_settings_limit_and_filter(topic_history, settings):
    student, _ = topic_history
    settings.ANALYTICS_INSIGHT_TOPICS = 1
    insight = insight_of(student)
    assert [t["topic"] for t in insight.strengths] == ["Mechanics"]
    assert [t["topic"] for t in insight.weaknesses] == ["Algebra"]

    settings.ANALYTICS_INSIGHT_TOPICS = 3
    settings.ANALYTICS_TOPIC_MIN_ATTEMPTS = 20  # only the two topics with 40 first tries
    insight = insight_of(student)
    assert [t["topic"] for t in insight.strengths] == ["Mechanics"]
    assert [t["topic"] for t in insight.weaknesses] == ["Algebra"]

    settings.ANALYTICS_TOPIC_MIN_ATTEMPTS = 9  # now geometry's 0 of 9 counts, and is weakest
    insight = insight_of(student)
    assert [t["topic"] for t in insight.weaknesses] == ["Geometry", "Algebra", "Calculus"]

    settings.ANALYTICS_TOPIC_MIN_ATTEMPTS = 10
    settings.ANALYTICS_TOPIC_WINDOW_DAYS = 30  # 1-30 days ago: the tries 89 days ago drop out
    insight = insight_of(student)
    algebra = next(t for t in insight.weaknesses if t["topic"] == "Algebra")
    # answers() put try i on days [0, 1, 5, 30, 89][i % 5]: 24 of the 40 are within 29 days.
    assert algebra["attempts"] == sum(1 for i in range(40) if i % 5 < 3)


# --- Recommendations ---------------------------------------------------------------------------


def test_recommendations_from_the_figures(topic_history, settings):
    settings.ANALYTICS_MOVE_UP_ACCURACY = 0.85
    settings.ANALYTICS_MOVE_UP_MIN_ATTEMPTS = 20
    student, _ = topic_history
    # The daily figures are their own input: replace the rolled-up days with a regular habit.
    DailyStudentStats.objects.filter(student=student).delete()
    regular = {ago(i): (30, 27 if i < 7 else 15, 20) for i in range(30)}
    put_days(student, regular)
    insight = insight_of(student)
    assert insight.habit_strength == pytest.approx(habit_by_hand(regular, AS_OF))
    assert insight.habit_strength >= 50
    codes = [r["code"] for r in insight.recommendations]
    assert codes == ["review_topic", "review_topic", "move_up"]
    algebra, calculus, move_up = insight.recommendations
    assert algebra["text"] == ("Review Algebra (Mathematics): you got 26 of 40 right on first "
                               "tries (65%).")
    assert (algebra["topic"], algebra["subject"], algebra["attempts"]) == ("Algebra", "MATH", 40)
    assert calculus["topic"] == "Calculus"
    assert move_up["attempts"] == 7 * 30 and move_up["accuracy"] == pytest.approx(0.9)
    assert move_up["text"] == "Move up in difficulty: you got 90% of 210 answers right in the last 7 days."

    settings.ANALYTICS_MOVE_UP_ACCURACY = 0.95
    assert "move_up" not in [r["code"] for r in insight_of(student).recommendations]

    occasional = new_student()
    put_days(occasional, {ago(0): (10, 10, 5), ago(3): (9, 9, 5)})  # 19 tries, all right
    insight = insight_of(occasional)
    assert insight.habit_strength == pytest.approx(habit_by_hand([ago(3), ago(0)], AS_OF))
    assert insight.habit_strength < 50
    assert insight.recommendations == [{
        "code": "study_more",
        "text": "Practise a little every day: you practised on 2 of the last 30 days.",
        "active_days_30": 2, "habit_strength": round(insight.habit_strength, 1),
        "current_streak": 1}]  # and no move_up: 19 tries are fewer than 20


# --- Time zones and the due list ---------------------------------------------------------------


def test_last_closed_day_follows_each_students_time_zone(catalogue):
    zones = {"Pacific/Kiritimati": dt.date(2026, 3, 10), "Europe/London": dt.date(2026, 3, 9),
             "Pacific/Pago_Pago": dt.date(2026, 3, 8)}
    students = {}
    for zone, closed in zones.items():
        assert insights.last_closed_day(zone, NOW) == closed
        assert NOW.astimezone(zoneinfo.ZoneInfo(zone)).date() - dt.timedelta(days=1) == closed
        students[zone] = new_student(zone)
        # Active on their local 10 March and the day before it.
        put_days(students[zone], {dt.date(2026, 3, 9): (5, 4, 10), dt.date(2026, 3, 10): (5, 4, 10)})
    assert insights.insights_compute([s.pk for s in students.values()], now=NOW) == 3
    rows = {r.student_id: r for r in StudentInsight.objects.all()}
    for zone, closed in zones.items():
        row = rows[students[zone].pk]
        assert row.as_of == closed
        assert row.computed_at == NOW
    # Kiritimati's 10 March has closed (two days of streak); London's is still open (one);
    # in Pago Pago it is still 9 March, so nothing has closed since the 8th (none).
    assert [rows[students[z].pk].current_streak for z in zones] == [2, 1, 0]


def test_insights_due_picks_each_student_once_as_their_day_closes(catalogue):
    kiritimati, london, pago = (new_student(z) for z in
                                ("Pacific/Kiritimati", "Europe/London", "Pacific/Pago_Pago"))
    for student in (kiritimati, london, pago):
        put_days(student, {dt.date(2026, 3, 1): (5, 4, 10)})
    new_student()  # never active: never due
    late = new_student()  # first active on London's 10 March, still open at NOW
    put_days(late, {dt.date(2026, 3, 10): (5, 4, 10)})

    def due(at):
        return insights.insights_due(at)

    assert due(NOW) == sorted([kiritimati.pk, london.pk, pago.pk])
    assert insights.insights_refresh(NOW) == 3
    assert due(NOW) == [] and due(NOW + dt.timedelta(minutes=29)) == []
    # 11:00 UTC is midnight in Pago Pago (UTC-11): their 9 March has closed.
    assert due(dt.datetime(2026, 3, 10, 10, 59, tzinfo=UTC)) == []
    eleven = dt.datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    assert due(eleven) == [pago.pk]
    assert insights.insights_refresh(eleven) == 1
    assert StudentInsight.objects.get(student=pago).as_of == dt.date(2026, 3, 9)
    assert due(eleven) == [] and due(dt.datetime(2026, 3, 10, 23, 59, tzinfo=UTC)) == []
    # Midnight in London: their 10 March closes; the late starter now has a closed active day.
    midnight = dt.datetime(2026, 3, 11, 0, 0, tzinfo=UTC)
    assert due(midnight) == sorted([london.pk, late.pk])
    assert insights.insights_refresh(midnight) == 2
    assert due(midnight) == []
    # Midnight in Kiritimati (UTC+14) on 12 March: their 11 March closes.
    assert due(dt.datetime(2026, 3, 11, 9, 59, tzinfo=UTC)) == []
    assert due(dt.datetime(2026, 3, 11, 10, 0, tzinfo=UTC)) == [kiritimati.pk]


# --- Scale: queries per chunk, idempotency ----------------------------------------------------


def make_students(count, questions, start=0):
    """Students with different regular histories: student i skips every day whose number is
    a multiple of (i % 4) + 2, and answers the questions on the last day."""
    made = {}
    for i in range(start, start + count):
        student = new_student(["Europe/London", "Pacific/Kiritimati", "America/Anchorage"][i % 3])
        step = i % 4 + 2
        dates = [ago(d) for d in range(-3, 40) if d % step]
        put_days(student, {day: (10, 4 + i % 6, 10 + d) for d, day in enumerate(dates)})
        add_attempts(student, [(q, ago(0), j < 3 + i % 8) for j, q in enumerate(questions)])
        made[student.pk] = dates
    return made


def test_queries_per_chunk_do_not_grow_with_students(catalogue, settings,
                                                     django_assert_max_num_queries, monkeypatch):
    settings.ANALYTICS_TOPIC_MIN_ATTEMPTS = 10
    questions = topic_questions("CS", "algorithms", 12)
    history = make_students(3, questions)
    with django_assert_max_num_queries(4):
        assert insights.insights_compute(list(history), now=NOW) == 3
    history |= make_students(15, questions, start=3)
    with django_assert_max_num_queries(4):
        assert insights.insights_compute(list(history), now=NOW) == 18
    with django_assert_max_num_queries(2):
        assert insights.insights_due(NOW) == []

    later = NOW + dt.timedelta(days=2)
    monkeypatch.setattr(insights, "CHUNK_SIZE", 5)  # 18 students: 4 chunks of 4 queries
    with django_assert_max_num_queries(2 + 4 * 4):
        assert insights.insights_refresh(later) == 18
    with django_assert_max_num_queries(4 * 4):
        assert insights.insights_compute(None, now=later) == 18

    # The figures are each student's own, checked against the plain Python computations.
    for row in StudentInsight.objects.select_related("student__profile"):
        as_of = insights.last_closed_day(row.student.profile.timezone, later)
        assert row.as_of == as_of
        assert (row.current_streak, row.longest_streak) == streaks_by_hand(
            history[row.student_id], as_of)
        assert row.habit_strength == pytest.approx(
            habit_by_hand(history[row.student_id], as_of), rel=1e-9)
        first_tries = Attempt.objects.filter(student=row.student, attempt_number=1)
        right = first_tries.filter(is_correct=True).count()
        listed = row.strengths if right / 12 >= 0.7 else row.weaknesses
        assert [(t["correct"], t["attempts"]) for t in listed] == [(right, 12)]


def test_compute_is_idempotent_and_covers_every_profile(catalogue):
    students = [new_student() for _ in range(3)]
    for student in students:
        put_days(student, {ago(1): (5, 4, 10), ago(0): (6, 3, 12)})
    get_user_model().objects.create_user(email="staff@example.com", is_staff=True)  # no profile
    assert insights.insights_compute(now=NOW) == 3
    first = list(StudentInsight.objects.order_by("student_id").values())
    later = NOW + dt.timedelta(minutes=5)
    assert insights.insights_compute(now=later) == 3
    second = list(StudentInsight.objects.order_by("student_id").values())
    assert len(second) == 3
    assert [row | {"computed_at": None} for row in first] == [
        row | {"computed_at": None} for row in second]
    assert {row["computed_at"] for row in second} == {later}
    assert second[0]["current_streak"] == 2 and second[0]["accuracy_7"] == pytest.approx(7 / 11)
    assert insights.insights_compute([], now=NOW) == 0
    assert timezone.is_aware(second[0]["computed_at"])
