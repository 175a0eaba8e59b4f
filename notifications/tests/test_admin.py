"""The send ledger's admin (notifications/admin.py): the changelist and an entry's page with
the email as sent (HTML in a sandboxed iframe, the weekly chart inline, the plain text), "Send
a test email", the "Resend" action behind its confirmation page, and the switch that pauses
student email. Staff without notifications.send_email / notifications.pause_email get 403s."""

import base64
import datetime
import itertools
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from analytics.models import Report
from notifications.models import EmailDelivery, Notification
from notifications.rendering import email_render
from notifications.tests.test_rendering import daily_summary_context, weekly_report_context

pytestmark = pytest.mark.django_db

Kind, Status, Reason = Notification.Kind, Notification.Status, Notification.Reason
CHANGELIST = reverse("admin:notifications_notification_changelist")
SEND_TEST = reverse("admin:notifications_notification_send_test")
PAUSE = reverse("admin:notifications_notification_pause")
# The 8-byte PNG signature and a little more: the admin only base64-encodes what is stored.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
_numbers = itertools.count(1)


def change_url(row: Notification) -> str:
    return reverse("admin:notifications_notification_change", args=[row.pk])


def entry(*, kind=Kind.TEST, status=Status.SENT, address=None, user=None, **fields
          ) -> Notification:
    """A ledger row as the sender leaves it; test and staff kinds carry their stored email."""
    number = next(_numbers)
    address = address or (user.email if user else f"ops{number}@example.com")
    now = timezone.now()
    values = dict(
        user=user, address=address, recipient=f"user:{user.pk}" if user else address,
        kind=kind, period=f"2026-12-{number:02d}" if number < 29 else f"p{number}",
        status=status, due_at=now, send_after=now, created_at=now, updated_at=now,
        attempts=0 if status in (Status.QUEUED, Status.SKIPPED) else 1,
        subject=f"[pastq] Test email {number}", text=f"Plain text of email {number}.",
        html=f"<!DOCTYPE html><html><body><p>Email number {number}</p></body></html>")
    if status == Status.SENT:
        values.update(sent_at=now, message_id=f"<{number}@pastq.example.com>")
    return Notification.objects.create(**{**values, **fields})


def grant(user, *codenames: str):
    """`user` with the notifications permissions named, fresh from the database (Django caches
    permissions on the instance)."""
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="notifications", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser(email="root@example.com", password="pw")


