"""What each email says: the contexts of a claimed batch, read with a fixed number of queries
per batch whatever its size (one per kind and source, never one per student), and the decision
that there is nothing to say (no activity and nothing due, today's goal already met, an
achievement withdrawn).

Notifications reads analytics (rollups, insights, review cards, reports) and core (attempts);
neither knows it exists."""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count

from analytics.models import DailyStudentStats, Report, StudentInsight
from analytics.reports import report_context
from analytics.review import reviews_due_counts
from core.models import Attempt
from notifications.models import Notification
from notifications.unsubscribe import unsubscribe_url

Kind = Notification.Kind
Reason = Notification.Reason

KIND_LABELS = {
    Kind.DAILY_SUMMARY: "daily summaries",
    Kind.STUDY_REMINDER: "study reminders",
    Kind.ACHIEVEMENT: "achievement emails",
    Kind.WEEKLY_REPORT: "weekly reports",
    Kind.ADMIN_REPORT: "admin reports",
    Kind.SYSTEM_REPORT: "system reports",
    Kind.TEST: "test emails",
}


@dataclass
class Content:
    """One row's email (context and inline chart), or why it is not sent (`skip`), or that it
    must wait (`defer`: its report is not built yet)."""

    context: dict = field(default_factory=dict)
    chart_png: bytes = b""
    skip: str = ""
    skip_detail: str = ""
    defer: bool = False


def display_name(user) -> str:
    if user is None:
        return "operator"
    return user.get_full_name() or user.email.split("@")[0]


def common_context(row: Notification) -> dict:
    context = {"name": display_name(row.user), "base_url": settings.PUBLIC_BASE_URL,
               "kind_label": KIND_LABELS.get(row.kind, row.kind),
               "unsubscribe_url": None, "unsubscribe_all_url": None}
    if row.user_id and row.kind in Notification.STUDENT_KINDS:
        context["unsubscribe_url"] = unsubscribe_url(row.user_id, row.kind)
        context["unsubscribe_all_url"] = unsubscribe_url(row.user_id, "all")
    return context


