"""The analytics entry points: run_analytics, the scheduled tasks and their schedule rows."""

import datetime
import json

import pytest

from analytics import runs, tasks
from analytics.models import (
    DailyStudentStats,
    QuestionStats,
    Report,
    StudentAchievement,
    StudentInsight,
    WeeklyStudentStats,
)
from analytics.selectors import achievements_to_announce
from core import services
from core.models import Attempt
from core.tests.conftest import deliver
from core.tests.factories import make_question
from pastq.schedules import SCHEDULES

DAY = datetime.date(2026, 3, 2)


def _world(n_students: int, *, days: int = 4):
    questions = [make_question(correct="A") for _ in range(5)]
    rows = []
    for i in range(n_students):
        student = services.student_create(
            email=f"s{n_students}-{i}@example.com", password="pw",
            timezone_name=["UTC", "Asia/Tokyo", "America/New_York"][i % 3]).user
        zone = student.profile.zone
        for d in range(days):
            for q, question in enumerate(questions):
                at = datetime.datetime.combine(DAY + datetime.timedelta(days=d),
                                               datetime.time(12, q), tzinfo=datetime.UTC)
                rows.append(Attempt(student=student, question=question, is_correct=(i + q) % 3 > 0,
                                    time_taken_ms=1000 * (q + 1), answered_at=at,
                                    local_date=at.astimezone(zone).date(), attempt_number=d + 1))
    Attempt.objects.bulk_create(rows)
    return questions


def test_a_backfill_writes_every_part_and_announces_nothing(run_command, catalogue):
    _world(3)
    code, out, err = run_command("run_analytics", "--from", "2026-03-01", "--to", "2026-03-07",
                                 "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["dates"]) == 7
    assert result["rollups"]["daily_rows"] == DailyStudentStats.objects.count() == 12
    assert WeeklyStudentStats.objects.count() == 3  # 2026-W10 for each
    assert result["questions"] == QuestionStats.objects.count() == 5
    assert result["insights"] == StudentInsight.objects.count() == 3
    # "Getting started" needs 10 distinct questions, so nobody; a backfill's streak-3s are
    # stored but not offered for announcement.
    assert StudentAchievement.objects.filter(achievement__code="streak-3").count() == 3
    assert not achievements_to_announce().exists()
    # Reports of the closed periods: the students' week of 2 March (the week of 23 February
    # had no answers, nor the week before it), seven admin days and two admin weeks.
    assert result["reports"] == 12
    assert Report.objects.filter(kind="student_weekly", label="2026-W10").count() == 3
    assert Report.objects.filter(kind="admin_daily").count() == 7
    assert set(Report.objects.filter(kind="admin_weekly").values_list("label", flat=True)) == {
        "2026-W09", "2026-W10"}


def test_one_date_and_only_some_parts(run_command, catalogue):
    _world(2)
    code, out, err = run_command("run_analytics", "--date", "2026-03-03", "--only",
                                 "rollups,questions")
    assert code == 0, err
    assert "Local dates: 2026-03-03" in out
    assert "Question statistics: 5 questions." in out
    assert "Insights" not in out
    assert set(DailyStudentStats.objects.values_list("date", flat=True)) == {
        datetime.date(2026, 3, 3)}
    assert not StudentInsight.objects.exists()


@pytest.mark.parametrize("argv, message", [
    (["--date", "2026-13-01"], "--date '2026-13-01' is not a date"),
    (["--from", "2026-03-01"], "--from and --to go together"),
    (["--from", "2026-03-05", "--to", "2026-03-01"], "is before --from"),
    (["--date", "2026-03-01", "--from", "2026-03-01", "--to", "2026-03-02"], "not both"),
    (["--only", "rollups,cookies"], "unknown part cookies"),
])
def test_bad_arguments_exit_2_with_a_reason(run_command, db, argv, message):
    code, out, err = run_command("run_analytics", *argv)
    assert code == 2 and message in err


def test_the_hourly_run_costs_the_same_queries_for_more_students(
        catalogue, django_assert_max_num_queries):
    _world(3)
    now = datetime.datetime(2026, 3, 4, 13, 5, tzinfo=datetime.UTC)
    hourly = runs.HOURLY_PARTS
    with django_assert_max_num_queries(60) as small:
        runs.analytics_run(now=now, parts=hourly)
    Attempt.objects.all().delete()
    StudentInsight.objects.all().delete()
    _world(30)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        runs.analytics_run(now=now, parts=hourly)
    assert DailyStudentStats.objects.filter(date=datetime.date(2026, 3, 4)).count() >= 30
    assert len(large.captured_queries) <= len(small.captured_queries)


def test_the_tasks_run_as_jobs(catalogue):
    _world(2)
    result = deliver({"func": "analytics.tasks.analytics_dates",
                      "args": ["2026-03-02", "2026-03-05"]})
    assert result["rollups"]["daily_rows"] == 8
    assert deliver({"func": "analytics.tasks.question_statistics"}) == {"questions": 5}
    assert "dates" in deliver({"func": "analytics.tasks.analytics_open_days"})
    assert deliver({"func": "analytics.tasks.student_weekly_reports"}) == {"student_weekly": 0}
    admin = deliver({"func": "analytics.tasks.admin_reports"})["admin"]
    # The last seven days and weeks closed everywhere, beside the backfill's four days and week.
    assert len(admin) == 14 and Report.objects.filter(student__isnull=True).count() == 14 + 5


def test_the_schedule_table_runs_analytics_on_its_queue():
    rows = {p.task: p for p in SCHEDULES}
    for name in ("analytics_open_days", "question_statistics", "student_weekly_reports",
                 "admin_reports"):
        periodic = rows[f"analytics.tasks.{name}"]
        assert periodic.queue == "analytics"
        assert getattr(tasks, name).job_spec.queue == "analytics"
    assert rows["analytics.tasks.analytics_open_days"].cron == "5 * * * *"
    assert rows["analytics.tasks.question_statistics"].cron == "15 */2 * * *"
    assert runs.PARTS == ("rollups", "review", "questions", "insights", "achievements",
                          "reports")
    assert rows["analytics.tasks.student_weekly_reports"].cron == "20 * * * *"
    assert rows["analytics.tasks.admin_reports"].cron == "30 12 * * *"


def test_all_dates_once_on_an_empty_database(run_command, catalogue):
    _world(2)
    code, out, err = run_command("run_analytics", "--all", "--if-empty", "--only", "rollups")
    assert code == 0, err
    assert "Local dates: 2026-03-02 … 2026-03-05 (4 days)" in out
    assert DailyStudentStats.objects.count() == 8
    code, out, err = run_command("run_analytics", "--all", "--if-empty")
    assert code == 0 and "Rollups exist already" in out
    code, out, err = run_command("run_analytics", "--all", "--date", "2026-03-02")
    assert code == 2 and "--all takes no --date" in err
