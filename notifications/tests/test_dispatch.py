"""The dispatcher end to end (notifications_dispatch with a simulated clock): one daily summary per
local day at local 08:00 in every kind of time zone, daylight-saving days included; running twice,
or in two processes at once, sends nothing twice; preferences, quiet hours, the pause, a
dispatcher that was down; achievements; weekly reports waiting for their report; query counts
that do not grow with students."""

import datetime
from collections import Counter, defaultdict
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import StudentAchievement
from analytics.reports import student_weekly_reports_build
from core.models import Achievement
from core.services import attempt_record
from core.tests.factories import make_question
from notifications import services, tasks
from notifications.models import EmailDelivery, Notification, UndeliverableAddress
from notifications.services import notifications_dispatch
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
    each message, as {(address, kind): [run times]}."""
    sent_by_run = defaultdict(list)
    now = start
    while now <= end:
        before = len(outbox)
        notifications_dispatch(now=now)
        for message in outbox[before:]:
            sent_by_run[(message.to[0], message.extra_headers["X-Pastq-Kind"])].append(now)
        now += STEP
    return sent_by_run


def clock(moment: datetime.datetime):
    """Services that read the wall clock (resume, resend, the test email) at `moment`."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


def statuses(*users, kind=Kind.DAILY_SUMMARY) -> list[tuple[str, str]]:
    return [tuple(ledger(user=user, kind=kind).values_list("status", "reason").get())
            for user in users]


# --- One summary per local day at local 08:00 ----------------------------------------------------


ZONES = {
    # zone: its UTC offset on the simulated days (checked: the test says what it covers)
    "Pacific/Auckland": datetime.timedelta(hours=13),
    "Pacific/Chatham": datetime.timedelta(hours=13, minutes=45),
    "Pacific/Honolulu": datetime.timedelta(hours=-10),
    "Asia/Kathmandu": datetime.timedelta(hours=5, minutes=45),
    "America/New_York": None,  # 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST
}


def test_every_zone_gets_one_summary_and_one_reminder_a_day_at_its_local_time(
        make_student, outbox):
    start, end = at("2026-10-31 10:00"), at("2026-11-02 14:00")
    students = {zone: make_student(zone, weekly_report=False) for zone in ZONES}
    for zone, offset in ZONES.items():
        if offset is not None:
            assert datetime.datetime(2026, 11, 2, tzinfo=ZoneInfo(zone)).utcoffset() == offset
    # The change day: 08:00 is 12:00 UTC the day before, 13:00 UTC on it.
    assert local_at("America/New_York", datetime.date(2026, 10, 31), 8) == at("2026-10-31 12:00")
    assert local_at("America/New_York", datetime.date(2026, 11, 1), 8) == at("2026-11-01 13:00")

    sent_by_run = run_dispatcher(start, end, outbox)

    for zone, student in students.items():
        for kind, hour, period_offset in ((Kind.DAILY_SUMMARY, 8, -1), (Kind.STUDY_REMINDER, 18, 0)):
            # The local days whose send time fell in what the runs covered: (start − 15 min, end].
            expected = {}
            day = (start - STEP).astimezone(ZoneInfo(zone)).date()
            while (moment := local_at(zone, day, hour)) <= end:
                if moment > start - STEP:
                    expected[(day + datetime.timedelta(days=period_offset)).isoformat()] = moment
                day += datetime.timedelta(days=1)
            assert len(expected) >= 2, (zone, kind)
            rows = sent_to(student, kind)
            assert {row.period: row.due_at for row in rows} == expected, (zone, kind)
            # Each went out in the run at its local time (every offset here is a multiple of
            # 15 minutes, so a run falls exactly on it).
            assert sent_by_run[(student.email, kind)] == sorted(expected.values()), (zone, kind)
    # Monday 2026-11-02 08:00: the weekly reports they switched off.
    assert set(ledger().exclude(status=Status.SENT).values_list("kind", "status", "reason")) == {
        (Kind.WEEKLY_REPORT, Status.SKIPPED, Reason.OPTED_OUT)}
    assert len(outbox) == ledger(status=Status.SENT).count()


# --- Running twice --------------------------------------------------------------------------


