"""Planning: which student emails have reached their local send time, written into the ledger.

The dispatcher runs every 15 minutes. Each run plans the send times that fell in
(`since`, `now`], where `since` is where the last run stopped (EmailDelivery.dispatched_until;
no earlier than NOTIFICATIONS_PLAN_LOOKBACK ago): it works out in Python, per time zone in use,
the local clock's span over that interval, then selects the due students of every zone in one
query (`timezone__in` for a fixed send time, a local-time range per zone for the reminder's
chosen time). Each due student gets one ledger row per kind and period, inserted with
ON CONFLICT DO NOTHING on (recipient, kind, period): two dispatchers, or one run twice, plan
each email once. A send time already past its window when planned (the dispatcher was down)
becomes a skipped row with the reason, so the ledger says what was not sent and why.

Whether there is anything to say (activity, a goal not met, a report) is decided when the row
is sent (notifications/content.py), from the figures of that moment.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q

from analytics import selectors as analytics_selectors
from core.models import StudentProfile
from notifications.models import EmailDelivery, Notification, NotificationPreference
from notifications.preferences import kind_allowed, undeliverable_addresses

UTC = datetime.UTC
Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason

# How far back a run looks when the last one is older (or there was none): a dispatcher down
# longer than this leaves no skipped rows for what it missed before.
PLAN_LOOKBACK = datetime.timedelta(hours=48)
INSERT_BATCH = 1000


@dataclass(frozen=True)
class ZoneSpan:
    """The local wall-clock span (start, end] of one zone over a UTC interval."""

    zone: str
    start: datetime.datetime  # naive local
    end: datetime.datetime  # naive local


@dataclass
class PlanOutcome:
    planned: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict:
        return {"planned": dict(self.planned), "skipped": dict(self.skipped)}


def send_window() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.NOTIFICATIONS_SEND_WINDOW_MINUTES)


def local_time_setting(name: str) -> datetime.time:
    return datetime.time.fromisoformat(getattr(settings, name))


def zone_spans(zones, since: datetime.datetime, now: datetime.datetime) -> list[ZoneSpan]:
    """Each zone's local clock over (since, now], naive (wall-clock) times. Comparing wall
    clocks makes a send time on a daylight-saving change day fall in a run's span: 08:00 is
    08:00 whatever the offset, a reminder set in the skipped hour of a spring change still
    falls between the runs either side of it, and one in the repeated hour of an autumn change
    falls in the run after its first pass (and again after its second: the ledger's once per
    period keeps the first)."""
    spans = []
    for zone in zones:
        tz = ZoneInfo(zone)
        start = since.astimezone(tz).replace(tzinfo=None)
        end = now.astimezone(tz).replace(tzinfo=None)
        # When the clock went back in between (01:45 EDT to 01:00 EST), the span must still
        # reach what the clock showed before it went back (01:45 to 02:00 EDT, the first pass
        # through the repeated hour): start plus the time that passed. Times the second pass
        # shows again are planned again, and the ledger keeps the first.
        spans.append(ZoneSpan(zone, start, max(end, start + (now - since))))
    return spans


def local_to_utc(zone: str, local: datetime.datetime) -> datetime.datetime:
    """A wall-clock time in `zone` as UTC: a time in a spring gap counts as after the change,
    a repeated autumn time as its first occurrence (fold 0)."""
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def fixed_time_due(spans: list[ZoneSpan], at: datetime.time, *, weekday: int | None = None
                   ) -> dict[str, list[datetime.date]]:
    """The zones whose local `at` (on `weekday`, Monday 0, when given) fell in their span, with
    the local dates it fell on, oldest first (one for spans shorter than a day; more when the
    dispatcher was down for longer, each of them to be recorded)."""
    due = defaultdict(list)
    for span in spans:
        day = span.start.date()
        while day <= span.end.date():
            moment = datetime.datetime.combine(day, at)
            if span.start < moment <= span.end and (weekday is None or day.weekday() == weekday):
                due[span.zone].append(day)
            day += datetime.timedelta(days=1)
    return dict(due)


def time_of_day_filter(spans: list[ZoneSpan], field_name: str) -> Q:
    """A Q selecting the students whose chosen local time (`field_name`, a TimeField) fell in
    their zone's span, and for each zone the local dates the span covers (to tell which date a
    time belongs to). Zones are grouped by identical spans (most share their offset), each
    group one `timezone__in` term; a span that crosses midnight is two ranges."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for span in spans:
        groups[(span.start, span.end)].append(span.zone)
    condition = Q(pk__in=[])
    for (start, end), zones in groups.items():
        if end - start >= datetime.timedelta(days=1):
            # Every time of day. (Not an empty Q OR-ed to Q(pk__in=[]): Django drops an empty
            # Q from an OR, which would leave nothing.)
            times = Q()
        elif start.date() == end.date():
            times = Q(**{f"{field_name}__gt": start.time(), f"{field_name}__lte": end.time()})
        else:
            times = (Q(**{f"{field_name}__gt": start.time()})
                     | Q(**{f"{field_name}__lte": end.time()}))
        condition |= Q(user__profile__timezone__in=zones) & times
    return condition


