"""Stored reports (docs/analytics.md, "Reports"): a weekly report per student, built once that
student's ISO week has closed in their time zone, and a daily and a weekly report for the staff,
built once the day or week has closed everywhere (D+1 12:00 UTC). Each is one `Report` row: its
figures (`data`, JSON), its HTML (autoescaped Django templates, inline styles, fit for email)
and its chart as a PNG (analytics/charts.py).

The stored HTML references the chart as `cid:chart` (REPORT_CHART_CID), ready for an email that
attaches the PNG inline with that Content-ID; `report_html(report)` gives the same HTML with the
PNG embedded as a data: URI, for the admin. The chart is stored once, as bytes.

Figures come from the attempts themselves (`Attempt.local_date`, the student's local date), so a
report is right whenever it is built, whatever the rollups have done. Student reports are built
a chunk of students at a time, in a constant number of queries per chunk (the chunk's people,
their daily figures, their week's distinct questions and sessions, their subjects, one upsert),
whatever the chunk's size; the charts and HTML are drawn in Python, one chart per report.
"""

from __future__ import annotations

import base64
import datetime
import json
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection
from django.db.models import Count, Exists, FloatField, Max, OuterRef, Q, Sum
from django.db.models.functions import Cast
from django.template.loader import get_template
from django.utils import timezone

from analytics.charts import activity_chart_png
from analytics.models import QuestionStats, Report
from core.models import Attempt, JobRun, Question, QuestionStep, StudentProfile

REPORT_CHART_CID = "chart"
# The one place the stored HTML names the chart; student names and question texts are escaped
# (a quote becomes &quot;), so no text from a person can contain it.
_CHART_SRC = f'src="cid:{REPORT_CHART_CID}"'

CHUNK_SIZE = 500
# Admin reports: how far back a missing one is still built, and what they list.
ADMIN_DUE_DAYS = 7
ADMIN_DUE_WEEKS = 7
ADMIN_CHART_DAYS = 14  # a daily report's chart: its day and the 13 before it
TOP_SUBJECTS = 5
HARDEST_QUESTIONS = 5
HARDEST_MIN_FIRST_ATTEMPTS = 10
FAILED_JOBS_LISTED = 10
QUESTION_TEXT_CHARS = 140
# A local date D has ended everywhere (UTC−12) at D+1 12:00 UTC: 36 hours after D 00:00 UTC.
CLOSED_EVERYWHERE_AFTER = datetime.timedelta(hours=36)

_DAY = datetime.timedelta(days=1)
_WEEK = datetime.timedelta(days=7)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --- Periods --------------------------------------------------------------------------------


def _monday(day: datetime.date) -> datetime.date:
    return day - datetime.timedelta(days=day.weekday())


def week_label(monday: datetime.date) -> str:
    iso_year, iso_week, _ = monday.isocalendar()
    return f"{iso_year}-W{iso_week:02d}"


def last_closed_week(timezone_name: str, now: datetime.datetime) -> datetime.date:
    """The Monday of the last ISO week that has ended in this time zone at `now` (the week
    before the local one)."""
    local_today = now.astimezone(zoneinfo.ZoneInfo(timezone_name)).date()
    return _monday(local_today) - _WEEK


def last_day_closed_everywhere(now: datetime.datetime) -> datetime.date:
    """The last local date that has ended in every time zone at `now`."""
    return (now.astimezone(datetime.UTC) - CLOSED_EVERYWHERE_AFTER).date()


def closed_everywhere_at(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), datetime.UTC) + CLOSED_EVERYWHERE_AFTER


def _fmt_day(day: datetime.date, *, weekday: bool = False) -> str:
    text = f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
    return f"{_WEEKDAYS[day.weekday()]} {text}" if weekday else text


def _span(first: datetime.date, last: datetime.date) -> str:
    return f"{_fmt_day(first)} – {_fmt_day(last)}"


# --- Students: which reports are due --------------------------------------------------------


