"""The operations page in a real browser: headless Debian Chromium driven by Playwright against
pytest-django's live server. Logs in through the admin's login form, follows the link from the
index to a page with a DOWN queue, an open alert and a paused schedule, acknowledges the alert,
resumes the schedule, and leaves a full-page screenshot (under the test's tmp_path, copied to
/tmp/pastq-screens/operations.png for a person to look at).

Skips (with the reason) when /usr/bin/chromium or the playwright package is missing. Playwright
only drives the system browser here: no browser is ever downloaded.
"""

import datetime
import shutil
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from core.jobs import enqueue
from core.jobs.models import JobRun
from core.jobs.schedules import schedules_sync
from maintenance.alerts import alert_open
from maintenance.models import OpsAlert, PausedSchedule
from maintenance.operations import schedule_pause
from maintenance.tests.conftest import make_presence, stale_age
from pastq.tests.browser import browser_required, chromium

SCREENSHOT_COPY = Path("/tmp/pastq-screens/operations.png")

pytestmark = pytest.mark.django_db(transaction=True)  # the live server sees committed rows


def test_acknowledge_and_resume_from_the_operations_page(live_server, django_user_model,
                                                         settings, tmp_path):
    browser_required()
    # The test server speaks plain HTTP; the settings' production defaults mark cookies Secure.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser(email="root@example.com", password="pw-browser")
    schedules_sync()
    schedule = Schedule.objects.get(name="pastq:job-records-prune")
    schedule_pause(schedule, by="night-shift@example.com")
    # The only cluster stopped reporting: every queue is DOWN.
    dead = make_presence(age_s=stale_age())
    # Something in every list, so the screenshot shows each section filled.
    enqueue("maintenance.tasks.job_records_prune", kwargs={"days": 7})
    now = timezone.now()
    # It has waited long: the maintenance queue is stalled as well as down.
    OrmQ.objects.update(lock=now - datetime.timedelta(seconds=settings.PASTQ_STALL_SECONDS + 120))
    JobRun.objects.create(job="maintenance.tasks.job_records_prune", queue="maintenance",
                          chain="c1", attempt=1, started_at=now, finished_at=now, duration_ms=80,
                          outcome=JobRun.Outcome.FAILED, error="ValueError: boom")
    alert_open(key="cluster-down:pastq",
               summary="No live qcluster serves question_processing, analytics, maintenance, "
                       f"notifications (last seen {dead.last_seen_at:%Y-%m-%d %H:%M} UTC)",
               detail="analytics: no live cluster; the last one (pastq on worker-1, pid 4242) "
                      "stopped reporting")
    alert = OpsAlert.objects.get()
    screenshot = tmp_path / "operations.png"

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{live_server.url}/admin/")
        page.fill("input[name=username]", "root@example.com")
        page.fill("input[name=password]", "pw-browser")
        page.click("input[type=submit]")
        page.wait_for_selector("#operations-module")

        page.click("text=Operations dashboard")
        page.wait_for_url("**/admin/operations/")
        queues = page.locator("#ops-queues")
        assert queues.locator(".ops-down", has_text="DOWN").count() == 4
        assert "last seen" in page.locator("#queue-analytics").inner_text()
        maintenance = page.locator("#queue-maintenance")
        assert maintenance.locator(".ops-down", has_text="STALLED").count() == 1
        assert "has waited" in maintenance.inner_text()

        # Acknowledge the alert: it stays listed, with who acknowledged it.
        row = page.locator(f"#alert-{alert.pk}")
        row.get_by_role("button", name="Acknowledge").click()
        page.wait_for_url("**/admin/operations/")
        assert "Acknowledged: No live qcluster serves" in \
            page.locator(".messagelist").inner_text()
        row = page.locator(f"#alert-{alert.pk}")
        assert "by root@example.com" in row.inner_text()
        assert row.get_by_role("button", name="Acknowledge").count() == 0

        # Resume the paused schedule.
        row = page.locator(f"#schedule-{schedule.pk}")
        assert row.locator(".ops-paused").inner_text() == "paused"
        row.get_by_role("button", name="Resume").click()
        page.wait_for_url("**/admin/operations/")
        assert "Resumed pastq:job-records-prune; next run" in \
            page.locator(".messagelist").inner_text()
        row = page.locator(f"#schedule-{schedule.pk}")
        assert row.locator(".ops-paused").count() == 0
        assert "active" in row.inner_text()
        assert row.get_by_role("button", name="Pause").count() == 1
        assert row.get_by_role("button", name="Resume").count() == 0
        page.screenshot(path=str(screenshot), full_page=True)

    assert screenshot.stat().st_size > 10_000
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    schedule.refresh_from_db()
    assert schedule.repeats == -1 and not PausedSchedule.objects.exists()
    alert.refresh_from_db()
    assert alert.acknowledged_by == "root@example.com" and alert.resolved_at is None