def dates_of_time_in_span(span: ZoneSpan, at: datetime.time) -> list[datetime.date]:
    """The local dates on which `at` fell inside the span, oldest first (one for spans shorter
    than a day)."""
    dates = []
    day = span.start.date()
    while day <= span.end.date():
        if span.start < datetime.datetime.combine(day, at) <= span.end:
            dates.append(day)
        day += datetime.timedelta(days=1)
    return dates


# --- The plan -------------------------------------------------------------------------------


@dataclass
class _Row:
    user_id: int
    address: str
    kind: str
    period: str
    due_at: datetime.datetime
    preference: NotificationPreference | None
    zone: str
    achievement_id: int | None = None


def plan(*, now: datetime.datetime, since: datetime.datetime | None = None) -> PlanOutcome:
    """Plan every student email whose send time fell in (since, now]; `since` defaults to where
    the last run stopped. Idempotent: rows that exist are left as they are."""
    if since is None:
        since = _planned_until(now)
    since = max(since, now - PLAN_LOOKBACK)
    zones = list(StudentProfile.objects.order_by().values_list("timezone", flat=True).distinct())
    spans = zone_spans(zones, since, now) if since < now else []
    rows: list[_Row] = []
    if spans:
        rows += _daily_summaries(spans)
        rows += _weekly_reports(spans)
        rows += _study_reminders(spans)
    rows += _achievements(now)
    outcome = _write(rows, now=now)
    _mark_planned(now)
    return outcome


def _planned_until(now: datetime.datetime) -> datetime.datetime:
    state = EmailDelivery.objects.filter(pk=1).values_list("dispatched_until", flat=True).first()
    return state or now - datetime.timedelta(minutes=15)


def _mark_planned(now: datetime.datetime) -> None:
    EmailDelivery.objects.get_or_create(pk=1)
    # Never move it back: a slower concurrent run that started earlier must not.
    EmailDelivery.objects.filter(pk=1).filter(
        Q(dispatched_until__isnull=True) | Q(dispatched_until__lt=now)
    ).update(dispatched_until=now)


def _profiles(condition: Q):
    """Due students with what planning needs, in one query."""
    return (NotificationPreference.objects
            .filter(condition, user__is_active=True, user__profile__isnull=False)
            .select_related("user", "user__profile")
            .order_by("user_id"))


def _daily_summaries(spans: list[ZoneSpan]) -> list[_Row]:
    at = local_time_setting("NOTIFICATIONS_DAILY_SUMMARY_TIME")
    due = fixed_time_due(spans, at)
    if not due:
        return []
    rows = []
    for pref in _profiles(Q(user__profile__timezone__in=list(due))):
        zone = pref.user.profile.timezone
        for local_day in due[zone]:
            closed_day = local_day - datetime.timedelta(days=1)
            rows.append(_Row(pref.user_id, pref.user.email, Kind.DAILY_SUMMARY,
                             closed_day.isoformat(),
                             local_to_utc(zone, datetime.datetime.combine(local_day, at)),
                             pref, zone))
    return rows


