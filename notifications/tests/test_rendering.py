"""notifications.rendering.email_render: every kind's subject, text and HTML parts, escaping,
the unsubscribe footers, inlined styles, the report chart's Content-ID, no queries, and (in
headless Chromium, when it is installed) that every kind fits a phone's width.

The context builders below are realistic: the screenshots a person looks at are made from them.
"""

import datetime
import html as html_lib
import re
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import notifications
from analytics.models import Report
from analytics.reports import report_context
from notifications.models import Notification
from notifications.rendering import SUBJECT_MAX_CHARS, RenderedEmail, email_render
from pastq.tests.browser import CHROMIUM, browser_required

BASE_URL = "https://pastq.example.org"
STUDENT_KINDS = [str(kind) for kind in Notification.STUDENT_KINDS]
STAFF_KINDS = [str(kind) for kind in Notification.STAFF_KINDS]
ALL_KINDS = [str(kind) for kind in Notification.Kind]
EVIL_NAME = '<script>alert(1)</script> & "Bob"'
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")


# --- Contexts, as the sender builds them -------------------------------------------------------


def _common(kind: str, *, name: str = "Ana Müller", label: str) -> dict:
    if kind in STAFF_KINDS:
        return {"name": "ops@example.org", "base_url": BASE_URL, "unsubscribe_url": None,
                "unsubscribe_all_url": None, "kind_label": label}
    return {"name": name, "base_url": BASE_URL,
            "unsubscribe_url": f"{BASE_URL}/email/unsubscribe/tok3n-{kind}/",
            "unsubscribe_all_url": f"{BASE_URL}/email/preferences/tok3n-all/",
            "kind_label": label}


def daily_summary_context(**overrides) -> dict:
    return {**_common("daily_summary", label="daily summaries"),
            "day": datetime.date(2026, 12, 3),
            "stats": {"attempts": 18, "correct": 13, "accuracy": 13 / 18,
                      "time_spent_ms": 3_910_000, "distinct_questions": 15, "sessions": 2},
            "streak": 5, "longest_streak": 12, "reviews_due": 7, "goal": 20,
            "timezone": "Europe/Berlin", **overrides}


def study_reminder_context(**overrides) -> dict:
    return {**_common("study_reminder", label="study reminders"),
            "today": datetime.date(2026, 12, 4), "answered_today": 0, "goal": 20,
            "remaining": 20, "reviews_due": 4, "streak": 6, "streak_at_risk": True, **overrides}


def achievement_context(**overrides) -> dict:
    return {**_common("achievement", label="achievement emails"),
            "achievement": {
                "title": "Subject mastered", "kind": "mastery", "threshold": 80,
                "description": "At least 80% right at the first try over at least 30 different "
                               "questions of a subject, covering at least 3 of its topics, in "
                               "the last 90 days."},
            "subject_name": "Biology", "value": 88.4, "earned_on": datetime.date(2026, 12, 3),
            **overrides}


def _student_report() -> Report:
    monday = datetime.date(2026, 11, 30)
    attempts = [12, 0, 25, 18, 31, 7, 0]
    correct = [9, 0, 17, 13, 25, 4, 0]
    days = [{"date": (monday + datetime.timedelta(days=n)).isoformat(), "attempts": a,
             "correct": c, "accuracy": c / a if a else None, "time_spent_ms": a * 61_000}
            for n, (a, c) in enumerate(zip(attempts, correct, strict=True))]
    return Report(kind=Report.Kind.STUDENT_WEEKLY, data={
        "kind": "student_weekly", "label": "2026-W49", "iso_year": 2026, "iso_week": 49,
        "period_start": monday.isoformat(), "period_end": "2026-12-06",
        "student": {"id": 7, "name": "Ana Müller", "email": "ana@example.org",
                    "timezone": "Europe/Berlin"},
        "totals": {"attempts": 93, "correct": 68, "accuracy": 68 / 93,
                   "time_spent_ms": 93 * 61_000, "active_days": 5, "distinct_questions": 71,
                   "sessions": 9},
        "previous_week": {"period_start": "2026-11-23", "attempts": 64, "correct": 41,
                          "accuracy": 41 / 64, "time_spent_ms": 64 * 58_000,
                          "active_days": 4},
        "days": days,
        "subjects": [
            {"code": "BIO", "name": "Biology", "attempts": 51, "correct": 40,
             "accuracy": 40 / 51, "time_spent_ms": 51 * 60_000},
            {"code": "CHEM", "name": "Chemistry", "attempts": 42, "correct": 28,
             "accuracy": 28 / 42, "time_spent_ms": 42 * 62_000}],
        "built_at": "2026-12-07T00:20:00+00:00"})


