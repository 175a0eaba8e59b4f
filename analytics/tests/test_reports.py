"""Stored reports (analytics/reports.py, analytics/charts.py): figures checked against plain
Python over the same rows (ISO weeks across New Year, the admin's daily figures), the
week-closed rule per time zone, the admin schedule, idempotent rebuilds, escaping, the PNG, and
query counts that do not grow with the number of students."""

import base64
import datetime as dt
import io
import random
import re
import zoneinfo
from collections import defaultdict

import pytest
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from PIL import Image

from analytics import charts, reports
from analytics.models import QuestionStats, Report
from core.models import Attempt, JobRun, PracticeSession, Question, QuestionStep
from core.services import student_create
from core.tests.factories import make_question

UTC = dt.UTC
pytestmark = pytest.mark.django_db

# ISO week 1 of 2026 runs from Monday 2025-12-29 to Sunday 2026-01-04.
W01 = dt.date(2025, 12, 29)


@pytest.fixture(autouse=True)
def _catalogue(catalogue):
    """Subjects for make_question."""


_emails = iter(range(1, 100_000))


def new_student(zone="Europe/London", **names):
    return student_create(email=f"r{next(_emails)}@example.com", timezone_name=zone,
                          **names).user


def add_attempts(student, answers):
    """Attempt rows for [(question, answered_at (UTC), is_correct, time_ms, session), ...]:
    local_date in the student's zone, numbered per question in order of answered_at after the
    student's earlier tries. Returns them as plain dicts, for the independent computations."""
    zone = student.profile.zone
    numbers = dict(Attempt.objects.filter(student=student).order_by().values("question")
                   .annotate(n=Max("attempt_number")).values_list("question", "n"))
    objects, plain = [], []
    for question, at, correct, ms, session in sorted(answers, key=lambda a: a[1]):
        numbers[question.pk] = numbers.get(question.pk, 0) + 1
        local = at.astimezone(zone).date()
        objects.append(Attempt(student=student, question=question, is_correct=correct,
                               time_taken_ms=ms, answered_at=at, local_date=local,
                               attempt_number=numbers[question.pk], session=session))
        plain.append({"student": student.pk, "question": question.pk,
                      "subject": question.subject.code, "subject_name": question.subject.name,
                      "local": local, "correct": correct, "ms": ms,
                      "session": session.pk if session else None,
                      "number": numbers[question.pk]})
    Attempt.objects.bulk_create(objects)
    return plain


def figures_by_hand(rows):
    n = len(rows)
    k = sum(r["correct"] for r in rows)
    return n, k, (k / n if n else None), sum(r["ms"] for r in rows)


# --- Charts -----------------------------------------------------------------------------------


DAYS = [W01 + dt.timedelta(days=n) for n in range(7)]


def test_chart_is_a_png_of_600_by_300_without_metadata():
    png = charts.activity_chart_png(DAYS, [3, 0, 12, 5, 40, 8, 1],
                                    [66.7, None, 50, 100, 72.5, 0, 100], title="A week")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (600, 300)
    assert not {"Software", "Creation Time", "date:create"} & set(image.info)
    image.load()  # decodes whole: a truncated file raises here


def test_chart_is_deterministic_and_a_reused_figure_draws_what_a_new_one_does():
    a = (DAYS, [3, 0, 12, 5, 40, 8, 1], [66.7, None, 50, 100, 72.5, 0, 100])
    b = (DAYS, [0] * 7, [None] * 7)
    first = charts.activity_chart_png(*a, title="A")
    # Same title and days: drawn on the kept background; then a new background.
    assert charts.activity_chart_png(*b, title="A") != first
    assert charts.activity_chart_png(*a, title="A") == first
    charts.activity_chart_png(*b, title="B, with another scale")
    charts.activity_chart_png(DAYS * 2, list(range(14)), [50] * 14, title="Fourteen days")
    assert charts.activity_chart_png(*a, title="A") == first
    charts._forget_templates()
    assert charts.activity_chart_png(*a, title="A") == first
    assert charts.activity_chart_png(*a, title="A2") != first
    assert charts.activity_chart_png(DAYS, [3, 0, 12, 5, 41, 8, 1], a[2], title="A") != first