def student_weekly_reports_due(now: datetime.datetime | None = None
                               ) -> list[tuple[int, int, int]]:
    """(student_id, iso_year, iso_week) of the students whose last ISO week has closed in their
    time zone, with answers in that week or the week before, and no report for it yet. Two
    queries: the distinct time zones, then the students (one condition per distinct week: at
    most two at any instant)."""
    now = now or timezone.now()
    plan = _students_by_week(now, week=None, missing_only=True)
    return sorted((student_id, *monday.isocalendar()[:2])
                  for monday, ids in plan.items() for student_id in ids)


def _students_by_week(now, *, week: datetime.date | None, missing_only: bool
                      ) -> dict[datetime.date, list[int]]:
    """Students with a profile and answers in the week or the week before, by week: `week`, or
    when None each one's last closed week; a student whose week has not closed is left out."""
    zones_by_week: dict[datetime.date, list[str]] = defaultdict(list)
    for name in StudentProfile.objects.order_by().values_list("timezone", flat=True).distinct():
        closed = last_closed_week(name, now)
        if week is None:
            zones_by_week[closed].append(name)
        elif week <= closed:
            zones_by_week[week].append(name)
    if not zones_by_week:
        return {}
    condition = Q(pk__in=[])
    for monday, names in zones_by_week.items():
        active = Exists(Attempt.objects.filter(
            student_id=OuterRef("user_id"), local_date__range=(monday - _WEEK, monday + 6 * _DAY)))
        part = Q(timezone__in=names) & Q(active)
        if missing_only:
            part &= ~Q(Exists(Report.objects.filter(
                kind=Report.Kind.STUDENT_WEEKLY, student_id=OuterRef("user_id"),
                period_start=monday)))
        condition |= part
    week_of = {name: monday for monday, names in zones_by_week.items() for name in names}
    plan: dict[datetime.date, list[int]] = defaultdict(list)
    for student_id, name in (StudentProfile.objects.filter(condition).order_by("user_id")
                             .values_list("user_id", "timezone")):
        plan[week_of[name]].append(student_id)
    return dict(plan)


def _given_students_by_week(student_ids: Iterable[int], now, *, week: datetime.date | None
                            ) -> dict[datetime.date, list[int]]:
    ids = sorted({int(pk) for pk in student_ids})
    plan: dict[datetime.date, list[int]] = defaultdict(list)
    for start in range(0, len(ids), CHUNK_SIZE):
        for student_id, name in (StudentProfile.objects
                                 .filter(user_id__in=ids[start:start + CHUNK_SIZE])
                                 .order_by("user_id").values_list("user_id", "timezone")):
            closed = last_closed_week(name, now)
            if week is None:
                plan[closed].append(student_id)
            elif week <= closed:
                plan[week].append(student_id)
    return dict(plan)


# --- Students: building -----------------------------------------------------------------------


def student_weekly_reports_build(student_ids: Iterable[int] | None = None, *,
                                 iso_year: int | None = None, iso_week: int | None = None,
                                 now: datetime.datetime | None = None) -> int:
    """Build (upsert) the weekly reports of these students (None: every student with answers in
    the week or the week before) for ISO week iso_year-iso_week, or when not given for each
    one's last closed week in their time zone. A student whose week has not closed yet at `now`,
    or who has no profile, is skipped. Returns the reports written. Five queries per chunk of
    CHUNK_SIZE students (plus two to choose them, or one per chunk of given ids)."""
    now = now or timezone.now()
    if (iso_year is None) != (iso_week is None):
        raise ValueError("Give both iso_year and iso_week, or neither.")
    week = datetime.date.fromisocalendar(iso_year, iso_week, 1) if iso_year else None
    if student_ids is None:
        plan = _students_by_week(now, week=week, missing_only=False)
    else:
        plan = _given_students_by_week(student_ids, now, week=week)
    built = 0
    for monday in sorted(plan):
        ids = plan[monday]
        for start in range(0, len(ids), CHUNK_SIZE):
            built += _student_chunk_build(monday, ids[start:start + CHUNK_SIZE], now)
    return built


