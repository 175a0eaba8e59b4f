"""Sending (notifications/sending.py): what each error means (classify), the email service path
through anymail's test backend, SMTP against a real server on loopback (down, then back; a
timeout after the hand-over; the message itself: headers, parts, the inline chart; staff mail),
and batches that stop early: an email that cannot be rendered, a sender stopped mid-batch, rows
a dead sender left behind."""

import datetime
import smtplib
from collections import Counter
from unittest import mock

import pytest
import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import OperationalError

from analytics.models import Report
from analytics.reports import admin_report_build, student_weekly_reports_build
from core.jobs.execution import JobInterrupted
from core.services import attempt_record
from core.tests.factories import make_question
from notifications import rendering, sending, services
from notifications.models import Notification, UndeliverableAddress
from notifications.sending import PERMANENT, RETRY, UNKNOWN, classify, send_due
from notifications.services import notifications_dispatch, notifications_resend
from notifications.tests.conftest import at, daily_stats, ledger, planned_until
from notifications.unsubscribe import unsubscribe_url

Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason
EIGHT = at("2026-12-09 08:00")


def due_at_eight():
    """The next dispatcher run, at 08:00 UTC, plans the daily summaries of UTC students."""
    planned_until(EIGHT - datetime.timedelta(minutes=15))


def statuses_by_user(users) -> list[tuple[str, str]]:
    return [tuple(ledger(user=u).values_list("status", "reason").get()) for u in users]


def api_error(status=None, cause=None):
    """The error anymail's requests-based backends raise: for an HTTP answer, with the
    response; for a failed request, an error that is also the requests exception's type and
    is raised from it (anymail/backends/base_requests.py)."""
    if cause is not None:
        both = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, type(cause)), {})
        error = both("Error posting to https://api.example.com/email:")
        error.__cause__ = cause
        return error
    response = requests.Response()
    response.status_code, response.reason = status, "Refused"
    response._content = b'{"ErrorCode": 1, "Message": "no"}'
    if status is None:
        return AnymailAPIError("Unparsable response")
    return AnymailRequestsAPIError("The email service said no", response=response)


# --- What an error means --------------------------------------------------------------------


@pytest.mark.parametrize(("error", "handed_over", "expected"), [
    # Before the hand-over nothing left: always try again.
    (ConnectionRefusedError(111, "Connection refused"), False, (RETRY, Reason.CONNECTION)),
    (TimeoutError("timed out"), False, (RETRY, Reason.CONNECTION)),
    (smtplib.SMTPAuthenticationError(535, b"bad login"), False, (RETRY, Reason.CONNECTION)),
    # An email service's API.
    (api_error(503), True, (RETRY, Reason.TEMPORARY)),
    (api_error(429), True, (RETRY, Reason.TEMPORARY)),
    (api_error(400), True, (PERMANENT, Reason.REJECTED)),
    (api_error(422), True, (PERMANENT, Reason.REJECTED)),
    (api_error(cause=requests.ReadTimeout("read timed out")), True, (UNKNOWN, Reason.TIMEOUT)),
    (api_error(cause=requests.ConnectTimeout("connect timed out")), True,
     (RETRY, Reason.CONNECTION)),
    (api_error(cause=requests.ConnectionError("refused")), True, (RETRY, Reason.CONNECTION)),
    (api_error(), True, (UNKNOWN, Reason.ERROR)),
    (AnymailRecipientsRefused(), True, (PERMANENT, Reason.REJECTED)),
    # SMTP.
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), True,
     (PERMANENT, Reason.REJECTED)),
    (smtplib.SMTPRecipientsRefused({"a@example.com": (452, b"mailbox full")}), True,
     (RETRY, Reason.TEMPORARY)),
    (smtplib.SMTPDataError(451, b"try later"), True, (RETRY, Reason.TEMPORARY)),
    (smtplib.SMTPDataError(554, b"spam"), True, (PERMANENT, Reason.REJECTED)),
    (smtplib.SMTPSenderRefused(550, b"not you", "noreply@localhost"), True,
     (PERMANENT, Reason.REJECTED)),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out"), True,
     (UNKNOWN, Reason.TIMEOUT)),
    (TimeoutError("timed out"), True, (UNKNOWN, Reason.TIMEOUT)),
    (ConnectionResetError(104, "reset"), True, (UNKNOWN, Reason.TIMEOUT)),
    (ValueError("a bug"), True, (PERMANENT, Reason.ERROR)),
])
def test_classify(error, handed_over, expected):
    verdict = classify(error, handed_over=handed_over)

    assert (verdict.kind, verdict.reason) == expected
    assert verdict.detail.startswith(type(error).__name__)
    refused_for_good = expected == (PERMANENT, Reason.REJECTED) and isinstance(
        error, (AnymailRecipientsRefused, smtplib.SMTPRecipientsRefused))
    assert verdict.undeliverable == refused_for_good