@pytest.mark.parametrize("args", [
    ([], [], []),
    (DAYS, [1] * 6, [None] * 7),
    (DAYS, [1] * 7, [None] * 6),
    (DAYS, [-1] + [1] * 6, [None] * 7),
    (DAYS, [1] * 7, [101] + [None] * 6),
])
def test_chart_refuses_bad_input(args):
    with pytest.raises(ValueError):
        charts.activity_chart_png(*args, title="x")


# --- Student reports: figures -----------------------------------------------------------------


def test_weekly_report_figures_across_new_year():
    """A Pacific/Kiritimati (UTC+14) student: local dates, not UTC ones, put an answer in a week;
    ISO week 1 of 2026 starts on 2025-12-29. Every figure is recomputed here from the rows."""
    student = new_student("Pacific/Kiritimati", first_name="Ana", last_name="Kiri")
    zone = zoneinfo.ZoneInfo("Pacific/Kiritimati")
    questions = ([make_question(subject_code="MATH") for _ in range(4)]
                 + [make_question(subject_code="PHYS") for _ in range(3)])
    sessions = [PracticeSession.objects.create(student=student) for _ in range(3)]
    rng = random.Random(7)
    answers = []
    start = dt.datetime(2025, 12, 20, tzinfo=UTC)
    for _ in range(160):
        at = start + dt.timedelta(minutes=rng.randrange(0, 20 * 24 * 60))
        answers.append((rng.choice(questions), at, rng.random() < 0.6,
                        rng.randrange(1_000, 90_000), rng.choice([*sessions, None])))
    # On the edges: 2025-12-28 10:30 UTC is 2025-12-29 00:30 in Kiritimati (week 1), and
    # 2026-01-04 09:59 UTC is 23:59 on Sunday 2026-01-04 there (week 1), 10:00 is week 2.
    answers += [(questions[0], dt.datetime(2025, 12, 28, 10, 30, tzinfo=UTC), True, 5000, None),
                (questions[5], dt.datetime(2026, 1, 4, 9, 59, tzinfo=UTC), False, 7000, None),
                (questions[6], dt.datetime(2026, 1, 4, 10, 0, tzinfo=UTC), True, 9000, None)]
    rows = add_attempts(student, answers)
    now = dt.datetime(2026, 1, 10, tzinfo=UTC)

    assert reports.student_weekly_reports_build([student.pk], iso_year=2026, iso_week=1,
                                                now=now) == 1
    report = Report.objects.get(kind=Report.Kind.STUDENT_WEEKLY, student=student)
    assert (report.period_start, report.period_end, report.label) == (
        dt.date(2025, 12, 29), dt.date(2026, 1, 4), "2026-W01")
    data = report.data

    week = [r for r in rows if r["local"].isocalendar()[:2] == (2026, 1)]
    before = [r for r in rows if r["local"].isocalendar()[:2] == (2025, 52)]
    assert {r["local"] for r in week} <= set(DAYS)
    assert any(r["local"] == dt.date(2025, 12, 29) and r["ms"] == 5000 for r in week)
    assert not any(r["ms"] == 9000 for r in week)
    n, k, accuracy, ms = figures_by_hand(week)
    totals = data["totals"]
    assert (totals["attempts"], totals["correct"], totals["time_spent_ms"]) == (n, k, ms)
    assert totals["accuracy"] == pytest.approx(accuracy)
    assert totals["active_days"] == len({r["local"] for r in week})
    assert totals["distinct_questions"] == len({r["question"] for r in week})
    assert totals["sessions"] == len({r["session"] for r in week} - {None})
    n, k, accuracy, ms = figures_by_hand(before)
    previous = data["previous_week"]
    assert (previous["attempts"], previous["correct"], previous["time_spent_ms"]) == (n, k, ms)
    assert previous["accuracy"] == pytest.approx(accuracy)
    assert previous["active_days"] == len({r["local"] for r in before})

    assert [d["date"] for d in data["days"]] == [day.isoformat() for day in DAYS]
    for d in data["days"]:
        n, k, accuracy, ms = figures_by_hand(
            [r for r in week if r["local"].isoformat() == d["date"]])
        assert (d["attempts"], d["correct"], d["time_spent_ms"]) == (n, k, ms)
        assert d["accuracy"] == (pytest.approx(accuracy) if n else None)

    by_subject = defaultdict(list)
    for r in week:
        by_subject[r["subject"]].append(r)
    expected = sorted(((-len(v), code) for code, v in by_subject.items()))
    assert [s["code"] for s in data["subjects"]] == [code for _, code in expected]
    for s in data["subjects"]:
        n, k, accuracy, _ = figures_by_hand(by_subject[s["code"]])
        assert (s["attempts"], s["correct"]) == (n, k)
        assert s["accuracy"] == pytest.approx(accuracy)
    assert data["student"] == {"id": student.pk, "name": "Ana Kiri",
                               "email": student.email, "timezone": "Pacific/Kiritimati"}
    assert zone  # the zone the rows were dated in

    # The HTML says the same, and its chart is the days' chart.
    assert f"<strong>{data['totals']['attempts']}</strong>" in report.html
    expected_png = charts.activity_chart_png(
        DAYS, [d["attempts"] for d in data["days"]],
        [None if d["accuracy"] is None else 100 * d["accuracy"] for d in data["days"]],
        title="Your week 2026-W01: 29 Dec 2025 – 4 Jan 2026")
    assert bytes(report.chart_png) == expected_png


