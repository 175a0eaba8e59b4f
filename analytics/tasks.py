"""django-q entry points of analytics (queue `analytics`): thin, primitive arguments, a small
dict back. Their rows in the schedule table are in pastq/schedules.py."""

import datetime

from django.utils import timezone

from analytics import item_analysis, regrading, runs
from analytics.models import Regrade
from core.jobs import RetryPolicy, job

ANALYTICS_RETRY = RetryPolicy(max_attempts=4, max_delay=900)


@job(queue="analytics", retry=ANALYTICS_RETRY)
def analytics_open_days() -> dict:
    """Hourly: re-upsert the daily, subject and weekly rollups of every local day still open
    somewhere (and of the days that just closed), apply those days' answers to the spaced-review
    cards, refresh the insights of the students whose
    day has closed, and detect achievements for the students active on those days."""
    return runs.analytics_run(parts=runs.HOURLY_PARTS).as_dict()


@job(queue="analytics", retry=ANALYTICS_RETRY)
def analytics_dates(start: str, end: str, parts: list[str] | None = None) -> dict:
    """The given parts for the local dates start … end (ISO dates, inclusive): a backfill."""
    first, last = datetime.date.fromisoformat(start), datetime.date.fromisoformat(end)
    dates = runs.date_range(first, last)
    return runs.analytics_run(dates=dates, parts=tuple(parts or runs.PARTS)).as_dict()


@job(queue="analytics", retry=ANALYTICS_RETRY)
def question_statistics() -> dict:
    """Every 2 hours: question, choice and paper statistics of every subject."""
    return {"questions": item_analysis.question_stats_refresh()}


@job(queue="analytics", retry=ANALYTICS_RETRY)
def student_weekly_reports() -> dict:
    """Hourly: each student's weekly report once their ISO week has closed in their time zone
    (so a UTC+14 student's comes 25 hours before a UTC−11 student's)."""
    return {"student_weekly": runs.student_reports_due_build(now=timezone.now())}


@job(queue="analytics", retry=ANALYTICS_RETRY)
def admin_reports() -> dict:
    """12:30 UTC: the daily admin report of the day that has just closed everywhere (D+1 12:00
    UTC), and on Monday the weekly one; any of the last week's that are missing."""
    return {"admin": runs.admin_reports_due_build(now=timezone.now())}


@job(queue="analytics", retry=ANALYTICS_RETRY)
def regrade_question(regrade_id: int) -> dict:
    """Re-mark a question's attempts after its key was corrected, and everything derived."""
    regrade = Regrade.objects.get(pk=regrade_id)
    if regrade.status == Regrade.Status.DONE:
        return {"regrade": regrade_id, "already": "done"}
    try:
        outcome = regrading.regrade_run(regrade)
    except Exception as exc:
        Regrade.objects.filter(pk=regrade_id).update(error=f"{type(exc).__name__}: {exc}")
        raise
    return {"regrade": regrade_id, **outcome.summary()}