def weekly_report_context(**overrides) -> dict:
    return {**report_context(_student_report()),
            **_common("weekly_report", label="weekly reports"), "has_chart": True,
            **overrides}


def _admin_report() -> Report:
    last = datetime.date(2026, 12, 3)
    days = []
    for n in range(14):
        day = last - datetime.timedelta(days=13 - n)
        attempts = 900 + 37 * n
        correct = int(attempts * (0.6 + 0.01 * n))
        days.append({"date": day.isoformat(), "attempts": attempts, "correct": correct,
                     "accuracy": correct / attempts, "time_spent_ms": attempts * 55_000,
                     "active_students": 80 + n})
    return Report(kind=Report.Kind.ADMIN_DAILY, data={
        "kind": "admin_daily", "label": "2026-12-03", "period_start": "2026-12-03",
        "period_end": "2026-12-03",
        "totals": {"attempts": 1381, "correct": 1010, "accuracy": 1010 / 1381,
                   "time_spent_ms": 1381 * 55_000, "active_students": 93,
                   "first_attempts": 1104, "new_signups": 3},
        "days": days,
        "top_subjects": [
            {"code": "BIO", "name": "Biology", "attempts": 512, "correct": 380,
             "accuracy": 380 / 512, "students": 61},
            {"code": "CHEM", "name": "Chemistry", "attempts": 433, "correct": 301,
             "accuracy": 301 / 433, "students": 52},
            {"code": "PHYS", "name": "Physics", "attempts": 290, "correct": 170,
             "accuracy": 170 / 290, "students": 40}],
        "hardest_questions": [
            {"id": 4411, "subject": "PHYS", "first_attempts": 23, "correct": 4,
             "accuracy": 4 / 23, "text": "A ball is thrown vertically upwards at 12 m/s from "
                                          "a cliff 30 m high. How long before it lands?"},
            {"id": 981, "subject": "CHEM", "first_attempts": 17, "correct": 5,
             "accuracy": 5 / 17, "text": "Which of these ions has the largest radius?"}],
        "review_flags": {"counts": {"low_discrimination": 4, "too_hard": 2,
                                    "not_enough_data": 130},
                         "questions_flagged": 6, "ai_key_disagreement": 1},
        "ai_backlog": {"pending": {"embedding": 12, "explanation": 40},
                       "failed": {"explanation": 2}, "pending_total": 52, "failed_total": 2},
        "failed_jobs": {"total": 3, "more": 0, "by_job": [
            {"job": "notifications.tasks.dispatch_local_time_emails", "outcome": "retrying",
             "count": 2, "last_started_at": "2026-12-03T09:15:00+00:00"},
            {"job": "maintenance.tasks.backup_create", "outcome": "failed", "count": 1,
             "last_started_at": "2026-12-03T04:00:00+00:00"}]},
        "built_at": "2026-12-05T12:30:00+00:00"})


def admin_report_context(**overrides) -> dict:
    return {**report_context(_admin_report()),
            **_common("admin_report", label="admin reports"), "has_chart": True, **overrides}


def system_report_context(**overrides) -> dict:
    return {**_common("system_report", label="system reports"),
            "title": "System report 2026-12-04",
            "generated_at": datetime.datetime(2026, 12, 4, 6, 30, 12, tzinfo=datetime.UTC),
            "status": "degraded",
            "sections": [
                {"heading": "Queues", "rows": [
                    ["question_processing", "running, 0 waiting"],
                    ["analytics", "running, 2 waiting"],
                    ["notifications", "down since 2026-12-04 05:58 UTC, 340 waiting"]]},
                {"heading": "Backups", "rows": [
                    ["Last backup", "2026-12-04 04:00 UTC, 182 MB, encrypted"],
                    ["Location", "/var/lib/pastq/backups/pastq-2026-12-04T0400Z.sql.zst.enc"]]},
                {"heading": "Open alerts", "rows": []}],
            **overrides}


def test_context(**overrides) -> dict:
    return {**_common("test", label="test emails"), "sent_by": "root@example.org",
            "backend": "anymail.backends.postmark.EmailBackend",
            "sent_at": datetime.datetime(2026, 12, 4, 9, 41, tzinfo=datetime.UTC),
            **overrides}


test_context.__test__ = False  # a context builder, not a test