@pytest.fixture
def root_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at the ledger, and nothing more."""
    return grant(django_user_model.objects.create_user(
        email="viewer@example.com", password="pw", is_staff=True), "view_notification")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


class _Iframes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.iframes: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "iframe":
            self.iframes.append(dict(attrs))


def iframes_of(response) -> list[dict]:
    """The page's iframes' attributes, unescaped as a browser reads them."""
    parser = _Iframes()
    parser.feed(response.content.decode())
    return parser.iframes


# --- The changelist and an entry's page -----------------------------------------------------


def _query_count(client, url: str) -> int:
    client.get(url)  # warms what Django caches per process (content types, permissions)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def _fill(count: int, student) -> None:
    """Ledger rows up to `count`: every status, student and staff email, users to load."""
    statuses = [Status.SENT, Status.SKIPPED, Status.FAILED, Status.UNKNOWN, Status.QUEUED]
    for n in range(Notification.objects.count(), count):
        entry(kind=Kind.DAILY_SUMMARY if n % 2 else Kind.TEST, user=student if n % 2 else None,
              status=statuses[n % len(statuses)], reason=Reason.CONNECTION if n % 5 == 2 else "")


def test_changelist_and_entry_page_run_the_same_queries_with_3_or_30_rows(
        root_client, student, django_assert_max_num_queries):
    daily = entry(kind=Kind.DAILY_SUMMARY, user=student)
    _fill(3, student)
    with_3 = {url: _query_count(root_client, url) for url in
              (CHANGELIST, change_url(daily), CHANGELIST + "?status__exact=failed")}
    _fill(30, student)
    for url, count in with_3.items():
        with django_assert_max_num_queries(count):
            response = root_client.get(url)
        assert response.status_code == 200
    assert Notification.objects.count() == 30


def test_changelist_lists_entries_with_their_status_and_links_to_send_a_test(root_client,
                                                                               student):
    entry(kind=Kind.DAILY_SUMMARY, user=student, status=Status.SENT)
    entry(status=Status.FAILED, reason=Reason.CONNECTION)
    response = root_client.get(CHANGELIST)
    body = response.content.decode()
    assert "student@example.com" in body and "Could not reach the mail server" in body
    assert ">Sent</strong>" in body and ">Failed</strong>" in body
    assert f'href="{SEND_TEST}"' in body
    assert "Student email is on." in body and 'value="Pause student email"' in body


def test_staff_without_the_permissions_see_no_test_link_no_switch_and_no_resend(
        viewer_client):
    entry(status=Status.FAILED)
    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="{SEND_TEST}"' not in body
    assert "Student email is on." in body and "Pause student email" not in body
    assert 'value="resend"' not in body


def test_entry_page_shows_the_html_in_a_sandboxed_iframe_and_the_text(root_client, student):
    rendered = email_render(Kind.DAILY_SUMMARY, daily_summary_context())
    row = entry(kind=Kind.DAILY_SUMMARY, user=student, subject=rendered.subject,
                text=rendered.text, html=rendered.html)
    response = root_client.get(change_url(row))
    assert response.status_code == 200
    [iframe] = iframes_of(response)
    assert iframe["sandbox"] == ""
    assert iframe["srcdoc"] == rendered.html
    body = response.content.decode()
    assert rendered.subject in body
    assert "Your day, Thursday 3 December" in body  # the subject, once more in the text
    # The plain text part, as its own block.
    assert f'max-width:680px">{escape(rendered.text)}</pre>' in body


def test_a_script_in_the_email_cannot_run_in_the_admin(root_client):
    evil = '<p>Hi</p><script>alert("owned")</script><img src=x onerror="alert(2)">'
    row = entry(html=evil, text="<script>alert(3)</script>")
    response = root_client.get(change_url(row))
    body = response.content.decode()
    [iframe] = iframes_of(response)
    assert iframe["sandbox"] == ""  # no allow-scripts: nothing in it runs
    assert iframe["srcdoc"] == evil  # escaped into the attribute, whole
    assert "<script>" not in body.replace('<script src=', "")  # the admin's own are src= only
    assert "onerror=" not in body.replace("onerror=&quot;", "")
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in body


def test_a_weekly_reports_chart_is_shown_inline_as_a_data_uri(root_client, student):
    Report.objects.create(kind=Report.Kind.STUDENT_WEEKLY, student=student, label="2026-W49",
                          period_start=datetime.date(2026, 11, 30),
                          period_end=datetime.date(2026, 12, 6), html="<p>report</p>",
                          chart_png=PNG, created_at=timezone.now(),
                          updated_at=timezone.now())
    rendered = email_render(Kind.WEEKLY_REPORT, weekly_report_context())
    assert 'src="cid:' in rendered.html
    row = entry(kind=Kind.WEEKLY_REPORT, user=student, period="2026-W49",
                html=rendered.html, text=rendered.text, subject=rendered.subject)
    [iframe] = iframes_of(root_client.get(change_url(row)))
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in iframe["srcdoc"]
    assert "cid:" not in iframe["srcdoc"]


def test_an_entry_skipped_before_rendering_says_so(root_client, student):
    row = entry(kind=Kind.DAILY_SUMMARY, user=student, status=Status.SKIPPED,
                reason=Reason.NOTHING_TO_SAY, html="", text="", subject="",
                detail="no answers that day and nothing due for review")
    response = root_client.get(change_url(row))
    body = response.content.decode()
    assert iframes_of(response) == []
    assert "nothing rendered" in body and "no answers that day" in body


# --- Send a test email ------------------------------------------------------------------------


def test_send_a_test_email_goes_through_the_backend_into_the_ledger(root_client, mailoutbox,
                                                                     settings):
    form = root_client.get(SEND_TEST)
    assert form.status_code == 200
    assert 'value="root@example.com"' in form.content.decode()  # the operator's own address
    assert "<code>django.core.mail.backends.locmem.EmailBackend</code>" in form.content.decode()

    response = root_client.post(SEND_TEST, {"to": "ops@example.org"})
    row = Notification.objects.get(kind=Kind.TEST)
    assert response.status_code == 302 and response["Location"] == change_url(row)
    assert (row.status, row.address, row.attempts) == (Status.SENT, "ops@example.org", 1)
    assert row.message_id and row.sent_at
    [message] = mailoutbox
    assert message.to == ["ops@example.org"]
    assert message.subject == settings.EMAIL_SUBJECT_PREFIX + row.subject
    assert message.alternatives[0].mimetype == "text/html"
    assert messages_of(response) == [("success", "Test email to ops@example.org: sent")]


def test_send_a_test_email_refuses_a_bad_address(root_client, mailoutbox):
    response = root_client.post(SEND_TEST, {"to": "not an address"})
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert mailoutbox == [] and not Notification.objects.exists()


def test_send_a_test_email_needs_the_send_permission(viewer_client, mailoutbox):
    assert viewer_client.get(SEND_TEST).status_code == 403
    assert viewer_client.post(SEND_TEST, {"to": "ops@example.org"}).status_code == 403
    assert mailoutbox == [] and not Notification.objects.exists()


# --- Resend -----------------------------------------------------------------------------------


def _action(ids, **extra) -> dict:
    return {"action": "resend", "_selected_action": [str(pk) for pk in ids], **extra}


def test_resend_asks_first_then_resends_only_failed_and_unknown_entries(root_client,
                                                                         mailoutbox):
    failed = entry(status=Status.FAILED, reason=Reason.CONNECTION, attempts=5,
                   detail="Given up after 5 attempt(s): ConnectionRefusedError")
    unknown = entry(status=Status.UNKNOWN, reason=Reason.TIMEOUT, detail="TimeoutError")
    sent = entry(status=Status.SENT)
    before = Notification.objects.get(pk=sent.pk)
    ids = [failed.pk, unknown.pk, sent.pk]

    confirm = root_client.post(CHANGELIST, _action(ids, index="0"))
    assert confirm.status_code == 200
    assert "admin/notifications/notification/resend_confirm.html" in \
        [t.name for t in confirm.templates]
    body = confirm.content.decode()
    assert "2 emails will be sent again now" in body
    assert "1 of them is <strong>unknown</strong>" in body and "deliver it twice" in body
    assert "1 selected entry is neither failed nor unknown" in body
    assert failed.address in body and unknown.address in body
    assert 'value="Yes, resend 2 emails"' in body
    assert mailoutbox == []  # nothing sent yet
    assert Notification.objects.get(pk=failed.pk).status == Status.FAILED

    response = root_client.post(CHANGELIST, _action(ids, confirm="yes"))
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert messages_of(response) == [("success", "Resent: 2 sent.")]
    assert sorted(m.to[0] for m in mailoutbox) == sorted([failed.address, unknown.address])
    for row in (failed, unknown):
        row.refresh_from_db()
        assert (row.status, row.reason) == (Status.SENT, "")
        assert row.detail.startswith("Resent by root@example.com at ") and row.sent_at is not None
    sent.refresh_from_db()
    assert (sent.status, sent.attempts, sent.updated_at, sent.message_id) == \
        (before.status, before.attempts, before.updated_at, before.message_id)


def test_resend_of_all_matching_entries_resends_what_the_confirmation_counted(root_client,
                                                                             mailoutbox):
    """"Select all": the action covers every entry the filters match, not only the ticked
    boxes of the page, and the confirmation carries that on."""
    failed = [entry(status=Status.FAILED) for _ in range(3)]
    ticked = [failed[0].pk]
    confirm = root_client.post(CHANGELIST + "?status__exact=failed",
                               _action(ticked, index="0", select_across="1"))
    assert "3 emails will be sent again now" in confirm.content.decode()
    root_client.post(CHANGELIST + "?status__exact=failed",
                     _action(ticked, confirm="yes", select_across="1"))
    assert len(mailoutbox) == 3


def test_resend_of_entries_that_cannot_be_resent_says_so_and_sends_nothing(root_client,
                                                                           mailoutbox):
    rows = [entry(status=Status.SENT), entry(status=Status.SKIPPED)]
    confirm = root_client.post(CHANGELIST, _action([r.pk for r in rows], index="0"))
    body = confirm.content.decode()
    assert "there is nothing to resend" in body and "Yes, resend" not in body
    assert mailoutbox == []


def test_resend_needs_the_send_permission(viewer_client, mailoutbox):
    failed = entry(status=Status.FAILED)
    for extra in ({"index": "0"}, {"confirm": "yes"}):
        # This user has no action at all: the POST only shows the list again.
        response = viewer_client.post(CHANGELIST, _action([failed.pk], **extra))
        assert response.status_code == 200
        assert "admin/notifications/notification/change_list.html" in \
            [t.name for t in response.templates]
    assert mailoutbox == []
    failed.refresh_from_db()
    assert failed.status == Status.FAILED


# --- Pausing student email ----------------------------------------------------------------------


def test_pause_and_resume_flip_the_switch_and_the_banner_says_so(root_client, root):
    response = root_client.post(PAUSE, {"paused": "1", "note": "moving mail provider"})
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    state = EmailDelivery.objects.get(pk=1)
    assert state.student_email_paused and state.changed_by == root
    assert state.note == "moving mail provider"
    assert messages_of(response)[0][0] == "warning"

    body = root_client.get(CHANGELIST).content.decode()
    assert "Student email is paused." in body
    assert "by root@example.com" in body and "(moving mail provider)" in body
    assert 'value="Resume student email"' in body and "Pause student email" not in body

    response = root_client.post(PAUSE, {"paused": "0"})
    assert response.status_code == 302
    assert not EmailDelivery.objects.get(pk=1).student_email_paused
    assert messages_of(response)[0] == (
        "success", "Student email resumed: what is still inside its send window goes out "
                   "now; 0 past it skipped (paused).")
    assert "Student email is on." in root_client.get(CHANGELIST).content.decode()


def test_pausing_needs_a_post_and_the_pause_permission(client, root_client, viewer):
    assert root_client.get(PAUSE).status_code == 403
    client.force_login(viewer)
    assert client.post(PAUSE, {"paused": "1"}).status_code == 403
    assert not EmailDelivery.objects.filter(student_email_paused=True).exists()
    client.force_login(grant(viewer, "pause_email"))
    assert client.post(PAUSE, {"paused": "1"}).status_code == 302
    assert EmailDelivery.objects.get(pk=1).student_email_paused


def test_when_the_setting_pauses_email_the_banner_says_so_without_a_resume_button(
        root_client, settings):
    settings.NOTIFICATIONS_PAUSED = True
    body = root_client.get(CHANGELIST).content.decode()
    assert "Student email is paused." in body
    assert "The NOTIFICATIONS_PAUSED setting pauses it" in body
    assert "Resume student email" not in body and "Pause student email" not in body
