"""The email service's tracking webhooks: real POSTs to anymail's Postmark endpoint, through its
basic auth, into notifications.webhooks."""

import base64
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from anymail.signals import AnymailTrackingEvent, tracking
from django.apps import apps
from django.test import Client, override_settings
from django.utils import timezone

from core.services import student_create
from notifications.models import Notification, NotificationPreference, UndeliverableAddress
from notifications.webhooks import tracking_event_record

URL = "/anymail/postmark/tracking/"
SECRET = "hook:s3cret-for-tests"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings(
    # The tests that leave the secret out on purpose.
    "ignore:Your Anymail webhooks are insecure")]


def bounce(**fields) -> dict:
    """A Postmark bounce webhook, as Postmark documents it."""
    return {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "daily_summary",
        "MessageID": MESSAGE_ID, "Metadata": {}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
                       "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "Ada@Example.com", "From": "noreply@pastq.example.com",
        "BouncedAt": "2025-03-04T08:01:02.1234567Z", "DumpAvailable": False, "Inactive": True,
        "CanActivate": True, "Subject": "Your day in pastq", **fields,
    }


def post(payload: dict, *, auth: str | None = SECRET, client: Client | None = None):
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return (client or Client(enforce_csrf_checks=True)).post(
        URL, json.dumps(payload), content_type="application/json", headers=headers)


@pytest.fixture(autouse=True)
def webhook_secret():
    with override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET}):
        yield


@pytest.fixture
def ledger_row(db):
    user = student_create(email="ada@example.com").user
    now = timezone.now()
    return Notification.objects.create(
        user=user, address=user.email, recipient=f"user:{user.pk}", kind="daily_summary",
        period="2025-03-03", status=Notification.Status.SENT, due_at=now, send_after=now,
        message_id=MESSAGE_ID)


def test_a_bounce_marks_the_address_undeliverable_and_notes_it_in_the_ledger(ledger_row):
    response = post(bounce())
    assert response.status_code == 200
    row = UndeliverableAddress.objects.get()
    assert (row.address, row.reason, row.message_id) == ("ada@example.com", "bounced", MESSAGE_ID)
    assert "unable to deliver" in row.description and "550 5.1.1" in row.description
    ledger_row.refresh_from_db()
    assert ledger_row.status == Notification.Status.SENT  # the send happened: status stays
    assert ledger_row.detail.startswith("Postmark bounced at 2025-03-04T08:01:02")
    assert "550 5.1.1" in ledger_row.detail


def test_without_the_secret_the_webhook_is_refused_and_nothing_is_recorded(ledger_row):
    assert post(bounce(), auth=None).status_code == 400
    assert post(bounce(), auth="hook:wrong").status_code == 400
    assert not UndeliverableAddress.objects.exists()
    ledger_row.refresh_from_db()
    assert ledger_row.detail == ""


def test_a_resent_webhook_records_once(ledger_row):
    post(bounce())
    post(bounce())
    assert UndeliverableAddress.objects.count() == 1
    ledger_row.refresh_from_db()
    assert len(ledger_row.detail.splitlines()) == 1


def test_a_later_event_for_the_same_address_updates_its_row(ledger_row):
    post(bounce())
    complaint = bounce(RecordType="SpamComplaint", Type="SpamComplaint", TypeCode=512,
                       Description="The subscriber explicitly marked this message as spam.",
                       Details="", BouncedAt="2025-03-05T09:00:00Z")
    assert post(complaint).status_code == 200
    row = UndeliverableAddress.objects.get()
    assert row.reason == "complained" and "marked this message as spam" in row.description
    ledger_row.refresh_from_db()
    assert [line.split(" at ")[0] for line in ledger_row.detail.splitlines()] == [
        "Postmark bounced", "Postmark complained"]


def test_a_rejection_without_a_ledger_row_is_still_recorded(db):
    assert post(bounce(Type="BadEmailAddress", Email="nobody@example.org",
                       MessageID="not-in-the-ledger")).status_code == 200
    assert UndeliverableAddress.objects.get().reason == "rejected"


def test_an_unsubscribe_at_the_service_switches_the_student_off(ledger_row):
    change = {"RecordType": "SubscriptionChange", "MessageID": MESSAGE_ID, "ServerID": 23,
              "MessageStream": "outbound", "ChangedAt": "2025-03-04T10:53:34.416071Z",
              "Recipient": "ADA@example.com", "Origin": "Recipient", "SuppressSending": True,
              "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}}
    assert post(change).status_code == 200
    assert NotificationPreference.objects.get(user=ledger_row.user).email_enabled is False
    assert not UndeliverableAddress.objects.exists()
    ledger_row.refresh_from_db()
    assert ledger_row.detail.startswith("Postmark unsubscribed at 2025-03-04T10:53:34")


def test_deliveries_opens_and_deferrals_are_ignored(ledger_row):
    delivery = {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
                "MessageID": MESSAGE_ID, "Recipient": "ada@example.com", "Tag": "",
                "DeliveredAt": "2025-03-04T08:00:05Z", "Details": "Test delivery", "Metadata": {}}
    assert post(delivery).status_code == 200
    assert post(bounce(Type="Transient")).status_code == 200  # deferred: it may yet arrive
    assert not UndeliverableAddress.objects.exists()
    ledger_row.refresh_from_db()
    assert ledger_row.detail == ""


def test_an_event_without_a_recipient_is_not_an_error(db):
    event = AnymailTrackingEvent(event_type="bounced", recipient=None, message_id="",
                                 timestamp=datetime.datetime(2025, 3, 4, tzinfo=datetime.UTC))
    tracking_event_record(sender=None, event=event, esp_name="Test")
    assert not UndeliverableAddress.objects.exists()


def test_the_receiver_is_connected_once_however_often_the_app_is_ready():
    # The real POSTs above prove it is connected; its dispatch_uid keeps it to one.
    before = len(tracking.receivers)
    apps.get_app_config("notifications").ready()
    assert len(tracking.receivers) == before


def test_the_webhook_secret_comes_from_anymail_webhook_secret_in_the_environment():
    # Read in a fresh process: settings read the environment once, at import.
    root = Path(__file__).resolve().parents[2]
    code = ("from django.conf import settings; from anymail.utils import get_anymail_setting; "
            "print(repr(get_anymail_setting('webhook_secret')))")
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env |= {"DJANGO_SETTINGS_MODULE": "pastq.settings", "DEBUG": "on",
            "PASTQ_VAR_DIR": os.environ["PASTQ_VAR_DIR"] + "/webhook-secret",
            "ANYMAIL_WEBHOOK_SECRET": "$hook:kept-as-it-is"}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr("$hook:kept-as-it-is")
