"""Planning (notifications/planning.py): which local send times fell between two dispatcher runs
in every kind of time zone (offsets of a quarter or half hour, UTC+13 and beyond, UTC−10, every
daylight-saving change of 2026, one at midnight), chosen reminder times in a skipped or repeated
hour, and decide(): the window, quiet hours (also across midnight), opt-outs, undeliverable
addresses."""

import datetime
import random
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest

from notifications import planning
from notifications.models import Notification, NotificationPreference, UndeliverableAddress
from notifications.tests.conftest import at, ledger, planned_until

UTC = datetime.UTC
Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason
STEP = datetime.timedelta(minutes=15)
EIGHT = datetime.time(8, 0)

ZONES = ["Pacific/Auckland", "Pacific/Chatham", "Pacific/Honolulu", "Asia/Kathmandu",
         "America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago",
         "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Tehran", "UTC"]
# Simulated stretches: each 2026 daylight-saving change of the zones above, and December
# (Auckland at UTC+13, Chatham at +13:45).
CHANGE_DAYS = ["2026-03-08", "2026-03-29", "2026-04-05", "2026-09-06", "2026-09-27",
               "2026-10-04", "2026-10-25", "2026-11-01", "2026-12-05"]


def local_utc(zone: str, day: datetime.date, at_time: datetime.time) -> datetime.datetime:
    return planning.local_to_utc(zone, datetime.datetime.combine(day, at_time))


def runs(start: datetime.datetime, end: datetime.datetime, *, jitter: random.Random | None = None):
    """Dispatcher run times from start to end: every 15 minutes, or (jitter) late by up to
    14 minutes, sometimes twice in a row at the same moment, sometimes missing one."""
    now = start
    while now <= end:
        if jitter is None:
            yield now
        elif jitter.random() > 0.1:
            moment = now + datetime.timedelta(minutes=jitter.randrange(15))
            yield moment
            if jitter.random() < 0.05:
                yield moment
        now += STEP


def fixed_time_hits(zones, moments, at_time, **kwargs) -> dict[str, list]:
    """{zone: [(local date, run time)]} of the runs in which `at_time` fell, each run covering
    (previous run, this run]."""
    hits = defaultdict(list)
    moments = list(moments)
    for since, now in zip(moments, moments[1:], strict=False):
        if since >= now:
            continue
        for zone, days in planning.fixed_time_due(
                planning.zone_spans(zones, since, now), at_time, **kwargs).items():
            hits[zone] += [(day, now) for day in days]
    return hits, moments[0], moments[-1]


@pytest.mark.parametrize(("change_day", "jittery"), [
    *[(day, False) for day in CHANGE_DAYS],
    # Late and irregular runs: a change at midnight, by half an hour, and back an hour.
    ("2026-09-06", True), ("2026-10-04", True), ("2026-11-01", True),
])
def test_local_eight_falls_in_exactly_one_run_per_local_day(change_day, jittery):
    day = datetime.date.fromisoformat(change_day)
    start = datetime.datetime.combine(day - datetime.timedelta(days=1), datetime.time(), UTC)
    moments = runs(start, start + datetime.timedelta(days=2),
                   jitter=random.Random(change_day) if jittery else None)

    hits, first, last = fixed_time_hits(ZONES, moments, EIGHT)

    for zone in ZONES:
        expected = []
        local = first.astimezone(ZoneInfo(zone)).date()
        while (moment := local_utc(zone, local, EIGHT)) <= last:
            if moment > first:
                expected.append(local)
            local += datetime.timedelta(days=1)
        assert [hit_day for hit_day, _ in hits[zone]] == expected, zone
        for hit_day, run in hits[zone]:
            due = local_utc(zone, hit_day, EIGHT)
            assert due <= run, (zone, hit_day)
            if not jittery:  # the first run at or after it
                assert run - due < STEP, (zone, hit_day)