def _weekly_reports(spans: list[ZoneSpan]) -> list[_Row]:
    at = local_time_setting("NOTIFICATIONS_WEEKLY_REPORT_TIME")
    due = fixed_time_due(spans, at, weekday=0)
    if not due:
        return []
    rows = []
    for pref in _profiles(Q(user__profile__timezone__in=list(due))):
        zone = pref.user.profile.timezone
        for monday in due[zone]:
            year, week, _ = (monday - datetime.timedelta(days=7)).isocalendar()
            rows.append(_Row(pref.user_id, pref.user.email, Kind.WEEKLY_REPORT,
                             f"{year}-W{week:02d}",
                             local_to_utc(zone, datetime.datetime.combine(monday, at)), pref,
                             zone))
    return rows


def _study_reminders(spans: list[ZoneSpan]) -> list[_Row]:
    condition = time_of_day_filter(spans, "reminder_time")
    by_zone = {span.zone: span for span in spans}
    rows = []
    for pref in _profiles(condition):
        zone = pref.user.profile.timezone
        # No date when the filter is coarser than the span (at a midnight edge).
        for day in dates_of_time_in_span(by_zone[zone], pref.reminder_time):
            rows.append(_Row(
                pref.user_id, pref.user.email, Kind.STUDY_REMINDER, day.isoformat(),
                local_to_utc(zone, datetime.datetime.combine(day, pref.reminder_time)), pref,
                zone))
    return rows


def _achievements(now: datetime.datetime) -> list[_Row]:
    """Achievements earned in the last 48 hours and not announced: claimed (announced_at set
    by a conditional UPDATE) in the same transaction that writes their ledger rows."""
    found = list(analytics_selectors.achievements_to_announce(now=now))
    if not found:
        return []
    prefs = {p.user_id: p for p in NotificationPreference.objects.filter(
        user_id__in={a.student_id for a in found}).select_related("user__profile")}
    rows = []
    for earned in found:
        pref = prefs.get(earned.student_id)
        zone = pref.user.profile.timezone if pref and hasattr(pref.user, "profile") else "UTC"
        rows.append(_Row(earned.student_id, earned.student.email, Kind.ACHIEVEMENT,
                         f"achievement-{earned.pk}", now, pref, zone,
                         achievement_id=earned.pk))
    return rows


def decide(rows: list[_Row], *, now: datetime.datetime) -> list[Notification]:
    """Ledger rows (unsaved) for planned emails: queued with when they may go (after the due
    time and any quiet hours), or skipped with the reason (no address, undeliverable, opted
    out, the window already passed, quiet hours lasting past it)."""
    window = send_window()
    undeliverable = undeliverable_addresses({r.address for r in rows})
    objects = []
    for row in rows:
        expires_at = (row.due_at + datetime.timedelta(hours=48) if row.kind == Kind.ACHIEVEMENT
                      else row.due_at + window)
        send_after, reason = row.due_at, ""
        if not row.address:
            reason = Reason.NO_ADDRESS
        elif row.address.lower() in undeliverable:
            reason = Reason.UNDELIVERABLE
        elif row.preference is None or not kind_allowed(row.preference, row.kind):
            reason = Reason.OPTED_OUT
        elif now >= expires_at:
            reason = Reason.OUTSIDE_WINDOW
        else:
            send_after = max(row.due_at, now)
            quiet_end = quiet_hours_end(row.preference, row.zone, send_after)
            if quiet_end is not None:
                if quiet_end >= expires_at:
                    reason = Reason.QUIET_HOURS
                else:
                    send_after = quiet_end
        objects.append(Notification(
            user_id=row.user_id, address=row.address, recipient=f"user:{row.user_id}",
            kind=row.kind, period=row.period,
            status=Status.SKIPPED if reason else Status.QUEUED, reason=reason,
            due_at=row.due_at, send_after=send_after, expires_at=expires_at,
            achievement_id=row.achievement_id, created_at=now, updated_at=now))
        if row.preference is not None:
            # For a dry run's content check: the loaded user and profile, no query.
            objects[-1].user = row.preference.user
    return objects