def test_the_dispatcher_run_twice_sends_nothing_twice(make_student, outbox):
    students = [make_student("Europe/London"), make_student("Europe/London")]
    planned_until(at("2026-12-09 07:45"))

    first = notifications_dispatch(now=at("2026-12-09 08:00"))
    again = notifications_dispatch(now=at("2026-12-09 08:00"))
    # A retried job that planned the same span again (its first try died before recording it).
    planned_until(at("2026-12-09 07:45"))
    retried = notifications_dispatch(now=at("2026-12-09 08:00"))

    assert first["planned"] == {Kind.DAILY_SUMMARY: 2}
    assert first["sent"]["sent"] == 2
    assert again["planned"] == {} and "sent" not in again["sent"]
    assert retried["planned"] == {Kind.DAILY_SUMMARY: 2}  # planned, but the ledger has them
    assert "sent" not in retried["sent"]
    assert len(outbox) == 2
    assert sorted(m.to[0] for m in outbox) == sorted(s.email for s in students)
    assert ledger().count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_send_each_email_once(make_student, smtp, dispatcher_processes):
    students = [make_student(zone) for zone in ["UTC", "Europe/London", "Africa/Abidjan"] * 4]
    planned_until(at("2026-12-09 07:45"))

    # Small batches: the two claim batch after batch against each other.
    code, output = dispatcher_processes(2, at("2026-12-09 08:00"), EMAIL_URL=smtp.url,
                                        NOTIFICATIONS_BATCH_SIZE="2")

    assert code == 0, output
    assert output.count("dispatcher ") == 2, output
    received = Counter(message["To"] for message in smtp.messages)
    assert received == Counter({student.email: 1 for student in students})
    assert ledger(status=Status.SENT).count() == len(students) == ledger().count()
    assert set(ledger().values_list("attempts", flat=True)) == {1}


# --- Preferences ----------------------------------------------------------------------------


def test_preferences_quiet_hours_and_addresses_decide_what_each_student_gets(
        make_student, outbox):
    plain = make_student()
    all_off = make_student(email_enabled=False)
    summary_off = make_student(daily_summary=False)
    quiet_short = make_student(quiet_hours_start=datetime.time(7, 30),
                               quiet_hours_end=datetime.time(9, 0))
    quiet_long = make_student(quiet_hours_start=datetime.time(6, 0),
                              quiet_hours_end=datetime.time(11, 0))
    quiet_overnight = make_student(quiet_hours_start=datetime.time(22, 0),
                                   quiet_hours_end=datetime.time(7, 0))  # not at 08:00
    bounced = make_student(email="Bounced@Example.com")
    UndeliverableAddress.objects.create(address="bounced@example.com", reason="bounced")
    idle = make_student(review_due=False)
    active = make_student(review_due=False)
    daily_stats(active, datetime.date(2026, 12, 8), attempts=14, correct=7)
    planned_until(at("2026-12-09 07:45"))

    sent_by_run = run_dispatcher(at("2026-12-09 08:00"), at("2026-12-09 10:30"), outbox)

    assert statuses(plain, all_off, summary_off, quiet_short, quiet_long, quiet_overnight,
                    bounced, idle, active) == [
        (Status.SENT, ""), (Status.SKIPPED, Reason.OPTED_OUT), (Status.SKIPPED, Reason.OPTED_OUT),
        (Status.SENT, ""), (Status.SKIPPED, Reason.QUIET_HOURS), (Status.SENT, ""),
        (Status.SKIPPED, Reason.UNDELIVERABLE), (Status.SKIPPED, Reason.NOTHING_TO_SAY),
        (Status.SENT, "")]
    assert sent_by_run[(plain.email, Kind.DAILY_SUMMARY)] == [at("2026-12-09 08:00")]
    # Quiet until 09:00: sent when they end, still inside the two-hour window.
    assert sent_by_run[(quiet_short.email, Kind.DAILY_SUMMARY)] == [at("2026-12-09 09:00")]
    assert ledger(user=quiet_short).get().send_after == at("2026-12-09 09:00")
    assert len(outbox) == 4
    [message] = [m for m in outbox if m.to == [active.email]]
    assert "14 answers, 50% right" in message.subject
    assert "Answers:   14, 7 right (50%)" in message.body


def test_study_reminder_says_what_is_left_and_is_skipped_once_the_goal_is_met(
        make_student, outbox):
    behind = make_student(goal=5, daily_summary=False)
    done = make_student(goal=2, daily_summary=False)
    question = make_question()
    choice = question.choices.get(label="B")
    for student, answers in ((behind, 2), (done, 2)):
        for minute in range(answers):
            attempt_record(student=student, question=question, choice=choice,
                           time_taken_ms=9000, answered_at=at(f"2026-12-09 10:0{minute}"))
    planned_until(at("2026-12-09 17:45"))

    notifications_dispatch(now=at("2026-12-09 18:00"))

    assert statuses(behind, done, kind=Kind.STUDY_REMINDER) == [
        (Status.SENT, ""), (Status.SKIPPED, Reason.GOAL_MET)]
    assert ledger(user=done).get().detail == "2 answered today, goal 2"
    [message] = outbox
    assert message.to == [behind.email]
    assert message.subject == "3 questions left to reach today's goal"
    assert "Today's goal: 2 of 5 questions answered." in message.body