def test_retry_delays_double_up_to_four_hours(settings):
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 60
    assert [sending.retry_delay(n).total_seconds() for n in (1, 2, 3, 9, 20)] == [
        60, 120, 240, 4 * 3600, 4 * 3600]


# --- An email service (anymail) -------------------------------------------------------------


@pytest.mark.django_db
def test_an_email_services_answers_are_recorded_per_message(make_student, esp, outbox):
    unavailable = make_student(email="unavailable@example.com")
    delivered = make_student(email="delivered@example.com")
    refused = make_student(email="refused@example.com")
    rejected = make_student(email="rejected@example.com")
    timed_out = make_student(email="timed-out@example.com")
    esp.answers.update({
        unavailable.email: api_error(503),
        refused.email: api_error(400),
        rejected.email: "rejected",
        timed_out.email: api_error(cause=requests.ReadTimeout("read timed out")),
    })
    due_at_eight()

    notifications_dispatch(now=EIGHT)

    rows = {row.address: row for row in ledger()}
    assert {a: (r.status, r.reason) for a, r in rows.items()} == {
        unavailable.email: (Status.FAILED, Reason.TEMPORARY),
        delivered.email: (Status.SENT, ""),
        refused.email: (Status.FAILED, Reason.REJECTED),
        rejected.email: (Status.FAILED, Reason.REJECTED),
        timed_out.email: (Status.UNKNOWN, Reason.TIMEOUT),
    }
    assert rows[unavailable.email].retry_at == EIGHT + datetime.timedelta(seconds=60)
    assert rows[refused.email].retry_at is rows[rejected.email].retry_at is None
    [message] = [m for m in outbox if m.to == [delivered.email]]
    assert rows[delivered.email].message_id == str(message.anymail_status.message_id)
    assert list(UndeliverableAddress.objects.values_list("address", "reason")) == [
        (rejected.email, "rejected")]

    # Later: the temporary failure is tried again and goes; nothing else is sent again.
    esp.answers.clear()
    before = len(outbox)
    send_due(now=EIGHT + datetime.timedelta(minutes=2))
    send_due(now=EIGHT + datetime.timedelta(minutes=30))

    assert [m.to[0] for m in outbox[before:]] == [unavailable.email]
    retried = ledger(user=unavailable).get()
    assert (retried.status, retried.attempts, retried.retry_at) == (Status.SENT, 2, None)
    assert Counter(ledger().values_list("status", flat=True)) == {
        Status.SENT: 2, Status.FAILED: 2, Status.UNKNOWN: 1}
    # The next day the refused address gets nothing.
    planned_until(EIGHT + datetime.timedelta(hours=23, minutes=45))
    notifications_dispatch(now=EIGHT + datetime.timedelta(days=1))
    assert ledger(user=rejected, period="2026-12-09").get().reason == Reason.UNDELIVERABLE


# --- SMTP -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_smtp_down_then_back_sends_each_message_once_on_its_retry(
        make_student, smtp, settings, closed_port):
    students = [make_student() for _ in range(3)]
    due_at_eight()
    settings.EMAIL_PORT = closed_port

    result = notifications_dispatch(now=EIGHT)

    assert result["sent"] == {Status.FAILED: 3, "batches": 1, "more": False}
    for row in ledger():
        assert (row.status, row.reason, row.attempts) == (Status.FAILED, Reason.CONNECTION, 1)
        assert row.retry_at == EIGHT + datetime.timedelta(seconds=60)
        assert "ConnectionRefusedError" in row.detail

    settings.EMAIL_PORT = smtp.port  # the server is back
    early = send_due(now=EIGHT + datetime.timedelta(seconds=30))
    assert early.batches == 0 and smtp.messages == []
    send_due(now=EIGHT + datetime.timedelta(seconds=60))
    send_due(now=EIGHT + datetime.timedelta(minutes=15))

    assert Counter(m["To"] for m in smtp.messages) == {s.email: 1 for s in students}
    for row in ledger():
        assert (row.status, row.attempts, row.retry_at) == (Status.SENT, 2, None)