def _write(rows: list[_Row], *, now: datetime.datetime) -> PlanOutcome:
    outcome = PlanOutcome()
    objects = decide(rows, now=now)
    for obj in objects:
        (outcome.skipped if obj.status == Status.SKIPPED else outcome.planned)[obj.kind] += 1
    achievement_ids = [r.achievement_id for r in rows if r.achievement_id]
    with transaction.atomic():
        _insert_new(objects)
        if achievement_ids:
            analytics_selectors.achievements_mark_announced(achievement_ids, now=now)
    return outcome


def _insert_new(objects: list[Notification]) -> None:
    """INSERT … ON CONFLICT (recipient, kind, period) DO NOTHING, INSERT_BATCH rows a
    statement. Not bulk_create(ignore_conflicts=True): Django 5.2 assumes SQLite takes at most
    999 parameters a statement and would split a plan into statements of 38 rows, so the
    dispatcher's query count would grow with the number of students (SQLite has allowed
    32,766 since 3.32, PostgreSQL 65,535)."""
    fields = [f for f in Notification._meta.concrete_fields if not f.primary_key]
    quote = db_connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = min(INSERT_BATCH, 32_000 // len(fields))
    for start in range(0, len(objects), per_statement):
        batch = objects[start:start + per_statement]
        params = [f.get_db_prep_save(getattr(obj, f.attname), db_connection)
                  for obj in batch for f in fields]
        with db_connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(Notification._meta.db_table)} ({columns}) "
                f"VALUES {', '.join([one] * len(batch))} "
                "ON CONFLICT (recipient, kind, period) DO NOTHING", params)


def write(rows: list[_Row], *, now: datetime.datetime) -> PlanOutcome:
    """Insert the ledger rows of `rows` (existing ones are left as they are)."""
    return _write(rows, now=now)


# --- An operator's send of one kind now (send_notifications) ----------------------------------


def rows_for_kind(kind: str, *, now: datetime.datetime, day: datetime.date | None = None,
                  emails: list[str] | None = None) -> list[_Row]:
    """The emails of `kind` for every student (or those of `emails`), due now: the daily
    summary of `day` (default: each student's last closed day), the reminder of `day`
    (default: each student's local today), the weekly report of the ISO week holding `day`
    (default: each student's last closed week), the achievements not yet announced."""
    if kind == Kind.ACHIEVEMENT:
        rows = _achievements(now)
        if emails is not None:
            wanted = {e.lower() for e in emails}
            rows = [r for r in rows if r.address.lower() in wanted]
        return rows
    condition = Q()
    if emails is not None:
        condition = Q(user__email__in=emails)
    rows = []
    for pref in _profiles(condition):
        zone = pref.user.profile.timezone
        local_today = now.astimezone(ZoneInfo(zone)).date()
        if kind == Kind.DAILY_SUMMARY:
            period = (day or local_today - datetime.timedelta(days=1)).isoformat()
        elif kind == Kind.STUDY_REMINDER:
            period = (day or local_today).isoformat()
        elif kind == Kind.WEEKLY_REPORT:
            monday = (day - datetime.timedelta(days=day.weekday()) if day
                      else local_today - datetime.timedelta(days=local_today.weekday() + 7))
            year, week, _ = monday.isocalendar()
            period = f"{year}-W{week:02d}"
        else:
            raise ValueError(f"{kind} is not a student email kind")
        rows.append(_Row(pref.user_id, pref.user.email, kind, period, now, pref, zone))
    return rows


def quiet_hours_end(preference: NotificationPreference, zone: str,
                    at: datetime.datetime) -> datetime.datetime | None:
    """When the student's quiet hours that `at` falls in end (UTC), or None when `at` is not
    in quiet hours."""
    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    if not preference.is_quiet_at(local.time().replace(tzinfo=None)):
        return None
    end_day = local.date()
    if preference.quiet_hours_end <= local.time().replace(tzinfo=None):
        end_day += datetime.timedelta(days=1)
    return local_to_utc(zone, datetime.datetime.combine(end_day, preference.quiet_hours_end))