def test_a_week_without_answers_still_reads_well():
    student = new_student()
    add_attempts(student, [(make_question(), dt.datetime(2026, 1, 7, 12, tzinfo=UTC), True,
                            1000, None)])
    reports.student_weekly_reports_build([student.pk], iso_year=2026, iso_week=3,
                                         now=dt.datetime(2026, 1, 30, tzinfo=UTC))
    report = Report.objects.get(student=student)
    assert report.data["totals"]["attempts"] == 0
    assert report.data["previous_week"]["attempts"] == 1
    assert "did not answer any questions this week" in report.html


# --- Student reports: when ---------------------------------------------------------------------


def _closes(zone_name):
    """When ISO week 1 of 2026 ends in this zone: Monday 2026-01-05 00:00 local, in UTC."""
    return dt.datetime(2026, 1, 5, tzinfo=zoneinfo.ZoneInfo(zone_name)).astimezone(UTC)


def test_a_week_closes_in_each_students_time_zone():
    kiritimati = new_student("Pacific/Kiritimati")
    pago_pago = new_student("Pacific/Pago_Pago")
    gmt12 = new_student("Etc/GMT+12")  # UTC−12: where a week ends last
    question = make_question()
    for student in (kiritimati, pago_pago, gmt12):
        # Wednesday 2025-12-31, noon local: week 1 everywhere.
        at = dt.datetime(2025, 12, 31, 12, tzinfo=student.profile.zone).astimezone(UTC)
        add_attempts(student, [(question, at, True, 1000, None)])
    k, p, g = _closes("Pacific/Kiritimati"), _closes("Pacific/Pago_Pago"), _closes("Etc/GMT+12")
    assert k == dt.datetime(2026, 1, 4, 10, tzinfo=UTC)
    assert p - k == dt.timedelta(hours=25)  # UTC+14 to UTC−11
    assert g - k == dt.timedelta(hours=26)  # UTC+14 to UTC−12
    second = dt.timedelta(seconds=1)

    def due(at):
        return reports.student_weekly_reports_due(at)

    assert due(k - second) == []  # week 52 of 2025 was their last closed one: no answers
    assert due(k) == [(kiritimati.pk, 2026, 1)]
    assert due(p - second) == [(kiritimati.pk, 2026, 1)]
    assert due(p) == [(kiritimati.pk, 2026, 1), (pago_pago.pk, 2026, 1)]
    assert due(g) == [(kiritimati.pk, 2026, 1), (pago_pago.pk, 2026, 1), (gmt12.pk, 2026, 1)]

    # Building week 1 before it has closed for a student skips that student.
    assert reports.student_weekly_reports_build(
        [kiritimati.pk, pago_pago.pk], iso_year=2026, iso_week=1, now=p - second) == 1
    assert due(p) == [(pago_pago.pk, 2026, 1)]
    # With no week given, each student gets their last closed week.
    assert reports.student_weekly_reports_build(now=g) == 3
    assert due(g) == []
    assert set(Report.objects.values_list("student_id", "label")) == {
        (kiritimati.pk, "2026-W01"), (pago_pago.pk, "2026-W01"), (gmt12.pk, "2026-W01")}