@pytest.mark.django_db
def test_a_timeout_after_the_hand_over_is_unknown_and_only_an_operator_resends_it(
        make_student, slow_smtp):
    student = make_student()
    due_at_eight()

    notifications_dispatch(now=EIGHT)

    row = ledger().get()
    assert (row.status, row.reason, row.attempts) == (Status.UNKNOWN, Reason.TIMEOUT, 1)
    assert len(slow_smtp.messages) == 1  # it did arrive: the server was only slow to say so
    for later in (15, 60, 24 * 60):
        send_due(now=EIGHT + datetime.timedelta(minutes=later))
    assert len(slow_smtp.messages) == 1
    assert ledger().get().status == Status.UNKNOWN

    outcome = notifications_resend([row.pk], by="ops")

    assert outcome.counts == {Status.SENT: 1}
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 2)
    assert [m["To"] for m in slow_smtp.messages] == [student.email, student.email]


@pytest.mark.django_db
def test_the_message_a_student_receives_over_smtp(make_student, smtp):
    student = make_student(email="ana@example.com", weekly_report=False)
    daily_stats(student, datetime.date(2026, 12, 8), attempts=16, correct=12,
                time_spent_ms=1_800_000)
    due_at_eight()

    notifications_dispatch(now=EIGHT)

    [message] = smtp.messages
    row = ledger().get()
    assert message["Message-ID"] == row.message_id != ""
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == row.subject == "Your day, Tuesday 8 December: 16 answers, 75% right"
    # (Folded onto its own line, being long: the value starts with that line's space.)
    assert message["List-Unsubscribe"].strip() == (
        f"<{unsubscribe_url(student.pk, 'daily_summary')}>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Pastq-Kind"] == "daily_summary"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain", "text/html"]
    assert "Answers:   16, 12 right (75%)" in text
    assert "Practice:  30 min, 16 different questions in 2 sessions" in text
    assert "got 12 of your 16 answers right" in html
    assert '<div class="tile-value" style' in html  # styles inlined
    for figure in (">16<", ">75%<", ">30 min<"):
        assert figure in html
    for part in (text, html):
        assert unsubscribe_url(student.pk, "daily_summary") in part
        assert "Reviews: 1 question is due for review." in part.replace("<strong>", "").replace(
            "</strong>", "")
    assert text.replace("\r\n", "\n") == row.text  # (SMTP lines end in CRLF)


@pytest.mark.django_db
def test_a_weekly_report_carries_its_chart_inline(make_student, smtp):
    student = make_student(email="ana@example.com", daily_summary=False, study_reminder=False)
    question = make_question()
    for day, correct in ((1, "B"), (2, "A"), (3, "B")):
        attempt_record(student=student, question=question,
                       choice=question.choices.get(label=correct), time_taken_ms=40_000,
                       answered_at=at(f"2026-12-0{day} 12:00"))
    monday = at("2026-12-07 08:00")
    student_weekly_reports_build([student.pk], now=monday)
    planned_until(monday - datetime.timedelta(minutes=15))

    notifications_dispatch(now=monday)

    [message] = smtp.messages
    row = ledger(kind=Kind.WEEKLY_REPORT).get()
    assert (row.kind, row.period, row.status) == (Kind.WEEKLY_REPORT, "2026-W49", Status.SENT)
    assert message.get_content_type() == "multipart/related"
    alternative, image = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert image.get_content_type() == "image/png"
    assert image["Content-ID"] == "<chart@pastq>"
    assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    html = message.get_body(("html",)).get_content()
    assert 'src="cid:chart@pastq"' in html
    assert "cid:chart\"" not in html
    text = message.get_body(("plain",)).get_content()
    assert "This week you answered 3 questions on 3 days and got 2 right (67%)" in text
    assert message["Subject"] == "Your week 2026-W49: 3 answers, 67% right"


@pytest.mark.django_db
def test_staff_mail_has_the_subject_prefix_and_no_unsubscribe_header(smtp):
    row = services.test_email_send(to="ops@example.org", sent_by="Ana")

    [message] = smtp.messages
    assert row.status == Status.SENT
    assert message["Subject"].startswith("[pastq] ")
    assert message["List-Unsubscribe"] is None
    assert message["Message-ID"] == row.message_id


# --- A sender that died ---------------------------------------------------------------------


@pytest.mark.django_db
def test_rows_a_dead_sender_left_sending_become_unknown_and_are_not_sent_again(
        make_student, outbox):
    make_student()
    due_at_eight()
    notifications_dispatch(now=EIGHT, send=False)
    # A sender claimed the row, then died before it recorded anything.
    [row] = sending.claim(EIGHT, limit=10, paused=False)
    limit = sending.queues.time_limit("notifications")

    send_due(now=EIGHT + datetime.timedelta(seconds=limit))  # it might still be running
    assert ledger().get().status == Status.SENDING
    send_due(now=EIGHT + datetime.timedelta(seconds=limit + 61))

    row.refresh_from_db()
    assert (row.status, row.reason, row.claim) == (Status.UNKNOWN, Reason.INTERRUPTED, "")
    assert outbox == []


