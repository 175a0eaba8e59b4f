"""The analytics runs, in their order: rollups, spaced review's cards, then question
statistics, insights and achievements (detected after each rollup, from the figures it wrote),
and the reports whose period has closed. The scheduled tasks and
`manage.py run_analytics` both go through `analytics_run`, so the command does by hand exactly
what the schedule does. docs/analytics.md, "Entry points"."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db.models import Max, Min
from django.utils import timezone

from analytics import achievements, insights, item_analysis, reports, review, rollups
from analytics.models import DailyStudentStats
from core.models import Attempt

PARTS = ("rollups", "review", "questions", "insights", "achievements", "reports")
# The hourly job's parts: question statistics and reports have their own schedules.
HOURLY_PARTS = ("rollups", "review", "insights", "achievements")


@dataclass
class AnalyticsRun:
    dates: list[datetime.date] = field(default_factory=list)
    rollups: rollups.RollupResult | None = None
    review: review.ReviewResult | None = None
    questions: int | None = None
    insights: int | None = None
    achievements: int | None = None
    reports: int | None = None

    def as_dict(self) -> dict:
        result: dict = {"dates": [d.isoformat() for d in self.dates]}
        if self.rollups is not None:
            result["rollups"] = {"daily_rows": self.rollups.daily_rows,
                                 "subject_rows": self.rollups.subject_rows,
                                 "weekly_rows": self.rollups.weekly_rows}
        if self.review is not None:
            result["review"] = {"cards_created": self.review.cards_created,
                                "cards_updated": self.review.cards_updated,
                                "attempts_applied": self.review.attempts_applied}
        for name in ("questions", "insights", "achievements", "reports"):
            if getattr(self, name) is not None:
                result[name] = getattr(self, name)
        return result


def date_range(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    """The local dates first … last, inclusive."""
    return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]


def attempt_dates() -> list[datetime.date]:
    """Every local date from the first attempt to the last (none without attempts)."""
    span = Attempt.objects.aggregate(first=Min("local_date"), last=Max("local_date"))
    return date_range(span["first"], span["last"]) if span["first"] else []


def rollups_exist() -> bool:
    return DailyStudentStats.objects.exists()


def analytics_run(*, dates: list[datetime.date] | None = None, parts=PARTS,
                  now: datetime.datetime | None = None) -> AnalyticsRun:
    """Run the given parts. `dates`: those local dates (a --date or a --from/--to backfill);
    None: the local dates still open somewhere, as the hourly schedule does.

    Insights are always as of each student's last closed local day: with `dates` they are
    recomputed for the students active on those dates; without, for the students whose day
    has closed since their last insights. Achievements are detected for the students active
    on the dates, as of the last of them (dated when first reached, so a backfill announces
    only recent ones: see achievements_detect)."""
    now = now or timezone.now()
    scheduled = dates is None
    dates = sorted(set(rollups.open_local_dates(now) if scheduled else dates))
    run = AnalyticsRun(dates=dates)
    if "rollups" in parts:
        run.rollups = rollups.rollups_for_dates(dates, now=now)
    if "review" in parts:
        run.review = review.reviews_apply(dates=dates, now=now)
    if "questions" in parts:
        run.questions = item_analysis.question_stats_refresh(now=now)
    active = None
    if "insights" in parts:
        if scheduled:
            run.insights = insights.insights_refresh(now=now)
        else:
            active = sorted(rollups.students_active_on(dates))
            run.insights = insights.insights_compute(active, now=now) if active else 0
    if "achievements" in parts:
        if active is None:
            active = sorted(rollups.students_active_on(dates))
        as_of = None if scheduled else dates[-1]
        run.achievements = (
            achievements.achievements_detect(active, now=now, as_of=as_of) if active else 0)
    if "reports" in parts:
        run.reports = reports_due_build(now=now) if scheduled else reports_for_dates(dates,
                                                                                    now=now)
    return run


def reports_due_build(*, now: datetime.datetime) -> int:
    """The reports whose period has closed and that are not built yet."""
    return (student_reports_due_build(now=now)
            + len(admin_reports_due_build(now=now)))


def student_reports_due_build(*, now: datetime.datetime) -> int:
    """Each student's last ISO week's report, once that week has closed in their time zone."""
    due = reports.student_weekly_reports_due(now)
    return reports.student_weekly_reports_build([s for s, _, _ in due], now=now) if due else 0


def admin_reports_due_build(*, now: datetime.datetime) -> list[str]:
    """The admin reports of the days and weeks closed everywhere that are not built yet."""
    built = []
    for kind, start in reports.admin_reports_due(now):
        reports.admin_report_build(kind, start, now=now)
        built.append(f"{kind} {start}")
    return built


def reports_for_dates(dates: list[datetime.date], *, now: datetime.datetime) -> int:
    """(Re)build the reports of the periods these dates fall in, where the period has closed:
    students' weekly reports of those ISO weeks, admin daily reports of the dates closed
    everywhere, and admin weekly reports of the weeks closed everywhere."""
    built = 0
    mondays = sorted({d - datetime.timedelta(days=d.weekday()) for d in dates})
    for monday in mondays:
        iso_year, iso_week, _ = monday.isocalendar()
        built += reports.student_weekly_reports_build(iso_year=iso_year, iso_week=iso_week,
                                                      now=now)
    closed = reports.last_day_closed_everywhere(now)
    for day in dates:
        if day <= closed:
            reports.admin_report_build("admin_daily", day, now=now)
            built += 1
    for monday in mondays:
        if monday + datetime.timedelta(days=6) <= closed:
            reports.admin_report_build("admin_weekly", monday, now=now)
            built += 1
    return built