def _student_chunk_build(monday: datetime.date, ids: list[int], now) -> int:
    previous, sunday = monday - _WEEK, monday + 6 * _DAY
    people = {row[0]: row[1:] for row in StudentProfile.objects.filter(user_id__in=ids)
              .values_list("user_id", "timezone", "user__first_name", "user__last_name",
                           "user__email")}
    attempts = Attempt.objects.filter(student_id__in=ids).order_by()
    figures = _figures()
    daily: dict[int, dict[datetime.date, dict]] = defaultdict(dict)
    for row in (attempts.filter(local_date__range=(previous, sunday))
                .values("student_id", "local_date").annotate(**figures)):
        daily[row["student_id"]][row["local_date"]] = row
    week_attempts = attempts.filter(local_date__range=(monday, sunday))
    distinct = {row["student_id"]: row for row in week_attempts.values("student_id").annotate(
        questions=Count("question_id", distinct=True), sessions=Count("session_id",
                                                                      distinct=True))}
    subjects: dict[int, list[dict]] = defaultdict(list)
    for row in (week_attempts.values("student_id", "question__subject__code",
                                     "question__subject__name").annotate(**figures)
                .order_by("student_id", "-attempts", "question__subject__code")):
        subjects[row["student_id"]].append({
            "code": row["question__subject__code"], "name": row["question__subject__name"],
            "attempts": row["attempts"], "correct": row["correct"],
            "accuracy": _ratio(row["correct"], row["attempts"]),
            "time_spent_ms": row["time_spent_ms"]})

    template = get_template("analytics/reports/student_weekly.html")
    label = week_label(monday)
    rows = []
    for student_id in ids:
        if student_id not in people:
            continue  # the profile went meanwhile
        zone, first_name, last_name, email = people[student_id]
        days = daily.get(student_id, {})
        this_week = [_day_figures(monday + n * _DAY, days) for n in range(7)]
        last_week = [_day_figures(previous + n * _DAY, days) for n in range(7)]
        counts = distinct.get(student_id, {})
        data = {
            "kind": Report.Kind.STUDENT_WEEKLY, "label": label,
            "iso_year": monday.isocalendar()[0], "iso_week": monday.isocalendar()[1],
            "period_start": monday.isoformat(), "period_end": sunday.isoformat(),
            "student": {"id": student_id, "name": f"{first_name} {last_name}".strip(),
                        "email": email, "timezone": zone},
            "totals": {**_sum_days(this_week),
                       "distinct_questions": counts.get("questions", 0),
                       "sessions": counts.get("sessions", 0)},
            "previous_week": {"period_start": previous.isoformat(), **_sum_days(last_week)},
            "days": this_week,
            "subjects": subjects.get(student_id, []),
            "built_at": now.isoformat(),
        }
        png = _chart(this_week, f"Your week {label}: {_span(monday, sunday)}")
        html = template.render(_student_context(data))
        rows.append((student_id, data, html, png))
    _upsert(Report.Kind.STUDENT_WEEKLY, monday, sunday, label, rows, now)
    return len(rows)


def _figures() -> dict:
    return {"attempts": Count("id"), "correct": Count("id", filter=Q(is_correct=True)),
            "time_spent_ms": Sum("time_taken_ms")}


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _day_figures(day: datetime.date, rows: dict) -> dict:
    row = rows.get(day)
    attempts, correct = (row["attempts"], row["correct"]) if row else (0, 0)
    return {"date": day.isoformat(), "attempts": attempts, "correct": correct,
            "accuracy": _ratio(correct, attempts),
            "time_spent_ms": row["time_spent_ms"] if row else 0}


def _sum_days(days: list[dict]) -> dict:
    attempts = sum(d["attempts"] for d in days)
    correct = sum(d["correct"] for d in days)
    return {"attempts": attempts, "correct": correct, "accuracy": _ratio(correct, attempts),
            "time_spent_ms": sum(d["time_spent_ms"] for d in days),
            "active_days": sum(1 for d in days if d["attempts"])}


def _chart(days: list[dict], title: str) -> bytes:
    return activity_chart_png(
        [datetime.date.fromisoformat(d["date"]) for d in days], [d["attempts"] for d in days],
        [None if d["accuracy"] is None else 100 * d["accuracy"] for d in days], title=title)


# --- Admin reports --------------------------------------------------------------------------