def test_the_offsets_the_simulation_covers():
    def offset(zone, when):
        return at(when).astimezone(ZoneInfo(zone)).utcoffset()

    assert offset("Pacific/Auckland", "2026-12-05 12:00") == datetime.timedelta(hours=13)
    assert offset("Pacific/Chatham", "2026-12-05 12:00") == datetime.timedelta(hours=13, minutes=45)
    assert offset("Pacific/Kiritimati", "2026-12-05 12:00") == datetime.timedelta(hours=14)
    assert offset("Pacific/Honolulu", "2026-12-05 12:00") == datetime.timedelta(hours=-10)
    assert offset("Asia/Kathmandu", "2026-12-05 12:00") == datetime.timedelta(hours=5, minutes=45)
    # A change of half an hour (Lord Howe), and one at local midnight (Santiago, 2026-09-06).
    assert offset("Australia/Lord_Howe", "2026-04-06 00:00") == datetime.timedelta(hours=10.5)
    assert datetime.datetime(2026, 9, 6, 0, 30, tzinfo=ZoneInfo("America/Santiago")
                             ).astimezone(UTC) == at("2026-09-06 04:30")


def test_the_weekly_report_time_falls_on_mondays_only():
    start = at("2026-11-28 00:00")  # Saturday
    hits, *_ = fixed_time_hits(ZONES, runs(start, start + datetime.timedelta(days=4)), EIGHT,
                               weekday=0)

    for zone in ZONES:
        [(day, _)] = hits[zone]
        assert day == datetime.date(2026, 11, 30), zone


def test_a_span_crossing_midnight_or_a_clock_going_back():
    [span] = planning.zone_spans(["America/New_York"], at("2026-11-01 05:45"),
                                 at("2026-11-01 06:00"))
    # 01:45 EDT to 01:00 EST: the clock went back, but the run covered 01:45 to 02:00 EDT.
    assert (span.start.time(), span.end.time()) == (datetime.time(1, 45), datetime.time(2, 0))
    assert planning.dates_of_time_in_span(span, datetime.time(1, 50)) == [
        datetime.date(2026, 11, 1)]
    assert planning.dates_of_time_in_span(span, datetime.time(1, 30)) == []
    [span] = planning.zone_spans(["Pacific/Kiritimati"], at("2026-12-05 09:45"),
                                 at("2026-12-05 10:00"))
    assert planning.dates_of_time_in_span(span, datetime.time(0, 0)) == [
        datetime.date(2026, 12, 6)]
    assert planning.dates_of_time_in_span(span, datetime.time(23, 50)) == [
        datetime.date(2026, 12, 5)]
    # Longer than a day (the dispatcher was down): every date.
    [span] = planning.zone_spans(["UTC"], at("2026-12-07 06:00"), at("2026-12-09 12:00"))
    assert planning.dates_of_time_in_span(span, datetime.time(8)) == [
        datetime.date(2026, 12, 7), datetime.date(2026, 12, 8), datetime.date(2026, 12, 9)]
    assert planning.fixed_time_due([span], datetime.time(8)) == {"UTC": [
        datetime.date(2026, 12, 7), datetime.date(2026, 12, 8), datetime.date(2026, 12, 9)]}


# --- Chosen reminder times, through the database --------------------------------------------