def test_a_dispatcher_down_for_hours_skips_what_left_its_window_and_sends_the_rest(
        make_student, outbox):
    missed = make_student("UTC")  # 08:00 UTC: its window closed at 10:00
    late = make_student("Atlantic/Cape_Verde")  # 08:00 is 09:00 UTC: its window is open
    notifications_dispatch(now=at("2026-12-09 06:00"))
    # Down from 06:00 to 10:15.
    result = notifications_dispatch(now=at("2026-12-09 10:15"))

    assert result["skipped"] == {Kind.DAILY_SUMMARY: 1}
    assert statuses(missed, late) == [(Status.SKIPPED, Reason.OUTSIDE_WINDOW), (Status.SENT, "")]
    assert ledger(user=missed).get().due_at == at("2026-12-09 08:00")
    assert [m.to for m in outbox] == [[late.email]]


def test_a_dispatcher_down_for_more_than_a_day_records_every_send_it_missed(
        make_student, outbox):
    student = make_student("UTC")  # summaries at 08:00, reminders at 18:00
    notifications_dispatch(now=at("2026-12-08 06:00"))
    # Down for 30 hours, past two summaries and a reminder.
    notifications_dispatch(now=at("2026-12-09 12:00"))

    assert [(r.kind, r.period, r.status, r.reason) for r in ledger(user=student)] == [
        (Kind.DAILY_SUMMARY, "2026-12-07", Status.SKIPPED, Reason.OUTSIDE_WINDOW),
        (Kind.DAILY_SUMMARY, "2026-12-08", Status.SKIPPED, Reason.OUTSIDE_WINDOW),
        (Kind.STUDY_REMINDER, "2026-12-08", Status.SKIPPED, Reason.OUTSIDE_WINDOW)]
    assert outbox == []


# --- The pause ------------------------------------------------------------------------------


def test_paused_student_email_waits_staff_email_goes_and_resume_sends_what_is_in_its_window(
        make_student, outbox):
    expired_while_paused = make_student("Europe/Moscow")  # 08:00 = 05:00 UTC, window to 07:00
    expires_at_resume = make_student("Africa/Johannesburg")  # 06:00 UTC, window to 08:00
    still_in_window = make_student("Africa/Lagos")  # 07:00 UTC, window to 09:00
    after_resume = make_student("UTC")  # 08:00 UTC
    planned_until(at("2026-12-09 04:45"))
    services.student_email_pause(note="restore drill")

    run_dispatcher(at("2026-12-09 05:00"), at("2026-12-09 07:45"), outbox)
    services.staff_email_queue(
        kind=Kind.TEST, period="while-paused", addresses=["ops@example.org"],
        context={"sent_by": "the tests", "backend": "locmem", "sent_at": at("2026-12-09 07:45")},
        now=at("2026-12-09 07:45"))
    notifications_dispatch(now=at("2026-12-09 07:45"))
    with clock(at("2026-12-09 07:50")):
        test = services.test_email_send(to="admin@example.org")

    assert [m.to for m in outbox] == [["ops@example.org"], ["admin@example.org"]]
    assert test.status == Status.SENT
    assert statuses(expired_while_paused, expires_at_resume, still_in_window) == [
        (Status.SKIPPED, Reason.PAUSED), (Status.QUEUED, ""), (Status.QUEUED, "")]

    with clock(at("2026-12-09 08:00")):
        skipped = services.student_email_resume()
    notifications_dispatch(now=at("2026-12-09 08:00"))

    assert skipped == 1
    assert statuses(expired_while_paused, expires_at_resume, still_in_window, after_resume) == [
        (Status.SKIPPED, Reason.PAUSED), (Status.SKIPPED, Reason.PAUSED), (Status.SENT, ""),
        (Status.SENT, "")]
    assert sorted(m.to[0] for m in outbox[2:]) == sorted([still_in_window.email,
                                                         after_resume.email])
    assert not EmailDelivery.objects.get(pk=1).student_email_paused


def test_the_paused_setting_pauses_student_email_too(make_student, outbox, settings):
    settings.NOTIFICATIONS_PAUSED = True
    student = make_student()
    planned_until(at("2026-12-09 07:45"))

    notifications_dispatch(now=at("2026-12-09 08:00"))
    notifications_dispatch(now=at("2026-12-09 10:00"))

    assert outbox == []
    assert statuses(student) == [(Status.SKIPPED, Reason.PAUSED)]


# --- Achievements ---------------------------------------------------------------------------


