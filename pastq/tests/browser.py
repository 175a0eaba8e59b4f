"""Headless Debian Chromium driven by Playwright, for the browser tests of the admin and the
emails. Playwright only drives the system browser: no browser is ever downloaded."""

import contextlib
import importlib.util
import os

import pytest

CHROMIUM = "/usr/bin/chromium"


def browser_required() -> None:
    """Skip the test, saying why, when the browser or Playwright is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")


@contextlib.contextmanager
def chromium():
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