def test_due_only_for_students_with_answers_that_week_or_the_week_before():
    last_week_only = new_student()
    this_week = new_student()
    two_weeks_ago = new_student()
    never = new_student()  # noqa: F841
    question = make_question()
    add_attempts(last_week_only, [(question, dt.datetime(2025, 12, 24, 12, tzinfo=UTC), True,
                                   1000, None)])
    add_attempts(this_week, [(question, dt.datetime(2026, 1, 4, 12, tzinfo=UTC), True, 1000,
                              None)])
    add_attempts(two_weeks_ago, [(question, dt.datetime(2025, 12, 21, 12, tzinfo=UTC), True,
                                  1000, None)])
    now = dt.datetime(2026, 1, 5, 9, tzinfo=UTC)  # London: week 1 closed 9 hours ago
    assert reports.student_weekly_reports_due(now) == [
        (last_week_only.pk, 2026, 1), (this_week.pk, 2026, 1)]
    assert reports.student_weekly_reports_build(now=now) == 2


def test_rebuilding_updates_the_same_row():
    student = new_student()
    question = make_question()
    add_attempts(student, [(question, dt.datetime(2026, 1, 1, 12, tzinfo=UTC), True, 1000,
                            None)])
    first_now = dt.datetime(2026, 1, 6, tzinfo=UTC)
    reports.student_weekly_reports_build([student.pk], now=first_now)
    report = Report.objects.get()
    add_attempts(student, [(question, dt.datetime(2026, 1, 2, 12, tzinfo=UTC), False, 1000,
                            None)])
    later = first_now + dt.timedelta(hours=3)
    assert reports.student_weekly_reports_build([student.pk], now=later) == 1
    again = Report.objects.get()
    assert again.pk == report.pk
    assert again.created_at == first_now and again.updated_at == later
    assert (again.data["totals"]["attempts"], again.data["totals"]["correct"]) == (2, 1)
    assert reports.student_weekly_reports_due(later) == []


# --- HTML -------------------------------------------------------------------------------------