def admin_reports_due(now: datetime.datetime | None = None) -> list[tuple[str, datetime.date]]:
    """(kind, period_start) of the admin reports to build: each of the last ADMIN_DUE_DAYS
    local dates closed everywhere (admin_daily) and each of the last ADMIN_DUE_WEEKS ISO weeks
    closed everywhere (admin_weekly, by their Monday) that has no report yet. One query."""
    now = now or timezone.now()
    last_day = last_day_closed_everywhere(now)
    days = [last_day - n * _DAY for n in range(ADMIN_DUE_DAYS)]
    last_week = _monday(last_day + _DAY) - _WEEK
    weeks = [last_week - n * _WEEK for n in range(ADMIN_DUE_WEEKS)]
    have = set(Report.objects.filter(
        Q(kind=Report.Kind.ADMIN_DAILY, period_start__in=days)
        | Q(kind=Report.Kind.ADMIN_WEEKLY, period_start__in=weeks),
        student__isnull=True).values_list("kind", "period_start"))
    due = [(Report.Kind.ADMIN_DAILY.value, day) for day in sorted(days)]
    due += [(Report.Kind.ADMIN_WEEKLY.value, monday) for monday in sorted(weeks)]
    return [item for item in due if item not in have]


def admin_report_build(kind: str, period_start: datetime.date, *,
                       now: datetime.datetime | None = None) -> Report:
    """Build (upsert) the admin report of one local date (admin_daily) or one ISO week
    (admin_weekly, period_start its Monday) and return its row. ValueError for another kind, a
    weekly start that is not a Monday, or a period that has not closed everywhere at `now`.
    A constant number of queries (about a dozen), whatever the data."""
    now = now or timezone.now()
    if kind == Report.Kind.ADMIN_DAILY:
        period_end = period_start
        chart_first = period_start - (ADMIN_CHART_DAYS - 1) * _DAY
        label = period_start.isoformat()
        title = f"Daily report {label}: the {ADMIN_CHART_DAYS} days to it"
    elif kind == Report.Kind.ADMIN_WEEKLY:
        if period_start.weekday() != 0:
            raise ValueError(f"A weekly report starts on a Monday; {period_start} is not one.")
        chart_first, period_end = period_start, period_start + 6 * _DAY
        label = week_label(period_start)
        title = f"Weekly report {label}: {_span(period_start, period_end)}"
    else:
        raise ValueError(f"Unknown admin report kind {kind!r}.")
    if now < closed_everywhere_at(period_end):
        raise ValueError(f"{label} has not closed everywhere yet: it does at "
                         f"{closed_everywhere_at(period_end):%Y-%m-%d %H:%M} UTC.")
    data = _admin_data(str(kind), period_start, period_end, chart_first, label, now)
    png = _chart(data["days"], title)
    html = get_template("analytics/reports/admin.html").render(_admin_context(data))
    _upsert(str(kind), period_start, period_end, label, [(None, data, html, png)], now)
    return Report.objects.get(kind=kind, student__isnull=True, period_start=period_start)


