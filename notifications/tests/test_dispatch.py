"""The dispatcher end to end (notifications_dispatch with a simulated clock): one daily summary per
local day at local 08:00 in every kind of time zone, daylight-saving days included; running twice,
or in two processes at once, sends nothing twice; preferences, quiet hours, the pause, a
dispatcher that was down; achievements; query counts that do not grow with students."""

import datetime
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import pytest

from analytics.models import StudentAchievement
from core.models import Achievement
from notifications.models import EmailDelivery, Notification, UndeliverableAddress
from notifications.services import (
    notifications_dispatch,
    staff_email_queue,
    student_email_pause,
    student_email_resume,
    test_email_send,
)
from notifications.tests.conftest import at, daily_stats, ledger, planned_until, sent_to

Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason
STEP = datetime.timedelta(minutes=15)

pytestmark = pytest.mark.django_db


def local_at(zone: str, day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, hour, minute,
                             tzinfo=ZoneInfo(zone)).astimezone(datetime.UTC)


def run_dispatcher(start: datetime.datetime, end: datetime.datetime, outbox) -> dict:
    """The dispatcher every 15 minutes from `start` to `end` (both included): which run sent
    each message, as {(address, kind header): [run times]}."""
    sent_by_run = defaultdict(list)
    now = start
    while now <= end:
        before = len(outbox)
        notifications_dispatch(now=now)
        for message in outbox[before:]:
            sent_by_run[(message.to[0], message.extra_headers["X-Pastq-Kind"])].append(now)
        now += STEP
    return sent_by_run


# --- One summary per local day at local 08:00 ----------------------------------------------------


ZONES = {
    # zone: UTC offset on the simulated days (checked, so the test says what it covers)
    "Pacific/Auckland": datetime.timedelta(hours=13),
    "Pacific/Chatham": datetime.timedelta(hours=13, minutes=45),
    "Pacific/Honolulu": datetime.timedelta(hours=-10),
    "Asia/Kathmandu": datetime.timedelta(hours=5, minutes=45),
    "America/New_York": None,  # 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST
}


def test_every_zone_gets_one_summary_a_day_at_local_eight(make_student, outbox):
    start, end = at("2026-10-31 00:00"), at("2026-11-03 12:00")
    students = {zone: make_student(zone, study_reminder=False, weekly_report=False,
                                   achievements=False) for zone in ZONES}
    for zone, offset in ZONES.items():
        if offset:
            assert datetime.datetime(2026, 11, 2, tzinfo=ZoneInfo(zone)).utcoffset() == offset
    assert local_at("America/New_York", datetime.date(2026, 11, 1), 8) == at("2026-11-01 13:00")
    assert local_at("America/New_York", datetime.date(2026, 10, 31), 8) == at("2026-10-31 12:00")

    sent_by_run = run_dispatcher(start, end, outbox)

    for zone, student in students.items():
        # Local days whose 08:00 fell in what the dispatcher covered: (start − 15 min, end].
        expected = {}
        day = (start - STEP).astimezone(ZoneInfo(zone)).date()
        while (eight := local_at(zone, day, 8)) <= end:
            if eight > start - STEP:
                expected[(day - datetime.timedelta(days=1)).isoformat()] = eight
            day += datetime.timedelta(days=1)
        rows = sent_to(student, Kind.DAILY_SUMMARY)
        assert {row.period: row.due_at for row in rows} == expected, zone
        assert len(rows) == len(expected) >= 3
        runs = sent_by_run[(student.email, Kind.DAILY_SUMMARY)]
        assert len(runs) == len(expected), zone
        # Each went out in the first run at or after its local 08:00.
        assert [run - due for run, due in zip(runs, sorted(expected.values()), strict=True)
                ] == [datetime.timedelta(0)] * len(runs), zone
    assert ledger().exclude(status=Status.SENT).count() == 0