def test_html_escapes_a_hostile_name_and_embeds_the_chart_two_ways():
    student = new_student(first_name='<script>alert("x")</script>', last_name="&")
    add_attempts(student, [(make_question(), dt.datetime(2026, 1, 1, 12, tzinfo=UTC), True,
                            1000, None)])
    reports.student_weekly_reports_build([student.pk], now=dt.datetime(2026, 1, 6, tzinfo=UTC))
    report = Report.objects.get()
    assert "<script>" not in report.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in report.html

    email = reports.report_html(report, for_email=True)
    assert email == report.html
    assert email.count(f'src="cid:{reports.REPORT_CHART_CID}"') == 1
    assert "data:image" not in email
    browser = reports.report_html(report)
    assert "cid:" not in browser
    (encoded,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', browser)
    assert base64.b64decode(encoded) == bytes(report.chart_png)
    assert browser.replace(f"data:image/png;base64,{encoded}", "cid:chart") == email


# --- Admin reports ----------------------------------------------------------------------------

D = dt.date(2026, 3, 10)  # a Tuesday
ZONES = ["Pacific/Kiritimati", "Europe/London", "America/New_York", "Pacific/Pago_Pago"]


def _admin_world():
    """Twelve students in four zones answering around D, three questions everyone tries on D,
    sign-ups around D's edges, jobs, AI steps and review flags. Returns the attempt rows and
    the students."""
    rng = random.Random(11)
    students = [new_student(ZONES[n % 4]) for n in range(12)]
    common = [make_question(subject_code="MATH"), make_question(subject_code="PHYS"),
              make_question(subject_code="CS", text="<img src=x onerror=alert(1)> hard?")]
    others = [make_question(subject_code=code) for code in ("MATH", "BIO", "CHEM", "PHYS")]
    rows = []
    for index, student in enumerate(students):
        zone = student.profile.zone
        answers = []
        for position, question in enumerate(common):
            at = dt.datetime.combine(D, dt.time(9 + position), zone).astimezone(UTC)
            answers.append((question, at, (index + position) % (position + 2) == 0,
                            20_000 + index, None))
        for _ in range(15):
            day = D + dt.timedelta(days=rng.randrange(-15, 3))
            at = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)),
                                     zone).astimezone(UTC)
            # Common questions only from D on, so their first tries are on D.
            pool = others + common if day >= D else others
            answers.append((rng.choice(pool), at, rng.random() < 0.5,
                            rng.randrange(1000, 60_000), None))
        rows += add_attempts(student, answers)
    # Sign-ups: each student joined at some instant near D's edges in their own zone.
    for index, student in enumerate(students):
        zone = student.profile.zone
        edge = [dt.datetime.combine(D, dt.time(0, 0), zone),
                dt.datetime.combine(D, dt.time(0, 0), zone) - dt.timedelta(seconds=1),
                dt.datetime.combine(D + dt.timedelta(days=1), dt.time(0, 0), zone)
                - dt.timedelta(seconds=1),
                dt.datetime.combine(D + dt.timedelta(days=1), dt.time(0, 0), zone)][index % 4]
        type(student).objects.filter(pk=student.pk).update(date_joined=edge)
    # Jobs (UTC days): failures on D count, a success and failures outside D do not.
    day_start = dt.datetime.combine(D, dt.time(), UTC)
    for chain, (job, outcome, started) in enumerate([
            ("a.tasks.one", JobRun.Outcome.FAILED, day_start),
            ("a.tasks.one", JobRun.Outcome.GAVE_UP, day_start + dt.timedelta(hours=3)),
            ("a.tasks.one", JobRun.Outcome.FAILED, day_start + dt.timedelta(hours=5)),
            ("b.tasks.two", JobRun.Outcome.LOST, day_start + dt.timedelta(hours=23, minutes=59)),
            ("b.tasks.two", JobRun.Outcome.SUCCEEDED, day_start + dt.timedelta(hours=1)),
            ("b.tasks.two", JobRun.Outcome.FAILED, day_start + dt.timedelta(days=1)),
            ("c.tasks.three", JobRun.Outcome.RETRYING, day_start - dt.timedelta(seconds=1))]):
        JobRun.objects.create(job=job, queue="analytics", chain=f"c{chain}", attempt=1,
                              started_at=started, outcome=outcome)
    # AI steps and review flags (now, not of the period).
    steps = [(common[0], "embedding", "pending"), (common[1], "embedding", "pending"),
             (common[2], "embedding", "failed"), (common[0], "metadata", "failed"),
             (common[1], "metadata", "done"), (common[2], "explanation", "skipped")]
    for question, step, status in steps:
        QuestionStep.objects.create(question=question, step=step, status=status)
    retired = make_question(status=Question.Status.RETIRED)
    now = dt.datetime(2026, 3, 1, tzinfo=UTC)
    for question, flags in [(common[0], ["too_hard", "possible_wrong_key"]),
                            (common[1], ["too_hard"]), (common[2], ["not_enough_data"]),
                            (others[0], []), (retired, ["too_easy"])]:
        QuestionStats.objects.create(question=question, n=1, n_correct=0, n_skipped=0,
                                     flags=flags, computed_at=now)
    Question.objects.filter(pk__in=[others[1].pk, retired.pk]).update(ai_key_disagreement=True)
    return rows, students, common