def _admin_data(kind, first, last, chart_first, label, now) -> dict:
    period = Attempt.objects.filter(local_date__range=(first, last)).order_by()
    totals = period.aggregate(**_figures(), students=Count("student_id", distinct=True),
                              first_attempts=Count("id", filter=Q(attempt_number=1)))
    by_day = {row["local_date"]: row for row in (
        Attempt.objects.filter(local_date__range=(chart_first, last)).order_by()
        .values("local_date").annotate(**_figures(),
                                       students=Count("student_id", distinct=True)))}
    days = []
    for n in range((last - chart_first).days + 1):
        day = chart_first + n * _DAY
        figures = _day_figures(day, by_day)
        figures["active_students"] = by_day[day]["students"] if day in by_day else 0
        days.append(figures)
    top_subjects = [
        {"code": row["question__subject__code"], "name": row["question__subject__name"],
         "attempts": row["attempts"], "correct": row["correct"],
         "accuracy": _ratio(row["correct"], row["attempts"]), "students": row["students"]}
        for row in period.values("question__subject__code", "question__subject__name")
        .annotate(**_figures(), students=Count("student_id", distinct=True))
        .order_by("-attempts", "question__subject__code")[:TOP_SUBJECTS]]
    hardest = [
        {"id": row["question_id"], "subject": row["question__subject__code"],
         "text": _shorten(row["question__text"]), "first_attempts": row["attempts"],
         "correct": row["correct"], "accuracy": row["correct"] / row["attempts"]}
        for row in period.filter(attempt_number=1)
        .values("question_id", "question__text", "question__subject__code")
        .annotate(**_figures())
        .filter(attempts__gte=HARDEST_MIN_FIRST_ATTEMPTS)
        .annotate(share=Cast("correct", FloatField()) / Cast("attempts", FloatField()))
        .order_by("share", "-attempts", "question_id")[:HARDEST_QUESTIONS]]
    attempts, correct = totals["attempts"], totals["correct"] or 0
    return {
        "kind": kind, "label": label, "period_start": first.isoformat(),
        "period_end": last.isoformat(),
        "totals": {"attempts": attempts, "correct": correct,
                   "accuracy": _ratio(correct, attempts),
                   "time_spent_ms": totals["time_spent_ms"] or 0,
                   "active_students": totals["students"],
                   "first_attempts": totals["first_attempts"] or 0,
                   "new_signups": _signups(first, last)},
        "days": days,
        "top_subjects": top_subjects,
        "hardest_questions": hardest,
        "review_flags": _review_flags(),
        "ai_backlog": _ai_backlog(),
        "failed_jobs": _failed_jobs(first, last),
        "built_at": now.isoformat(),
    }


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUESTION_TEXT_CHARS else text[:QUESTION_TEXT_CHARS - 1] + "…"


def _signups(first: datetime.date, last: datetime.date) -> int:
    """Students whose account was created (User.date_joined) on a local date first … last in
    their own time zone. Two queries: the time zones, then one count with one condition per
    distinct UTC window."""
    zones_by_window: dict[tuple, list[str]] = defaultdict(list)
    for name in StudentProfile.objects.order_by().values_list("timezone", flat=True).distinct():
        zone = zoneinfo.ZoneInfo(name)
        window = (datetime.datetime.combine(first, datetime.time(), zone),
                  datetime.datetime.combine(last + _DAY, datetime.time(), zone))
        zones_by_window[window].append(name)
    if not zones_by_window:
        return 0
    condition = Q(pk__in=[])
    for (start, end), names in zones_by_window.items():
        condition |= Q(timezone__in=names, user__date_joined__gte=start,
                       user__date_joined__lt=end)
    return StudentProfile.objects.filter(condition).count()


_FLAGS_SQL = {
    "sqlite": """SELECT f.value, COUNT(*) FROM {stats} s JOIN {question} q ON q.id = s.question_id,
                 json_each(s.flags) AS f WHERE q.status <> %s GROUP BY f.value""",
    "postgresql": """SELECT f, COUNT(*) FROM {stats} s JOIN {question} q ON q.id = s.question_id
                     CROSS JOIN LATERAL jsonb_array_elements_text(s.flags) AS f
                     WHERE q.status <> %s GROUP BY f""",
}