CONTEXTS = {
    "daily_summary": daily_summary_context, "study_reminder": study_reminder_context,
    "achievement": achievement_context, "weekly_report": weekly_report_context,
    "admin_report": admin_report_context, "system_report": system_report_context,
    "test": test_context,
}


def _visible_text(html: str) -> str:
    """The HTML's text as a reader sees it (tags dropped, entities decoded)."""
    body = html.split("<body", 1)[1]
    return html_lib.unescape(" ".join(_TAG.sub(" ", body).split()))


# --- Every kind ---------------------------------------------------------------------------------


def test_every_kind_has_a_context_here():
    assert set(CONTEXTS) == set(ALL_KINDS)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_renders_its_three_parts(kind):
    email = email_render(kind, CONTEXTS[kind]())

    assert isinstance(email, RenderedEmail)
    assert email.subject and "\n" not in email.subject and "\r" not in email.subject
    assert email.subject == " ".join(email.subject.split())
    assert len(email.subject) <= SUBJECT_MAX_CHARS
    assert email.text.strip() and not _TAG.search(email.text), email.text
    assert "\n\n\n" not in email.text
    assert email.html.startswith("<!DOCTYPE html>")
    assert "pastq" in email.html and f'href="{BASE_URL}/"' in email.html


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_html_styles_are_inlined_and_only_media_rules_stay(kind):
    html = email_render(kind, CONTEXTS[kind]()).html

    assert "<link" not in html
    assert 'style="' in html
    assert re.search(r'<td class="content"[^>]* style="[^"]*font-family', html)
    # The one <style> left holds the phone layout, which cannot be inlined.
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert len(styles) == 1
    assert styles[0].strip().startswith("@media") and "max-width: 620px" in styles[0]
    assert ".container {" not in styles[0].split("@media", 1)[0]


def test_the_context_is_not_changed():
    context = daily_summary_context()
    before = dict(context)

    email_render("daily_summary", context)

    assert context == before


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="Unknown email kind 'newsletter'"):
        email_render("newsletter", test_context())


def test_rendering_runs_no_query():
    # pytest-django blocks the database in a test without the django_db mark: a query raises.
    for kind in ALL_KINDS:
        email_render(kind, CONTEXTS[kind]())


@pytest.mark.django_db
def test_rendering_runs_no_query_with_a_database():
    with CaptureQueriesContext(connection) as queries:
        for kind in ALL_KINDS:
            email_render(kind, CONTEXTS[kind]())
    assert len(queries) == 0


# --- Footers: unsubscribe for students, none for staff ------------------------------------------


@pytest.mark.parametrize("kind", STUDENT_KINDS)
def test_student_kinds_carry_both_unsubscribe_links_in_both_parts(kind):
    context = CONTEXTS[kind]()
    email = email_render(kind, context)

    for url in (context["unsubscribe_url"], context["unsubscribe_all_url"]):
        assert url in email.text
        assert f'href="{url}"' in email.html
    label = context["kind_label"]
    assert f"Unsubscribe from {label}: {context['unsubscribe_url']}" in email.text
    assert f"Unsubscribe from {label}</a>" in email.html
    assert "Manage or stop all email" in email.text and "Manage or stop all email" in email.html
    assert f"subscribed to {label}" in email.text and f"subscribed to {label}" in email.html


@pytest.mark.parametrize("kind", STAFF_KINDS)
def test_staff_kinds_have_no_unsubscribe(kind):
    email = email_render(kind, CONTEXTS[kind]())

    reason = ("root@example.org sent a test email to this address" if kind == "test"
              else "one of the pastq staff")
    for part in (email.text, email.html):
        assert "nsubscribe" not in part
        assert reason in part


def test_without_the_all_email_link_only_the_kind_link_shows():
    email = email_render("daily_summary", daily_summary_context(unsubscribe_all_url=None))

    assert "Unsubscribe from daily summaries" in email.html
    assert "Manage or stop all email" not in email.html
    assert "Manage or stop all email" not in email.text


def test_an_unsubscribe_url_is_escaped_in_the_html_attribute():
    url = f"{BASE_URL}/email/unsubscribe/?t=a&k=daily_summary"
    email = email_render("daily_summary", daily_summary_context(unsubscribe_url=url))

    assert 'href="https://pastq.example.org/email/unsubscribe/?t=a&amp;k=daily_summary"' \
        in email.html
    assert url in email.text


# --- Escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STUDENT_KINDS)
def test_a_hostile_name_is_escaped_in_html_and_kept_raw_in_text(kind):
    email = email_render(kind, CONTEXTS[kind](name=EVIL_NAME))

    assert "<script" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in email.html
    assert EVIL_NAME in _visible_text(email.html)
    assert EVIL_NAME in email.text


