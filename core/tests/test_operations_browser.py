"""The operations page in a real browser: headless Debian Chromium driven by Playwright against
pytest-django's live server. Logs in through the admin's login form, follows the link from the
index, pauses a schedule and leaves a screenshot in /tmp/operations.png.

Skips (with the reason) when /usr/bin/chromium or the playwright package is missing. Playwright
only drives the system browser here: no browser is ever downloaded.
"""

import contextlib
import importlib.util
import os

import pytest
from django.utils import timezone
from django_q.models import Schedule

from core import ops
from core.jobs import enqueue
from core.models import JobRun, PausedSchedule

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = "/tmp/operations.png"

pytestmark = pytest.mark.django_db(transaction=True)  # the live server sees committed rows


def _require_browser() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")


@contextlib.contextmanager
def _chromium():
    """Headless system Chromium. Playwright's sync API runs an event loop in this thread while
    it is open, and Django refuses database calls from there: use the ORM before and after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def test_pause_a_schedule_from_the_operations_page(live_server, django_user_model, settings):
    _require_browser()
    # The test server speaks plain HTTP; the settings' production defaults mark cookies Secure.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser(email="root@example.com", password="pw-browser")
    ops.schedules_sync()
    schedule = Schedule.objects.get(name="pastq:job-records-prune")
    # Something in every list, so the screenshot shows each section filled.
    enqueue("core.tasks.job_runs_prune", days=7)
    now = timezone.now()
    JobRun.objects.create(job="core.tasks.job_runs_prune", queue="maintenance", chain="c1",
                          attempt=1, started_at=now, finished_at=now, duration_ms=80,
                          outcome=JobRun.Outcome.FAILED, error="ValueError: boom")
    ops.alert_open(key="browser:test", summary="Queue analytics is stalled",
                   detail="analytics: no heartbeat yet (is its qcluster running?)")

    with _chromium() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{live_server.url}/admin/")
        page.fill("input[name=username]", "root@example.com")
        page.fill("input[name=password]", "pw-browser")
        page.click("input[type=submit]")
        page.wait_for_selector("#operations-module")

        page.click("text=Operations dashboard")
        page.wait_for_url("**/admin/operations/")
        assert page.locator("#ops-queues").get_by_text("STALLED").count() == 1

        row = page.locator(f"#schedule-{schedule.pk}")
        assert row.locator("text=active").count() == 1
        row.get_by_role("button", name="Pause").click()
        page.wait_for_url("**/admin/operations/")

        assert "Paused pastq:job-records-prune." in page.locator(".messagelist").inner_text()
        row = page.locator(f"#schedule-{schedule.pk}")
        assert row.locator(".ops-paused").inner_text() == "paused"
        assert row.get_by_role("button", name="Resume").count() == 1
        assert row.get_by_role("button", name="Pause").count() == 0
        page.screenshot(path=SCREENSHOT, full_page=True)

    schedule.refresh_from_db()
    assert schedule.repeats == 0
    assert PausedSchedule.objects.get(schedule=schedule).paused_by == "root@example.com"