REMINDER_TIMES = ["23:50", "00:00", "00:30", "01:30", "01:50", "02:30", "03:00", "04:00"]


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "day"), [
    ("America/New_York", "2026-03-08"),  # 02:00 → 03:00: 02:30 does not exist
    ("America/New_York", "2026-11-01"),  # 02:00 → 01:00: 01:30 and 01:50 happen twice
    ("America/Santiago", "2026-09-06"),  # 00:00 → 01:00: the day starts at 01:00
])
def test_a_chosen_reminder_time_is_planned_once_a_day_even_when_the_clock_skips_or_repeats_it(
        make_student, zone, day):
    day = datetime.date.fromisoformat(day)
    students = {text: make_student(zone, daily_summary=False, weekly_report=False,
                                   reminder_time=datetime.time.fromisoformat(text))
                for text in REMINDER_TIMES}
    tz = ZoneInfo(zone)
    # The dispatcher every 15 minutes from 22:00 before the change day to 04:00 on it (local).
    start = datetime.datetime.combine(day - datetime.timedelta(days=1), datetime.time(22),
                                      tz).astimezone(UTC)
    end = datetime.datetime.combine(day, datetime.time(4), tz).astimezone(UTC)
    planned_until(start)
    now = start
    while now < end:
        now += STEP
        planning.plan(now=now)

    for text, student in students.items():
        chosen = datetime.time.fromisoformat(text)
        [row] = ledger(user=student, kind=Kind.STUDY_REMINDER)  # once, though 01:30 came twice
        local_day = day - datetime.timedelta(days=1) if chosen > datetime.time(12) else day
        assert row.period == local_day.isoformat(), text
        wall = datetime.datetime.combine(local_day, chosen)
        first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold 0: a repeated time's first
        if first.astimezone(tz).replace(tzinfo=None) != wall:  # the clock skipped it
            first = (wall + datetime.timedelta(hours=1)).replace(tzinfo=tz).astimezone(UTC)
        assert row.due_at == first, (text, row.due_at)
        assert row.status == Status.QUEUED
        assert row.due_at <= row.send_after < row.due_at + STEP  # planned by the next run
    if zone == "America/New_York" and day.month == 11:
        assert ledger(user=students["01:30"]).get().due_at == at("2026-11-01 05:30")  # EDT
    if zone == "America/Santiago":
        assert ledger(user=students["00:00"]).get().due_at == at("2026-09-06 04:00")  # 01:00


# --- decide(): queued, when, or skipped and why ---------------------------------------------


def decided(user, *, now, kind=Kind.DAILY_SUMMARY, due="2026-12-09 08:00", zone=None,
            address=None):
    preference = NotificationPreference.objects.select_related("user__profile").get(user=user)
    zone = zone or preference.user.profile.timezone
    [row] = planning.decide([planning._Row(
        user.pk, user.email if address is None else address, kind, "2026-12-08", at(due),
        preference, zone)], now=at(now))
    return row


def quiet(user, start, end):
    NotificationPreference.objects.filter(user=user).update(
        quiet_hours_start=datetime.time.fromisoformat(start),
        quiet_hours_end=datetime.time.fromisoformat(end))


@pytest.mark.django_db
def test_decide_queues_within_the_window_and_skips_after_it(make_student, settings):
    settings.NOTIFICATIONS_SEND_WINDOW_MINUTES = 120
    student = make_student()

    on_time = decided(student, now="2026-12-09 08:00")
    late = decided(student, now="2026-12-09 09:59")
    too_late = decided(student, now="2026-12-09 10:00")
    achievement = decided(student, now="2026-12-09 08:00", kind=Kind.ACHIEVEMENT)

    assert (on_time.status, on_time.send_after, on_time.expires_at) == (
        Status.QUEUED, at("2026-12-09 08:00"), at("2026-12-09 10:00"))
    assert (late.status, late.send_after) == (Status.QUEUED, at("2026-12-09 09:59"))
    assert (too_late.status, too_late.reason) == (Status.SKIPPED, Reason.OUTSIDE_WINDOW)
    assert achievement.expires_at == at("2026-12-11 08:00")  # 48 hours
    assert on_time.recipient == f"user:{student.pk}" and on_time.period == "2026-12-08"


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "end", "expected"), [
    ("07:00", "09:00", (Status.QUEUED, "", "2026-12-09 09:00")),  # waits for their end
    ("07:00", "09:59", (Status.QUEUED, "", "2026-12-09 09:59")),
    ("07:00", "10:00", (Status.SKIPPED, Reason.QUIET_HOURS, None)),  # ends with the window
    ("06:00", "11:00", (Status.SKIPPED, Reason.QUIET_HOURS, None)),
    ("22:00", "08:30", (Status.QUEUED, "", "2026-12-09 08:30")),  # across midnight
    ("22:00", "07:00", (Status.QUEUED, "", "2026-12-09 08:00")),  # over before 08:00
    ("08:00", "08:00", (Status.QUEUED, "", "2026-12-09 08:00")),  # start = end: never quiet
    ("08:01", "09:00", (Status.QUEUED, "", "2026-12-09 08:00")),  # not yet quiet
])
def test_decide_waits_for_quiet_hours_inside_the_window(make_student, start, end, expected):
    student = make_student()
    quiet(student, start, end)

    row = decided(student, now="2026-12-09 08:00")

    assert (row.status, row.reason) == expected[:2]
    if expected[2]:
        assert row.send_after == at(expected[2])