def test_hostile_titles_and_subject_names_are_escaped():
    evil = '<img src=x onerror=alert(1)> "Chem" & co'
    context = achievement_context(subject_name=evil, achievement={
        "title": f"<b>{evil}</b>", "description": evil, "kind": "mastery", "threshold": 80})
    email = email_render("achievement", context)

    assert "<img" not in email.html and "<b>" not in email.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in email.html
    assert f"<b>{evil}</b>" in email.text and email.subject.startswith("Achievement unlocked: <b>")
    assert evil in _visible_text(email.html)


def test_hostile_report_fields_are_escaped():
    context = weekly_report_context()
    context["subjects"] = [{**context["subjects"][0], "name": "</td><script>x()</script>"}]
    context["chart_alt"] = '" onload="alert(1)'
    email = email_render("weekly_report", context)

    assert "<script>x()" not in email.html
    assert 'onload="alert(1)' not in email.html
    assert "</td><script>x()</script>" in email.text


def test_a_subject_with_newlines_stays_one_line_and_short():
    context = system_report_context(title="Report\r\nBcc: victim@example.org\n" + "x" * 400)
    subject = email_render("system_report", context).subject

    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("Report Bcc: victim@example.org x")
    assert len(subject) == SUBJECT_MAX_CHARS and subject.endswith("…")


# --- Per kind ---------------------------------------------------------------------------------


def test_daily_summary_with_activity():
    email = email_render("daily_summary", daily_summary_context())

    assert email.subject == "Your day, Thursday 3 December: 18 answers, 72% right"
    assert "1 h 05 min" in email.text and "1 h 05 min" in email.html
    assert "18 of 20" in email.text and "2 short" in email.text
    assert "5 days in a row (your longest: 12 days)" in email.text
    assert "7 questions are due for review" in email.text
    assert "Europe/Berlin" in email.text and "Europe/Berlin" in email.html
    assert 'width="90%"' in email.html  # the goal's progress bar


def test_daily_summary_without_activity_speaks_of_reviews():
    email = email_render("daily_summary", daily_summary_context(
        stats=None, streak=0, reviews_due=12))

    assert email.subject == "12 questions are waiting for review"
    assert "You did not answer any questions on Thursday 3 December" in email.text
    assert "12 questions are due for review" in _visible_text(email.html)
    one = email_render("daily_summary", daily_summary_context(stats=None, reviews_due=1))
    assert one.subject == "1 question is waiting for review"


def test_daily_summary_goal_met_and_short_practice():
    stats = {"attempts": 25, "correct": 25, "accuracy": 1.0, "time_spent_ms": 540_000,
             "distinct_questions": 25, "sessions": 1}
    email = email_render("daily_summary", daily_summary_context(stats=stats))

    assert email.subject.endswith("25 answers, 100% right")
    assert "9 min" in email.text and "met. Well done!" in email.text
    assert 'class="bar-left"' not in email.html  # the goal's bar is full


def test_study_reminder_streak_at_risk():
    email = email_render("study_reminder", study_reminder_context())

    assert email.subject == "Your 6-day streak is at risk: 20 questions to go today"
    assert "6 days in a row" in email.text and "before midnight" in email.html
    assert "0 of 20" in email.text and "4 questions are due for review" in email.text


def test_study_reminder_without_a_streak_at_risk():
    email = email_render("study_reminder", study_reminder_context(
        answered_today=12, remaining=8, streak=6, streak_at_risk=False))

    assert email.subject == "8 questions left to reach today's goal"
    assert "before midnight" not in email.html
    assert "Streak: 6 days in a row" in email.text
    assert 'width="60%"' in email.html


def test_achievement():
    email = email_render("achievement", achievement_context())

    assert email.subject == "Achievement unlocked: Subject mastered in Biology"
    assert "88% right at the first try (needed: 80%)" in email.text
    assert "Thursday 3 December 2026" in email.text and "Thursday 3 December 2026" in email.html
    streak = email_render("achievement", achievement_context(
        subject_name=None, value=7.0, achievement={
            "title": "A full week", "description": "Practise on 7 local days in a row.",
            "kind": "streak", "threshold": 7}))
    assert streak.subject == "Achievement unlocked: A full week"
    assert "7 days in a row (needed: 7 days)" in streak.text