@pytest.mark.django_db
def test_an_email_that_cannot_be_rendered_fails_alone(make_student, outbox):
    students = [make_student() for _ in range(3)]
    due_at_eight()
    real_render = rendering.email_render

    def render(kind, context):
        if context["name"] == "broken":
            raise KeyError("day")
        return real_render(kind, context)

    students[1].first_name = "broken"
    students[1].save()
    with mock.patch("notifications.sending.email_render", side_effect=render):
        notifications_dispatch(now=EIGHT)

    assert statuses_by_user(students) == [
        (Status.SENT, ""), (Status.FAILED, Reason.ERROR), (Status.SENT, "")]
    broken = ledger(user=students[1]).get()
    assert broken.retry_at is None and "KeyError" in broken.detail
    assert [m.to[0] for m in outbox] == [students[0].email, students[2].email]
    assert ledger(status=Status.SENDING).count() == 0


@pytest.mark.django_db
def test_admin_reports_go_to_each_staff_address_once_with_their_chart(smtp, settings, catalogue):
    settings.NOTIFICATIONS_STAFF_EMAILS = ["ops@example.org", "Boss@Example.org"]
    now = at("2026-12-09 12:30")
    report = admin_report_build(Report.Kind.ADMIN_DAILY, datetime.date(2026, 12, 7), now=now)

    first = notifications_dispatch(now=now)
    again = notifications_dispatch(now=now + datetime.timedelta(minutes=15))

    assert (first["staff_queued"], again["staff_queued"]) == (2, 0)
    assert sorted(m["To"] for m in smtp.messages) == ["boss@example.org", "ops@example.org"]
    for message in smtp.messages:
        assert message["Subject"].startswith("[pastq] Daily report 2026-12-07")
        assert message["List-Unsubscribe"] is None
        assert message.get_content_type() == "multipart/related"
        [image] = [p for p in message.iter_parts() if p.get_content_type() == "image/png"]
        assert image["Content-ID"] == "<chart@pastq>"
        assert image.get_content() == bytes(report.chart_png)
        assert 'src="cid:chart@pastq"' in message.get_body(("html",)).get_content()
    assert set(ledger().values_list("kind", "period", "status")) == {
        (Kind.ADMIN_REPORT, "admin_daily:2026-12-07", Status.SENT)}


@pytest.mark.django_db
def test_a_sender_stopped_mid_batch_leaves_only_the_message_in_flight_unknown(
        make_student, outbox):
    students = [make_student() for _ in range(4)]
    due_at_eight()
    real_send = LocmemBackend.send_messages
    calls = []

    def send_messages(self, messages):
        calls.append(messages[0].to[0])
        if len(calls) == 2:  # SIGTERM while the second message is being handed over
            raise JobInterrupted("stop")
        return real_send(self, messages)

    with mock.patch.object(LocmemBackend, "send_messages", send_messages), \
            pytest.raises(JobInterrupted):
        notifications_dispatch(now=EIGHT)

    assert statuses_by_user(students) == [
        (Status.SENT, ""), (Status.SENDING, ""), (Status.QUEUED, ""), (Status.QUEUED, "")]
    assert [ledger(user=s).get().attempts for s in students] == [1, 1, 0, 0]
    # The next run sends the two never handed over; the sweep calls the other one unknown.
    limit = sending.queues.time_limit("notifications")
    send_due(now=EIGHT + datetime.timedelta(minutes=1))
    send_due(now=EIGHT + datetime.timedelta(seconds=limit + 61))
    assert statuses_by_user(students) == [
        (Status.SENT, ""), (Status.UNKNOWN, Reason.INTERRUPTED), (Status.SENT, ""),
        (Status.SENT, "")]
    assert [m.to[0] for m in outbox] == [students[0].email, students[2].email,
                                         students[3].email]


@pytest.mark.django_db
def test_a_batch_whose_contents_cannot_be_read_goes_back_to_the_queue(make_student, outbox):
    students = [make_student() for _ in range(2)]
    due_at_eight()

    with mock.patch("notifications.sending.batch_contents",
                    side_effect=OperationalError("database is locked")), \
            pytest.raises(OperationalError):
        notifications_dispatch(now=EIGHT)  # the job fails and is retried

    assert statuses_by_user(students) == [(Status.QUEUED, ""), (Status.QUEUED, "")]
    send_due(now=EIGHT + datetime.timedelta(minutes=1))
    assert statuses_by_user(students) == [(Status.SENT, ""), (Status.SENT, "")]
    assert [ledger(user=s).get().attempts for s in students] == [1, 1]
    assert len(outbox) == 2