@pytest.mark.django_db
def test_quiet_hours_are_the_students_local_hours(make_student):
    student = make_student("Pacific/Auckland")  # UTC+13: 08:00 local is 19:00 UTC
    quiet(student, "07:00", "09:00")
    reminder = make_student("Pacific/Auckland")
    quiet(reminder, "22:00", "07:00")

    row = decided(student, due="2026-12-08 19:00", now="2026-12-08 19:00")
    # A reminder at 23:00 local: quiet until 07:00 the next morning, past its window.
    late = decided(reminder, kind=Kind.STUDY_REMINDER, due="2026-12-08 10:00",
                   now="2026-12-08 10:00")

    assert (row.status, row.send_after) == (Status.QUEUED, at("2026-12-08 20:00"))
    assert (late.status, late.reason) == (Status.SKIPPED, Reason.QUIET_HOURS)
    assert planning.quiet_hours_end(
        NotificationPreference.objects.get(user=reminder), "Pacific/Auckland",
        at("2026-12-08 10:00")) == at("2026-12-08 18:00")  # 07:00 NZDT


@pytest.mark.django_db
def test_decide_skips_opted_out_undeliverable_and_addressless_students(make_student):
    everything_off = make_student(email_enabled=False)
    summary_off = make_student(daily_summary=False)
    bounced = make_student(email="Bounced@Example.com")
    UndeliverableAddress.objects.create(address="bounced@example.com", reason="bounced")
    plain = make_student()

    rows = [decided(everything_off, now="2026-12-09 08:00"),
            decided(summary_off, now="2026-12-09 08:00"),
            decided(summary_off, now="2026-12-09 08:00", kind=Kind.STUDY_REMINDER),
            decided(bounced, now="2026-12-09 08:00"),
            decided(plain, now="2026-12-09 08:00", address="")]

    assert [(r.status, r.reason) for r in rows] == [
        (Status.SKIPPED, Reason.OPTED_OUT), (Status.SKIPPED, Reason.OPTED_OUT),
        (Status.QUEUED, ""), (Status.SKIPPED, Reason.UNDELIVERABLE),
        (Status.SKIPPED, Reason.NO_ADDRESS)]


def test_is_quiet_at():
    def pref(start, end):
        return NotificationPreference(
            quiet_hours_start=start and datetime.time.fromisoformat(start),
            quiet_hours_end=end and datetime.time.fromisoformat(end))

    night, day, none = pref("22:00", "07:00"), pref("12:00", "14:00"), pref(None, None)
    assert [night.is_quiet_at(datetime.time.fromisoformat(t))
            for t in ("21:59", "22:00", "03:00", "06:59", "07:00")] == [
        False, True, True, True, False]
    assert [day.is_quiet_at(datetime.time.fromisoformat(t))
            for t in ("11:59", "12:00", "13:59", "14:00")] == [False, True, True, False]
    assert not none.is_quiet_at(datetime.time(3))