def test_weekly_report_references_the_chart_by_content_id():
    context = weekly_report_context()
    email = email_render("weekly_report", context)

    assert email.subject == "Your week 2026-W49: 93 answers, 73% right"
    assert '<img class="chart"' in email.html
    assert 'src="cid:chart@pastq"' in email.html
    assert f'alt="{context["chart_alt"]}"' in email.html
    assert "Biology" in email.text and "Chemistry" in email.html
    assert "Wed 2 Dec 2026" in email.text and "Wed 2 Dec 2026" in email.html
    assert "The week before: 64 answers" in email.text
    without = email_render("weekly_report", weekly_report_context(has_chart=False))
    assert "cid:chart" not in without.html


def test_weekly_report_of_a_quiet_week():
    context = weekly_report_context()
    context["totals"] = {**context["totals"], "attempts": 0, "correct": 0, "active_days": 0}
    email = email_render("weekly_report", context)

    assert email.subject == "Your week 2026-W49: no answers this week"
    assert "You did not answer any questions this week" in email.text


def test_admin_report():
    email = email_render("admin_report", admin_report_context())

    assert email.subject == ("Daily report 2026-12-03: 93 active students, 1381 answers "
                             "(73% right), 3 failed job runs")
    assert 'src="cid:chart@pastq"' in email.html
    assert "The 14 days to Thu 3 Dec 2026" in email.text
    assert "#4411 PHYS" in email.text and "#4411 PHYS" in email.html
    assert "notifications.tasks.dispatch_local_time_emails (retrying): 2" in email.text
    assert f"{BASE_URL}/admin/operations/" in email.text
    assert "2026-12-05 12:30 UTC" in email.html


def test_system_report():
    email = email_render("system_report", system_report_context())

    assert email.subject == "System report 2026-12-04: degraded"
    assert "Generated 2026-12-04 06:30 UTC" in email.text
    assert "- notifications: down since 2026-12-04 05:58 UTC, 340 waiting" in email.text
    assert "Open alerts\nNothing to report." in email.text
    assert "status-warn" in email.html and "#c77c00" in email.html
    healthy = email_render("system_report", system_report_context(status="healthy",
                                                                  sections=[]))
    assert "status-good" in healthy.html and "Nothing to report." in healthy.text


def test_test_email():
    email = email_render("test", test_context())

    assert email.subject == "pastq test email, sent by root@example.org"
    assert "anymail.backends.postmark.EmailBackend" in email.text
    assert "2026-12-04 09:41 UTC" in email.text and "2026-12-04 09:41 UTC" in email.html


def test_a_missing_kind_label_gets_a_default():
    context = daily_summary_context()
    del context["kind_label"]

    email = email_render("daily_summary", context)

    assert "Unsubscribe from daily summaries" in email.text


# --- What a person sees -----------------------------------------------------------------------


def test_every_kind_fits_a_phone_and_a_desktop_in_chromium(tmp_path):
    """At 375 px nothing is wider than the screen (no sideways scrolling) and the phone rules
    apply; at 800 px the column is 600 px wide."""
    browser_required()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            page = browser.new_page()
            for kind in ALL_KINDS:
                path = tmp_path / f"{kind}.html"
                path.write_text(email_render(kind, CONTEXTS[kind]()).html, encoding="utf-8")
                page.set_viewport_size({"width": 375, "height": 700})
                page.goto(path.as_uri())
                assert page.evaluate("document.documentElement.scrollWidth") <= 375, kind
                assert page.evaluate(
                    "document.querySelector('.container').getBoundingClientRect().width"
                ) == 375, kind
                page.set_viewport_size({"width": 800, "height": 700})
                page.goto(path.as_uri())
                width = page.evaluate(
                    "document.querySelector('.container').getBoundingClientRect().width")
                assert 600 <= width <= 602, kind  # and its border
        finally:
            browser.close()


def test_dates_may_come_as_iso_strings_and_a_missing_name_is_greeted():
    email = email_render("daily_summary", daily_summary_context(day="2026-12-03", name=""))

    assert email.subject.startswith("Your day, Thursday 3 December:")
    assert email.text.startswith("Hello there,")


def test_every_text_template_turns_autoescaping_off():
    """A text part shows what it holds: "&" stays "&", never "&amp;"."""
    folder = Path(notifications.__file__).parent / "templates" / "notifications" / "email"
    texts = sorted(folder.glob("*.txt"))
    assert len(texts) == 2 * len(ALL_KINDS) + 1  # subject and text per kind, and the footer
    for path in texts:
        source = path.read_text(encoding="utf-8")
        assert source.startswith("{% autoescape off %}"), path.name
        assert source.rstrip().endswith("{% endautoescape %}"), path.name