def _review_flags() -> dict:
    """Now (not of the period): questions by review flag (QuestionStats.flags, retired questions
    left out), the questions with at least one flag other than not_enough_data, and those whose
    AI explanation disagrees with their key."""
    sql = _FLAGS_SQL[connection.vendor].format(
        stats=connection.ops.quote_name(QuestionStats._meta.db_table),
        question=connection.ops.quote_name(Question._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [Question.Status.RETIRED])
        counts = dict(sorted(cursor.fetchall()))
    live = QuestionStats.objects.exclude(question__status=Question.Status.RETIRED)
    flagged = live.exclude(flags=[]).exclude(flags=["not_enough_data"]).count()
    disagreements = Question.objects.filter(ai_key_disagreement=True).exclude(
        status=Question.Status.RETIRED).count()
    return {"counts": counts, "questions_flagged": flagged,
            "ai_key_disagreement": disagreements}


def _ai_backlog() -> dict:
    """Now: the AI pipeline's steps waiting (pending) and failed, per step."""
    backlog = {"pending": {}, "failed": {}}
    for row in (QuestionStep.objects.filter(status__in=[QuestionStep.Status.PENDING,
                                                        QuestionStep.Status.FAILED])
                .order_by().values("status", "step").annotate(n=Count("id"))
                .order_by("status", "step")):
        backlog[row["status"]][row["step"]] = row["n"]
    backlog["pending_total"] = sum(backlog["pending"].values())
    backlog["failed_total"] = sum(backlog["failed"].values())
    return backlog


def _failed_jobs(first: datetime.date, last: datetime.date) -> dict:
    """Job runs that failed (JobRun.FAILURES: failed, retrying, gave up, lost) started on the
    UTC dates first … last, by job and outcome, most first."""
    start = datetime.datetime.combine(first, datetime.time(), datetime.UTC)
    end = datetime.datetime.combine(last + _DAY, datetime.time(), datetime.UTC)
    rows = list(JobRun.objects.filter(outcome__in=JobRun.FAILURES, started_at__gte=start,
                                      started_at__lt=end)
                .values("job", "outcome").annotate(n=Count("id"), last=Max("started_at"))
                .order_by("-n", "job", "outcome"))
    return {"total": sum(row["n"] for row in rows),
            "by_job": [{"job": row["job"], "outcome": row["outcome"], "count": row["n"],
                        "last_started_at": row["last"].isoformat()}
                       for row in rows[:FAILED_JOBS_LISTED]],
            "more": max(0, len(rows) - FAILED_JOBS_LISTED)}


# --- Writing --------------------------------------------------------------------------------

_UPSERT = """
INSERT INTO {table} (kind, student_id, period_start, period_end, label, data, html, chart_png,
                     created_at, updated_at)
VALUES {values}
{conflict} DO UPDATE SET
    period_end = excluded.period_end, label = excluded.label, data = excluded.data,
    html = excluded.html, chart_png = excluded.chart_png, updated_at = excluded.updated_at
"""
# The two partial unique indexes (Report.Meta): one row per kind, student and start, or per
# kind and start for the admin reports. The WHERE names the partial index to both databases.
_CONFLICT_STUDENT = "ON CONFLICT (kind, student_id, period_start) WHERE student_id IS NOT NULL"
_CONFLICT_ADMIN = "ON CONFLICT (kind, period_start) WHERE student_id IS NULL"
_JSON_PARAM = {"sqlite": "%s", "postgresql": "CAST(%s AS JSONB)"}
# Rows per statement: 10 parameters each, well under SQLite's 32,766.
_UPSERT_ROWS = 500


def _upsert(kind: str, first: datetime.date, last: datetime.date, label: str,
            rows: list[tuple[int | None, dict, str, bytes]], now) -> None:
    """INSERT … ON CONFLICT DO UPDATE of the rows (created_at is kept), _UPSERT_ROWS a
    statement: one statement for a chunk of CHUNK_SIZE students."""
    ops = connection.ops
    one = f"(%s, %s, %s, %s, %s, {_JSON_PARAM[connection.vendor]}, %s, %s, %s, %s)"
    stamp = ops.adapt_datetimefield_value(now)
    start, end = ops.adapt_datefield_value(first), ops.adapt_datefield_value(last)
    for offset in range(0, len(rows), _UPSERT_ROWS):
        batch = rows[offset:offset + _UPSERT_ROWS]
        sql = _UPSERT.format(table=ops.quote_name(Report._meta.db_table),
                             values=", ".join([one] * len(batch)),
                             conflict=_CONFLICT_ADMIN if batch[0][0] is None
                             else _CONFLICT_STUDENT)
        params = []
        for student_id, data, html, png in batch:
            params += [str(kind), student_id, start, end, label, json.dumps(data), html, png,
                       stamp, stamp]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


# --- HTML -----------------------------------------------------------------------------------


def report_html(report: Report, *, for_email: bool = False) -> str:
    """The report's HTML: for an email as stored, the chart referenced as
    `cid:{REPORT_CHART_CID}` (attach `report.chart_png` inline with that Content-ID); otherwise
    with the chart embedded as a data: URI, for a browser (the admin)."""
    if for_email or not report.chart_png:
        return report.html
    uri = "data:image/png;base64," + base64.b64encode(bytes(report.chart_png)).decode("ascii")
    return report.html.replace(_CHART_SRC, f'src="{uri}"', 1)


def report_context(report: Report) -> dict:
    """The template context a report's HTML was rendered from (its stored figures, formatted):
    for the notifications app's report emails, which set it in their own layout."""
    if report.kind == Report.Kind.STUDENT_WEEKLY:
        return _student_context(report.data)
    return _admin_context(report.data)


def _percent(accuracy: float | None) -> str:
    return "–" if accuracy is None else f"{100 * accuracy:.0f}%"


def _minutes(ms: int) -> str:
    minutes = round(ms / 60_000)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _day_rows(days: list[dict]) -> list[dict]:
    return [{"day": _fmt_day(datetime.date.fromisoformat(d["date"]), weekday=True),
             "attempts": d["attempts"], "correct": d["correct"],
             "accuracy": _percent(d["accuracy"]), "students": d.get("active_students")}
            for d in days]


def _student_context(data: dict) -> dict:
    totals, before = data["totals"], data["previous_week"]
    first = datetime.date.fromisoformat(data["period_start"])
    last = datetime.date.fromisoformat(data["period_end"])
    student = data["student"]
    return {
        "title": f"Your week {data['label']}", "span": _span(first, last),
        "chart_src": f"cid:{REPORT_CHART_CID}",
        "chart_alt": _chart_alt(data["days"]),
        "name": student["name"] or student["email"],
        "totals": {**totals, "accuracy": _percent(totals["accuracy"]),
                   "time": _minutes(totals["time_spent_ms"])},
        "previous": {**before, "accuracy": _percent(before["accuracy"]),
                     "time": _minutes(before["time_spent_ms"])},
        "days": _day_rows(data["days"]),
        "subjects": [{**s, "accuracy": _percent(s["accuracy"])} for s in data["subjects"]],
        "timezone": student["timezone"],
    }


def _admin_context(data: dict) -> dict:
    totals = data["totals"]
    first = datetime.date.fromisoformat(data["period_start"])
    last = datetime.date.fromisoformat(data["period_end"])
    daily = data["kind"] == Report.Kind.ADMIN_DAILY
    built = datetime.datetime.fromisoformat(data["built_at"]).astimezone(datetime.UTC)
    return {
        "title": (f"Daily report {data['label']}" if daily
                  else f"Weekly report {data['label']}"),
        "span": _fmt_day(first, weekday=True) if daily else _span(first, last),
        "daily": daily,
        "chart_src": f"cid:{REPORT_CHART_CID}",
        "chart_alt": _chart_alt(data["days"]),
        "totals": {**totals, "accuracy": _percent(totals["accuracy"]),
                   "time": _minutes(totals["time_spent_ms"])},
        "days": _day_rows(data["days"]),
        "top_subjects": [{**s, "accuracy": _percent(s["accuracy"])}
                         for s in data["top_subjects"]],
        "hardest_questions": [{**q, "accuracy": _percent(q["accuracy"])}
                              for q in data["hardest_questions"]],
        "hardest_min": HARDEST_MIN_FIRST_ATTEMPTS,
        "flags": sorted(data["review_flags"]["counts"].items()),
        "review": data["review_flags"],
        "backlog": data["ai_backlog"],
        "backlog_rows": [
            (step, data["ai_backlog"]["pending"].get(step, 0),
             data["ai_backlog"]["failed"].get(step, 0))
            for step in sorted(set(data["ai_backlog"]["pending"])
                               | set(data["ai_backlog"]["failed"]))],
        "failed_jobs": data["failed_jobs"],
        "built_at": f"{built:%Y-%m-%d %H:%M} UTC",
    }


def _chart_alt(days: list[dict]) -> str:
    """The chart in words, for mail clients that block images and for screen readers."""
    parts = []
    for d in days:
        day = datetime.date.fromisoformat(d["date"])
        name = _WEEKDAYS[day.weekday()] if len(days) <= 7 else f"{day.day} {_MONTHS[day.month - 1]}"
        accuracy = f" ({_percent(d['accuracy'])})" if d["accuracy"] is not None else ""
        parts.append(f"{name} {d['attempts']}{accuracy}")
    return "Answers per day (accuracy): " + ", ".join(parts)