def test_a_recent_achievement_is_announced_once_and_an_old_one_never(make_student, outbox):
    student = make_student(daily_summary=False, study_reminder=False)
    first, second = Achievement.objects.order_by("id")[:2]
    now = at("2026-12-09 08:00")
    recent = StudentAchievement.objects.create(
        student=student, achievement=first, earned_at=now - datetime.timedelta(hours=2),
        earned_on=datetime.date(2026, 12, 9), value=first.threshold)
    old = StudentAchievement.objects.create(
        student=student, achievement=second, earned_at=now - datetime.timedelta(days=3),
        earned_on=datetime.date(2026, 12, 6), value=second.threshold)

    notifications_dispatch(now=now)
    notifications_dispatch(now=now)
    notifications_dispatch(now=now + STEP)

    [row] = ledger(kind=Kind.ACHIEVEMENT)
    assert (row.status, row.achievement_id, row.period) == (
        Status.SENT, recent.pk, f"achievement-{recent.pk}")
    recent.refresh_from_db()
    old.refresh_from_db()
    assert recent.announced_at == now
    assert old.announced_at is None
    [message] = outbox
    assert message.to == [student.email]
    assert first.title in message.subject + message.body


# --- Weekly reports -------------------------------------------------------------------------


def test_a_weekly_report_waits_for_its_report_then_goes_once(make_student, outbox):
    student = make_student("UTC", daily_summary=False, study_reminder=False)
    question = make_question()
    attempt_record(student=student, question=question, choice=question.choices.get(label="B"),
                   time_taken_ms=30_000, answered_at=at("2026-12-02 12:00"))
    monday = at("2026-12-07 08:00")
    planned_until(monday - STEP)

    notifications_dispatch(now=monday)  # no report built yet
    row = ledger(kind=Kind.WEEKLY_REPORT).get()
    assert (row.status, row.period, row.attempts) == (Status.QUEUED, "2026-W49", 0)
    assert row.send_after == monday + STEP
    student_weekly_reports_build([student.pk], now=monday)
    notifications_dispatch(now=monday + STEP)
    notifications_dispatch(now=monday + 2 * STEP)

    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 1)
    [message] = outbox
    assert "1 answer" in message.subject


# --- Query counts ---------------------------------------------------------------------------


def test_the_dispatchers_query_count_does_not_grow_with_students(
        make_student, outbox, settings, django_assert_max_num_queries):
    settings.NOTIFICATIONS_BATCH_SIZE = 500
    question = make_question()
    choice = question.choices.get(label="B")

    def students(n):
        made = [make_student(zone)
                for zone in (["UTC", "Europe/London", "Africa/Accra"] * n)[:n]]
        for student in made[::2]:  # some with figures, some with only reviews due
            attempt_record(student=student, question=question, choice=choice,
                           time_taken_ms=5000, answered_at=at("2026-12-01 12:00"))
            daily_stats(student, datetime.date(2026, 12, 8))
        return made

    students(5)
    notifications_dispatch(now=at("2026-12-08 06:00"))  # warm: the delivery row exists
    planned_until(at("2026-12-08 07:45"))
    with CaptureQueriesContext(connection) as five:
        result = notifications_dispatch(now=at("2026-12-08 08:00"))
    assert result["sent"]["sent"] == 5

    students(45)
    planned_until(at("2026-12-09 07:45"))
    with django_assert_max_num_queries(len(five)):
        result = notifications_dispatch(now=at("2026-12-09 08:00"))
    assert result["sent"]["sent"] == 50
    assert len(outbox) == 55


def test_a_weekly_report_with_nothing_to_say_is_skipped_at_once_not_waited_for(
        make_student, outbox):
    # Analytics builds reports only for students with answers in the week or the week before:
    # for the others no report will come, and there is nothing to say.
    idle = make_student("UTC", daily_summary=False, study_reminder=False)
    monday = at("2026-12-07 08:00")
    planned_until(monday - STEP)

    notifications_dispatch(now=monday)

    row = ledger(user=idle, kind=Kind.WEEKLY_REPORT).get()
    assert (row.status, row.reason) == (Status.SKIPPED, Reason.NOTHING_TO_SAY)
    assert outbox == []


# --- The tasks --------------------------------------------------------------------------------


def test_the_tasks_hand_what_is_left_to_a_follow_up_send_job(make_student, outbox, settings):
    settings.NOTIFICATIONS_BATCH_SIZE = 1
    students = [make_student(), make_student()]
    planned_until(at("2026-12-09 07:45"))

    # A time budget used up by the first batch.
    with clock(at("2026-12-09 08:00")), \
            mock.patch("notifications.sending.time_budget", return_value=0), \
            mock.patch("notifications.tasks.enqueue") as enqueue:
        first = tasks.dispatch()
        assert first["sent"] == {Status.SENT: 1, "batches": 1, "more": True}
        enqueue.assert_called_once_with("notifications.tasks.send_queued")
        enqueue.reset_mock()
        follow_up = tasks.send_queued()
        assert follow_up == {Status.SENT: 1, "batches": 1, "more": False}
        enqueue.assert_not_called()

    assert sorted(m.to[0] for m in outbox) == sorted(s.email for s in students)
