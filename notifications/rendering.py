"""The emails' words and looks: `email_render(kind, context)` renders one kind's trio of
templates (`notifications/email/<kind>.subject.txt`, `<kind>.txt`, `<kind>.html`) into a subject,
a plain-text part and an HTML part.

The caller builds the context from plain values (dicts, dates, numbers; see email_render);
rendering runs no query and touches no network, so thousands of emails render in a loop. Each
kind's display strings (dates, percentages, durations) are worked out here, in small functions,
so the templates only place them.

Safety: the HTML templates autoescape everything (names, subjects, achievement titles, question
texts are never marked safe); the text templates turn autoescaping off, since a text part shows
what it holds; the subject is one line (header injection is impossible) of at most
SUBJECT_MAX_CHARS characters.

The HTML templates extend one layout (`notifications/email/layout.html`) whose <style> is
inlined into `style=` attributes by css-inline, because many mail clients drop a <style>. The
@media rules for phones cannot be inlined; they stay in a <style> for the clients that read it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

import css_inline
from django.template.loader import get_template

from notifications.models import Notification

SUBJECT_MAX_CHARS = 200
# The Content-ID the sender attaches a report's chart under (multipart/related), and the HTML
# refers to as cid:… .
CHART_CONTENT_ID = "chart@pastq"
TEMPLATE_DIR = "notifications/email"

# One inliner for the process: it holds no per-document state. keep_at_rules leaves the @media
# rules in a <style> (everything else goes into style= attributes); no stylesheet is ever
# fetched (the templates have no <link>, and rendering must not reach the network). A rendered
# email has a few hundred nodes: preallocating them spares the parser its reallocations.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False,
                                 preallocate_node_capacity=512)

# Said in the footers ("subscribed to …", "Unsubscribe from …") when the caller gives none.
KIND_LABELS = {
    Notification.Kind.DAILY_SUMMARY: "daily summaries",
    Notification.Kind.STUDY_REMINDER: "study reminders",
    Notification.Kind.ACHIEVEMENT: "achievement emails",
    Notification.Kind.WEEKLY_REPORT: "weekly reports",
    Notification.Kind.ADMIN_REPORT: "admin reports",
    Notification.Kind.SYSTEM_REPORT: "system reports",
    Notification.Kind.TEST: "test emails",
}
_STAFF_KINDS = frozenset(str(kind) for kind in Notification.STAFF_KINDS)

# Names without the C library's locale (strftime's %A and %B follow it).
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def email_render(kind: str, context: dict) -> RenderedEmail:
    """Render the email of this kind (a Notification.Kind value) from its context, which is not
    changed. ValueError for an unknown kind. The context's keys:

    every kind: name, base_url (settings.PUBLIC_BASE_URL), unsubscribe_url and
      unsubscribe_all_url (str; None or absent for staff kinds: then the footer has no
      unsubscribe links), kind_label ("daily summaries"; a default per kind when absent);
    daily_summary: day (date), stats (None, or attempts, correct, accuracy 0-1, time_spent_ms,
      distinct_questions, sessions), streak, longest_streak, reviews_due, goal, timezone;
    study_reminder: today (date), answered_today, goal, remaining, reviews_due, streak,
      streak_at_risk;
    achievement: achievement (title, description, kind, threshold), subject_name (or None),
      value (the figure that earned it, or None), earned_on (date);
    weekly_report, admin_report: analytics.reports.report_context(report), has_chart (the
      HTML shows the chart as cid:CHART_CONTENT_ID, which the sender attaches inline);
    system_report: title, generated_at (aware datetime), status ("healthy", "degraded", ...),
      sections (list of {"heading": str, "rows": [[label, value], ...]});
    test: sent_by, backend (the EMAIL_BACKEND path), sent_at (aware datetime).
    """
    kind = str(kind)
    prepare = _PREPARE.get(kind)
    if prepare is None:
        raise ValueError(f"Unknown email kind {kind!r}.")
    values = dict(context)
    values.setdefault("base_url", "")
    values["base_url"] = (values["base_url"] or "").rstrip("/")
    if not values.get("kind_label"):
        values["kind_label"] = KIND_LABELS[kind]
    values["name"] = values.get("name") or "there"
    values["kind"] = kind
    values["is_staff_kind"] = kind in _STAFF_KINDS
    prepare(values)

    subject = _one_line(get_template(f"{TEMPLATE_DIR}/{kind}.subject.txt").render(values))
    values["subject"] = subject
    text = _tidy_text(get_template(f"{TEMPLATE_DIR}/{kind}.txt").render(values))
    html = _INLINER.inline(get_template(f"{TEMPLATE_DIR}/{kind}.html").render(values))
    return RenderedEmail(subject=subject, text=text, html=html)


def _one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, and at most SUBJECT_MAX_CHARS characters."""
    text = " ".join(text.split())
    if len(text) > SUBJECT_MAX_CHARS:
        text = text[:SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    return text


def _tidy_text(text: str) -> str:
    """Template tags leave blank lines where they stood: at most one blank line in a row."""
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"


# --- Display strings --------------------------------------------------------------------------


def _day_text(day: datetime.date) -> str:
    """Thursday 3 December."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def _date_text(day: datetime.date) -> str:
    """Thursday 3 December 2026."""
    return f"{_day_text(day)} {day.year}"


def _moment_text(moment: datetime.datetime | None) -> str:
    """2026-12-03 06:30 UTC (a naive datetime is taken to be UTC already)."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _percent_text(ratio: float | None) -> str:
    """0.72 -> 72%; – when there is nothing to divide."""
    return "–" if ratio is None else f"{100 * ratio:.0f}%"


def _duration_text(ms: int | None) -> str:
    """12 min, or 1 h 05 min (rounded to the minute)."""
    minutes = round((ms or 0) / 60_000)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _goal_percent(done: int, goal: int) -> int:
    """How much of a goal is met, for the progress bar: 0 to 100."""
    if not goal:
        return 100
    return max(0, min(100, round(100 * done / goal)))


def _plural(count: float, one: str, many: str) -> str:
    return one if count == 1 else many


# --- Per kind ---------------------------------------------------------------------------------


def _as_date(value: datetime.date | str) -> datetime.date:
    """A date, or its ISO form (as a task's arguments carry it)."""
    return datetime.date.fromisoformat(value) if isinstance(value, str) else value


def _daily_summary(values: dict) -> None:
    values["day_text"] = _day_text(_as_date(values["day"]))
    values.setdefault("timezone", "UTC")
    stats = values.get("stats")
    if stats:
        goal = values.get("goal") or 0
        values["accuracy_text"] = _percent_text(stats.get("accuracy"))
        values["time_text"] = _duration_text(stats.get("time_spent_ms"))
        values["goal_met"] = stats["attempts"] >= goal
        values["goal_left"] = max(goal - stats["attempts"], 0)
        values["goal_percent"] = _goal_percent(stats["attempts"], goal)


def _study_reminder(values: dict) -> None:
    values["today_text"] = _day_text(_as_date(values["today"]))
    values["goal_percent"] = _goal_percent(values.get("answered_today", 0),
                                           values.get("goal") or 0)


def _achievement(values: dict) -> None:
    values["earned_text"] = _date_text(_as_date(values["earned_on"]))
    achievement = values["achievement"]
    kind, threshold, value = (achievement.get("kind"), achievement.get("threshold"),
                              values.get("value"))
    values["value_text"] = "" if value is None else _achievement_figure(kind, value)
    values["threshold_text"] = ("" if threshold is None
                                else _achievement_figure(kind, threshold, short=True))


def _achievement_figure(kind: str | None, figure: float, *, short: bool = False) -> str:
    """An achievement's figure in words, the value that earned it ("88% right at the first
    try") or, short, its threshold ("80%"): streaks in days, distinct questions, accuracy and
    mastery in percent (as analytics stores them)."""
    number = round(figure)
    if kind == "streak":
        days = f"{number} {_plural(number, 'day', 'days')}"
        return days if short else f"{days} in a row"
    if kind == "questions":
        noun = _plural(number, "question", "questions")
        return f"{number} {noun}" if short else f"{number} different {noun}"
    if kind in ("accuracy", "mastery"):
        return f"{number}%" if short else f"{number}% right at the first try"
    return f"{figure:g}"


def _report(values: dict) -> None:
    # Always the Content-ID the sender attaches the chart under, whatever the context says
    # (analytics' stored report HTML uses its own, `cid:chart`).
    values["chart_src"] = f"cid:{CHART_CONTENT_ID}"
    values.setdefault("has_chart", False)


_STATUS_TONES = {"healthy": "good", "ok": "good", "degraded": "warn", "warning": "warn",
                 "critical": "bad", "failing": "bad", "down": "bad", "unhealthy": "bad"}


def _system_report(values: dict) -> None:
    values["generated_text"] = _moment_text(values.get("generated_at"))
    values["status_tone"] = _STATUS_TONES.get(str(values.get("status", "")).lower(), "other")
    values.setdefault("sections", [])


def _test(values: dict) -> None:
    values["sent_text"] = _moment_text(values.get("sent_at"))


_PREPARE: dict[str, Callable[[dict], None]] = {
    Notification.Kind.DAILY_SUMMARY: _daily_summary,
    Notification.Kind.STUDY_REMINDER: _study_reminder,
    Notification.Kind.ACHIEVEMENT: _achievement,
    Notification.Kind.WEEKLY_REPORT: _report,
    Notification.Kind.ADMIN_REPORT: _report,
    Notification.Kind.SYSTEM_REPORT: _system_report,
    Notification.Kind.TEST: _test,
}
