"""The send ledger's admin in a real browser: headless Debian Chromium driven by Playwright
against pytest-django's live server. Logs in through the admin's login form, opens the ledger
(entries sent, skipped, failed and unknown), opens a sent daily summary and reads the email in
its sandboxed iframe, goes back, and resends the failed entry through the confirmation page.
Full-page screenshots go under the test's tmp_path and are copied to
/tmp/pastq-screens/notifications-*.png for a person to look at.

Skips (with the reason) when /usr/bin/chromium or the playwright package is missing. Playwright
only drives the system browser here: no browser is ever downloaded.
"""

import datetime
import shutil
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from core.services import student_create
from notifications.models import Notification
from notifications.rendering import email_render
from notifications.tests.test_rendering import (
    daily_summary_context,
    study_reminder_context,
    system_report_context,
)
from pastq.tests.browser import browser_required, chromium

SCREENSHOT_DIR = Path("/tmp/pastq-screens")
Kind, Status, Reason = Notification.Kind, Notification.Status, Notification.Reason

pytestmark = pytest.mark.django_db(transaction=True)  # the live server sees committed rows


def _screenshot(page, path: Path) -> None:
    """A full-page screenshot with the iframes painted: Chromium leaves a (sandboxed, so
    out-of-process) iframe below the fold blank in a full-page capture, so the viewport grows
    to the whole page first."""
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.wait_for_timeout(100)  # the frames repaint at the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


def _ledger() -> dict[str, Notification]:
    """A morning's ledger: a daily summary sent, a reminder skipped, the admin report that
    failed (the SMTP server refused the connection five times), a weekly report whose send
    timed out after hand-over, and a test email."""
    ana = student_create(email="ana@example.org", first_name="Ana", last_name="Müller",
                         timezone_name="Europe/Berlin").user
    ben = student_create(email="ben@example.org", timezone_name="America/Bogota").user
    now = timezone.now().replace(microsecond=0)
    earlier = now - datetime.timedelta(hours=2)

    def row(kind, status, *, user=None, address=None, period, context=None, **fields):
        values = dict(user=user, address=address or user.email,
                      recipient=f"user:{user.pk}" if user else address, kind=kind,
                      period=period, status=status, due_at=earlier, send_after=earlier,
                      created_at=earlier, updated_at=now,
                      attempts=0 if status == Status.SKIPPED else 1)
        if context is not None:
            rendered = email_render(kind, context)
            values.update(subject=rendered.subject, text=rendered.text, html=rendered.html)
        return Notification.objects.create(**{**values, **fields})

    return {
        "sent": row(Kind.DAILY_SUMMARY, Status.SENT, user=ana, period="2026-12-03",
                    context=daily_summary_context(), sent_at=earlier,
                    message_id="<177.1@pastq.example.org>"),
        "skipped": row(Kind.STUDY_REMINDER, Status.SKIPPED, user=ben, period="2026-12-03",
                       reason=Reason.GOAL_MET, detail="20 answered today, goal 20"),
        "failed": row(Kind.SYSTEM_REPORT, Status.FAILED, address="ops@example.org",
                      period="2026-12-04", attempts=5, reason=Reason.CONNECTION,
                      context=system_report_context(),
                      detail="Given up after 5 attempt(s): ConnectionRefusedError: "
                             "[Errno 111] Connection refused"),
        "unknown": row(Kind.STUDY_REMINDER, Status.UNKNOWN, user=ana, period="2026-12-04",
                       context=study_reminder_context(), reason=Reason.TIMEOUT,
                       detail="TimeoutError: timed out"),
    }


def test_read_a_sent_email_and_resend_a_failed_one(live_server, django_user_model, settings,
                                                    tmp_path):
    browser_required()
    # The test server speaks plain HTTP; the settings' production defaults mark cookies Secure.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser(email="root@example.com", password="pw-browser")
    rows = _ledger()
    sent, failed = rows["sent"], rows["failed"]
    ledger = f"{live_server.url}/admin/notifications/notification/"
    shots = {name: tmp_path / f"notifications-{name}.png"
             for name in ("changelist", "change", "resend-confirm", "send-test")}
    mail.outbox = []

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{live_server.url}/admin/login/?next=/admin/notifications/notification/")
        page.fill("input[name=username]", "root@example.com")
        page.fill("input[name=password]", "pw-browser")
        page.click("input[type=submit]")
        page.wait_for_url(ledger)

        results = page.locator("#result_list tbody")
        assert results.locator("tr").count() == 4
        for status in ("Sent", "Skipped", "Failed", "Unknown (may have been sent)"):
            assert results.get_by_text(status, exact=True).count() >= 1
        assert "Student email is on." in page.locator("#email-switch").inner_text()
        _screenshot(page, shots["changelist"])

        # The sent daily summary, as the student saw it.
        page.click(f'#result_list a[href$="/{sent.pk}/change/"]')
        page.wait_for_url(f"**/{sent.pk}/change/")
        email = page.frame_locator("iframe[title='The email as sent']")
        assert "here is how your day went" in email.locator("body").inner_text()
        assert page.locator("iframe").get_attribute("sandbox") == ""
        assert "Answers:   18, 13 right (72%)" in page.locator(".field-rendered_text").inner_text()
        _screenshot(page, shots["change"])

        # Back to the list: resend the failed entry, after the confirmation page.
        page.go_back()
        page.wait_for_url(ledger)
        page.check(f'input[name=_selected_action][value="{failed.pk}"]')
        page.select_option("select[name=action]", "resend")
        page.click("button[name=index]")
        page.wait_for_selector("text=will be sent again now")
        assert "1 email will be sent again now" in page.locator("#content").inner_text()
        assert failed.address in page.locator("#content table").inner_text()
        _screenshot(page, shots["resend-confirm"])
        page.get_by_role("button", name="Yes, resend 1 email").click()
        page.wait_for_url(ledger)
        assert "Resent: 1 sent." in page.locator(".messagelist").inner_text()

        page.click("text=Send a test email")
        page.wait_for_selector("input[name=to]")
        assert page.input_value("input[name=to]") == "root@example.com"
        _screenshot(page, shots["send-test"])

    failed.refresh_from_db()
    assert failed.status == Status.SENT and failed.attempts == 6
    assert [m.to for m in mail.outbox] == [["ops@example.org"]]
    for name in ("unknown", "skipped", "sent"):
        assert Notification.objects.get(pk=rows[name].pk).status == rows[name].status
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for path in shots.values():
        assert path.stat().st_size > 10_000
        shutil.copyfile(path, SCREENSHOT_DIR / path.name)