def batch_contents(rows: list[Notification], *, now: datetime.datetime) -> list[Content]:
    """Contents of every row of a batch, in the rows' order (rows may be unsaved: a dry run).
    Rows must come with `user__profile`, `report` and `achievement__achievement` /
    `achievement__subject` loaded."""
    by_kind: dict[str, list[tuple[int, Notification]]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_kind[row.kind].append((index, row))
    contents: dict[int, Content] = {}
    student_ids = {r.user_id for r in rows if r.user_id and r.kind in (
        Kind.DAILY_SUMMARY, Kind.STUDY_REMINDER)}
    insights, due = {}, {}
    if student_ids:
        insights = {i.student_id: i for i in StudentInsight.objects.filter(
            student_id__in=student_ids).only("student_id", "current_streak", "longest_streak")}
        due = reviews_due_counts(student_ids, at=now)
    contents.update(_daily_summaries(by_kind[Kind.DAILY_SUMMARY], insights, due))
    contents.update(_study_reminders(by_kind[Kind.STUDY_REMINDER], insights, due))
    contents.update(_achievements(by_kind[Kind.ACHIEVEMENT]))
    contents.update(_weekly_reports(by_kind[Kind.WEEKLY_REPORT]))
    for kind in (Kind.ADMIN_REPORT, Kind.SYSTEM_REPORT, Kind.TEST):
        contents.update(_stored(by_kind[kind]))
    result = [contents[index] for index in range(len(rows))]
    for row, content in zip(rows, result, strict=True):
        if not content.skip and not content.defer:
            content.context = {**common_context(row), **content.context}
    return result


def _profile(row: Notification):
    return getattr(row.user, "profile", None)


def _daily_summaries(rows, insights, due) -> dict[int, Content]:
    if not rows:
        return {}
    days = {datetime.date.fromisoformat(r.period) for _, r in rows}
    stats = {(s.student_id, s.date): s for s in DailyStudentStats.objects.filter(
        student_id__in={r.user_id for _, r in rows}, date__in=days)}
    out = {}
    for index, row in rows:
        day = datetime.date.fromisoformat(row.period)
        figures = stats.get((row.user_id, day))
        reviews = due.get(row.user_id, 0)
        if (figures is None or not figures.attempts) and not reviews:
            out[index] = Content(skip=Reason.NOTHING_TO_SAY,
                                  skip_detail="no answers that day and nothing due for review")
            continue
        insight = insights.get(row.user_id)
        profile = _profile(row)
        out[index] = Content(context={
            "day": day,
            "stats": None if figures is None or not figures.attempts else {
                "attempts": figures.attempts, "correct": figures.correct,
                "accuracy": figures.accuracy, "time_spent_ms": figures.time_spent_ms,
                "distinct_questions": figures.distinct_questions, "sessions": figures.sessions},
            "streak": insight.current_streak if insight else 0,
            "longest_streak": insight.longest_streak if insight else 0,
            "reviews_due": reviews,
            "goal": profile.daily_question_goal if profile else 0,
            "timezone": profile.timezone if profile else "UTC",
        })
    return out


def _study_reminders(rows, insights, due) -> dict[int, Content]:
    if not rows:
        return {}
    days = {datetime.date.fromisoformat(r.period) for _, r in rows}
    answered = {(a["student_id"], a["local_date"]): a["n"] for a in Attempt.objects.filter(
        student_id__in={r.user_id for _, r in rows}, local_date__in=days, skipped=False,
    ).values("student_id", "local_date").annotate(n=Count("id")).order_by()}
    out = {}
    for index, row in rows:
        today = datetime.date.fromisoformat(row.period)
        profile = _profile(row)
        goal = profile.daily_question_goal if profile else 0
        done = answered.get((row.user_id, today), 0)
        if done >= goal:
            out[index] = Content(skip=Reason.GOAL_MET,
                                  skip_detail=f"{done} answered today, goal {goal}")
            continue
        insight = insights.get(row.user_id)
        streak = insight.current_streak if insight else 0
        out[index] = Content(context={
            "today": today, "answered_today": done, "goal": goal, "remaining": goal - done,
            "reviews_due": due.get(row.user_id, 0), "streak": streak,
            "streak_at_risk": streak > 0 and done == 0,
        })
    return out


def _achievements(rows) -> dict[int, Content]:
    out = {}
    for index, row in rows:
        earned = row.achievement
        if earned is None or earned.withdrawn_at is not None:
            out[index] = Content(skip=Reason.NOTHING_TO_SAY,
                                  skip_detail="the achievement was withdrawn")
            continue
        definition = earned.achievement
        out[index] = Content(context={
            "achievement": {"title": definition.title, "description": definition.description,
                            "kind": definition.kind, "threshold": definition.threshold},
            "subject_name": earned.subject.name if earned.subject_id else None,
            "value": earned.value, "earned_on": earned.earned_on,
        })
    return out


def _weekly_reports(rows) -> dict[int, Content]:
    if not rows:
        return {}
    reports = {(r.student_id, r.label): r for r in Report.objects.filter(
        kind=Report.Kind.STUDENT_WEEKLY, student_id__in={r.user_id for _, r in rows},
        label__in={r.period for _, r in rows})}
    active = _active_in_week_or_week_before(
        [row for _, row in rows if (row.user_id, row.period) not in reports])
    out = {}
    for index, row in rows:
        report = reports.get((row.user_id, row.period))
        if report is None:
            if (row.user_id, row.period) in active:
                out[index] = Content(defer=True)
            else:
                # Analytics builds reports only for students with answers in the week or the
                # week before: none will come, and waiting would only end outside the window.
                out[index] = Content(skip=Reason.NOTHING_TO_SAY,
                                      skip_detail="no answers this week or the week before")
            continue
        data = report.data
        if not data["totals"]["attempts"] and not data["previous_week"]["attempts"]:
            out[index] = Content(skip=Reason.NOTHING_TO_SAY,
                                  skip_detail="no answers this week or the week before")
            continue
        out[index] = Content(context={**report_context(report),
                                       "has_chart": bool(report.chart_png),
                                       "report_id": report.pk},
                              chart_png=bytes(report.chart_png))
    return out


def _active_in_week_or_week_before(rows) -> set[tuple[int, str]]:
    """(student, ISO week) of `rows` with answers in that week or the week before: one query
    per distinct week (a batch holds one or two)."""
    found: set[tuple[int, str]] = set()
    by_week: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        by_week[row.period].add(row.user_id)
    for label, ids in by_week.items():
        year, week = label.split("-W")
        monday = datetime.date.fromisocalendar(int(year), int(week), 1)
        found.update((student_id, label) for student_id in Attempt.objects.filter(
            student_id__in=ids, local_date__range=(monday - datetime.timedelta(days=7),
                                                   monday + datetime.timedelta(days=6)),
        ).order_by().values_list("student_id", flat=True).distinct())
    return found


def _stored(rows) -> dict[int, Content]:
    """Staff reports and test emails are rendered when they are queued (their rows keep the
    subject, text and HTML); admin reports carry their chart."""
    out = {}
    for index, row in rows:
        chart = bytes(row.report.chart_png) if row.report_id and row.report else b""
        out[index] = Content(context={"stored": True}, chart_png=chart)
    return out