def test_admin_daily_report_figures():
    rows, students, common = _admin_world()
    with pytest.raises(ValueError, match="not closed everywhere"):
        reports.admin_report_build("admin_daily", D,
                                   now=dt.datetime(2026, 3, 11, 11, 59, 59, tzinfo=UTC))
    now = dt.datetime(2026, 3, 11, 12, tzinfo=UTC)  # D has just ended in UTC−12
    report = reports.admin_report_build("admin_daily", D, now=now)
    assert (report.kind, report.student, report.period_start, report.period_end,
            report.label) == ("admin_daily", None, D, D, "2026-03-10")
    data = report.data

    on_d = [r for r in rows if r["local"] == D]
    n, k, accuracy, ms = figures_by_hand(on_d)
    totals = data["totals"]
    assert (totals["attempts"], totals["correct"], totals["time_spent_ms"]) == (n, k, ms)
    assert totals["accuracy"] == pytest.approx(accuracy)
    assert totals["active_students"] == len({r["student"] for r in on_d}) == 12
    assert totals["first_attempts"] == sum(r["number"] == 1 for r in on_d)
    joined = [s for s in students
              if type(s).objects.get(pk=s.pk).date_joined.astimezone(s.profile.zone).date() == D]
    assert totals["new_signups"] == len(joined) == 6

    window = [D - dt.timedelta(days=13 - n) for n in range(14)]
    assert [d["date"] for d in data["days"]] == [day.isoformat() for day in window]
    for d in data["days"]:
        that_day = [r for r in rows if r["local"].isoformat() == d["date"]]
        n, k, accuracy, _ = figures_by_hand(that_day)
        assert (d["attempts"], d["correct"]) == (n, k)
        assert d["active_students"] == len({r["student"] for r in that_day})

    by_subject = defaultdict(list)
    for r in on_d:
        by_subject[r["subject"]].append(r)
    expected = sorted((-len(v), code) for code, v in by_subject.items())[:5]
    assert [s["code"] for s in data["top_subjects"]] == [code for _, code in expected]
    for s in data["top_subjects"]:
        n, k, accuracy, _ = figures_by_hand(by_subject[s["code"]])
        assert (s["attempts"], s["correct"], s["students"]) == (
            n, k, len({r["student"] for r in by_subject[s["code"]]}))

    first_tries = defaultdict(list)
    for r in on_d:
        if r["number"] == 1:
            first_tries[r["question"]].append(r["correct"])
    hardest = sorted((sum(v) / len(v), -len(v), q) for q, v in first_tries.items()
                     if len(v) >= reports.HARDEST_MIN_FIRST_ATTEMPTS)[:5]
    assert len(hardest) >= 3
    assert [q["id"] for q in data["hardest_questions"]] == [q for _, _, q in hardest]
    for q, (share, minus_n, _) in zip(data["hardest_questions"], hardest, strict=True):
        assert (q["accuracy"], q["first_attempts"]) == (pytest.approx(share), -minus_n)

    assert data["review_flags"] == {
        "counts": {"not_enough_data": 1, "possible_wrong_key": 1, "too_hard": 2},
        "questions_flagged": 2, "ai_key_disagreement": 1}
    assert data["ai_backlog"] == {"pending": {"embedding": 2}, "failed": {"embedding": 1,
                                  "metadata": 1}, "pending_total": 2, "failed_total": 2}
    failed = data["failed_jobs"]
    assert failed["total"] == 4 and failed["more"] == 0
    assert [(j["job"], j["outcome"], j["count"]) for j in failed["by_job"]] == [
        ("a.tasks.one", "failed", 2), ("a.tasks.one", "gave_up", 1), ("b.tasks.two", "lost", 1)]

    # The hostile question text is escaped; the chart is the 14 days'.
    assert "&lt;img src=x onerror=alert(1)&gt; hard?" in report.html
    assert "<img src=x" not in report.html
    assert Image.open(io.BytesIO(bytes(report.chart_png))).size == (600, 300)


