"""The analytics admin: every list opens in a constant number of queries, nothing computed can be
edited by hand, and a stored report shows as rendered, chart included."""

import datetime

from django.urls import reverse

from analytics import runs
from analytics.models import QuestionStats, Report
from core import services
from core.models import Attempt
from core.tests.factories import make_question

DAY = datetime.date(2026, 3, 2)
NOW = datetime.datetime(2026, 3, 20, 13, 0, tzinfo=datetime.UTC)
LISTS = ["dailystudentstats", "dailysubjectstats", "weeklystudentstats", "questionstats",
         "paperstats", "studentinsight", "studentachievement", "regrade", "report",
         "reviewcard"]


def _activity(n_students: int, offset: int = 0):
    questions = [make_question(correct="A") for _ in range(4)]
    rows = []
    for i in range(offset, offset + n_students):
        student = services.student_create(email=f"a{i}@example.com", password=None,
                                          timezone_name="Europe/Paris").user
        for d in range(5):
            for q, question in enumerate(questions):
                at = datetime.datetime.combine(DAY + datetime.timedelta(days=d),
                                               datetime.time(10, q), tzinfo=datetime.UTC)
                rows.append(Attempt(student=student, question=question,
                                    is_correct=(i + q + d) % 3 > 0, time_taken_ms=4000,
                                    answered_at=at, local_date=at.date(),
                                    attempt_number=d + 1))
    Attempt.objects.bulk_create(rows)
    runs.analytics_run(dates=[DAY + datetime.timedelta(days=n) for n in range(7)], now=NOW)


def _list_queries(admin_client, django_assert_max_num_queries, name):
    with django_assert_max_num_queries(40) as counted:
        response = admin_client.get(reverse(f"admin:analytics_{name}_changelist"))
    assert response.status_code == 200
    return len(counted.captured_queries)


def test_every_list_costs_the_same_queries_with_more_rows(
        admin_client, catalogue, django_assert_max_num_queries):
    _activity(2)
    small = {name: _list_queries(admin_client, django_assert_max_num_queries, name)
             for name in LISTS}
    _activity(6, offset=2)
    large = {name: _list_queries(admin_client, django_assert_max_num_queries, name)
             for name in LISTS}
    assert all(large[name] <= small[name] for name in LISTS), (small, large)


def test_computed_rows_cannot_be_added_or_changed(admin_client, catalogue):
    _activity(1)
    stats = QuestionStats.objects.first()
    page = admin_client.get(reverse("admin:analytics_questionstats_change",
                                    args=[stats.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.get(reverse("admin:analytics_questionstats_add")).status_code == 403
    assert b"Choices (overall, top third, bottom third)" in page.content


def test_a_report_shows_as_rendered_with_its_chart(admin_client, catalogue):
    _activity(1)
    report = Report.objects.filter(kind="student_weekly").first()
    page = admin_client.get(reverse("admin:analytics_report_change", args=[report.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert "<iframe sandbox" in content
    assert "data:image/png;base64," in content  # the chart, inline for the browser
    assert "cid:chart" not in content
