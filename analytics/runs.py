"""The analytics runs, in their order: rollups, spaced review's cards, then question
statistics, insights and achievements (detected after each rollup, from the figures it wrote). The scheduled tasks and
`manage.py run_analytics` both go through `analytics_run`, so the command does by hand exactly
what the schedule does. docs/analytics.md, "Entry points"."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.utils import timezone

from analytics import achievements, insights, item_analysis, review, rollups

PARTS = ("rollups", "review", "questions", "insights", "achievements")


@dataclass
class AnalyticsRun:
    dates: list[datetime.date] = field(default_factory=list)
    rollups: rollups.RollupResult | None = None
    review: review.ReviewResult | None = None
    questions: int | None = None
    insights: int | None = None
    achievements: int | None = None

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
        for name in ("questions", "insights", "achievements"):
            if getattr(self, name) is not None:
                result[name] = getattr(self, name)
        return result


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
    return run