def test_admin_weekly_report_and_rebuild():
    rows, _, _ = _admin_world()
    monday = dt.date(2026, 3, 9)
    with pytest.raises(ValueError, match="Monday"):
        reports.admin_report_build("admin_weekly", D, now=dt.datetime(2026, 4, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="Unknown"):
        reports.admin_report_build("student_weekly", monday,
                                   now=dt.datetime(2026, 4, 1, tzinfo=UTC))
    now = dt.datetime(2026, 3, 16, 12, tzinfo=UTC)  # Sunday 15th has just ended everywhere
    report = reports.admin_report_build("admin_weekly", monday, now=now)
    week = [r for r in rows if monday <= r["local"] <= monday + dt.timedelta(days=6)]
    n, k, accuracy, _ = figures_by_hand(week)
    assert (report.label, report.period_end) == ("2026-W11", dt.date(2026, 3, 15))
    assert (report.data["totals"]["attempts"], report.data["totals"]["correct"]) == (n, k)
    assert report.data["totals"]["active_students"] == len({r["student"] for r in week})
    assert len(report.data["days"]) == 7
    again = reports.admin_report_build("admin_weekly", monday, now=now + dt.timedelta(hours=1))
    assert again.pk == report.pk and Report.objects.count() == 1
    assert again.created_at == now and again.updated_at == now + dt.timedelta(hours=1)


def test_admin_reports_due():
    # 2026-03-11 12:00 UTC: 2026-03-10 has just ended everywhere; the week of Monday 2 March
    # ended everywhere on Monday 9 March at 12:00.
    now = dt.datetime(2026, 3, 11, 12, tzinfo=UTC)
    days = [(D - dt.timedelta(days=n)) for n in range(6, -1, -1)]
    weeks = [dt.date(2026, 3, 2) - dt.timedelta(weeks=n) for n in range(6, -1, -1)]
    expected = [("admin_daily", day) for day in days] + [("admin_weekly", w) for w in weeks]
    assert reports.admin_reports_due(now) == expected
    assert reports.admin_reports_due(now - dt.timedelta(seconds=1))[:7] == [
        ("admin_daily", day - dt.timedelta(days=1)) for day in days]
    reports.admin_report_build("admin_daily", D, now=now)
    reports.admin_report_build("admin_weekly", dt.date(2026, 3, 2), now=now)
    assert reports.admin_reports_due(now) == [
        item for item in expected if item not in {("admin_daily", D),
                                                  ("admin_weekly", dt.date(2026, 3, 2))}]


# --- Query counts -----------------------------------------------------------------------------


def _active_students(count, question):
    students = [new_student(ZONES[n % 4]) for n in range(count)]
    for student in students:
        at = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
        add_attempts(student, [(question, at, True, 1000, None),
                               (question, at + dt.timedelta(hours=1), False, 2000, None)])
    return [s.pk for s in students]


def _queries(function, *args, **kwargs):
    with CaptureQueriesContext(connection) as context:
        function(*args, **kwargs)
    return len(context.captured_queries)


def test_query_counts_do_not_grow_with_students(monkeypatch, django_assert_max_num_queries):
    question = make_question()
    now = dt.datetime(2026, 1, 7, tzinfo=UTC)
    few = _active_students(2, question)
    more = _active_students(4, question)
    # Two queries to choose them, five per chunk.
    with django_assert_max_num_queries(7):
        assert reports.student_weekly_reports_build(now=now) == 6
    assert _queries(reports.student_weekly_reports_build, few, now=now) == 6
    assert _queries(reports.student_weekly_reports_build, few + more, now=now) == 6
    assert _queries(reports.student_weekly_reports_due, now) == 2
    Report.objects.filter(student_id__in=more).delete()
    assert _queries(reports.student_weekly_reports_due, now) == 2
    assert [row[0] for row in reports.student_weekly_reports_due(now)] == more

    monkeypatch.setattr(reports, "CHUNK_SIZE", 2)
    assert _queries(reports.student_weekly_reports_build, few, iso_year=2026, iso_week=1,
                    now=now) == 1 + 5
    # Three chunks of given ids: one query each for their time zones, then five each.
    assert _queries(reports.student_weekly_reports_build, few + more, iso_year=2026,
                    iso_week=1, now=now) == 3 * (1 + 5)
    assert _queries(reports.student_weekly_reports_build, iso_year=2026, iso_week=1,
                    now=now) == 2 + 3 * 5
    assert Report.objects.count() == 6

    daily = _queries(reports.admin_report_build, "admin_daily", dt.date(2026, 1, 1),
                     now=dt.datetime(2026, 1, 3, tzinfo=UTC))
    _active_students(5, make_question())
    assert _queries(reports.admin_report_build, "admin_daily", dt.date(2026, 1, 1),
                    now=dt.datetime(2026, 1, 3, tzinfo=UTC)) == daily
    assert daily <= 14
