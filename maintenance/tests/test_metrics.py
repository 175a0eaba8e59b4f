"""/metrics: the Prometheus text format, read from the database on each scrape; who may read it;
a fixed number of queries whatever the data."""

import datetime
import uuid
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from core.jobs.models import JobRun
from core.models import Question, QuestionStep, Subject
from maintenance.metrics import DatabaseCollector, metrics_registry
from maintenance.models import BackupRecord, HealthCheckRun, OpsAlert
from maintenance.tests.conftest import VIEW, grant, make_presence, make_run
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.urls("maintenance.tests.metrics_urls")]

TOKEN = "metrics-test-token"
MIN = datetime.timedelta(minutes=1)


@pytest.fixture
def token(settings):
    settings.HEALTH_TOKEN = TOKEN
    return TOKEN


def scrape(client, **headers):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    return response


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of every sample in a classic text scrape."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels):
    return found.get((name, frozenset(labels.items())))


# --- Seeded rows --------------------------------------------------------------------------


def make_steps(statuses: dict[tuple[str, str], int]) -> None:
    subject, _ = Subject.objects.get_or_create(code="MX", defaults={"name": "Metrics"})
    for (step, status), n in statuses.items():
        for _ in range(n):
            question = Question.objects.create(
                subject=subject, question_type=Question.Type.NUMERIC, text="What is 6 x 7?",
                content_hash=uuid.uuid4().hex)
            QuestionStep.objects.create(question=question, step=step, status=status)


def make_email(kind, status, created_at, n=1):
    for _ in range(n):
        address = f"{uuid.uuid4().hex[:10]}@example.org"
        Notification.objects.create(address=address, recipient=address, kind=kind,
                                    period="2026-12-04", status=status, due_at=created_at,
                                    send_after=created_at, created_at=created_at)


def seed(now: datetime.datetime) -> None:
    make_presence()  # every queue served
    OrmQ.objects.create(key="maintenance", payload="x", lock=now - datetime.timedelta(seconds=90))
    OrmQ.objects.create(key="maintenance", payload="x", lock=now - datetime.timedelta(seconds=30))
    OrmQ.objects.create(key="analytics", payload="x", lock=now + 10 * MIN)  # a retry, later

    job = "maintenance.tasks.job_records_prune"
    for ms in (40, 200, 3000):
        make_run(job, JobRun.Outcome.SUCCEEDED, finished_at=now - 5 * MIN, duration_ms=ms,
                 started_at=now - 6 * MIN)
    make_run(job, JobRun.Outcome.FAILED, finished_at=now - 30 * MIN, duration_ms=1200,
             started_at=now - 31 * MIN)
    make_run("core.tasks.process_pending_questions", JobRun.Outcome.GAVE_UP,
             queue="question_processing", finished_at=now - 2 * MIN, duration_ms=0,
             started_at=now - 2 * MIN)
    make_run(job, JobRun.Outcome.SUCCEEDED, finished_at=now - 61 * MIN, duration_ms=10,
             started_at=now - 62 * MIN)  # outside the hour
    make_run(job, JobRun.Outcome.RUNNING, finished_at=None, duration_ms=None,
             started_at=now - MIN, heartbeat_at=now)  # running: not a run that ended

    OpsAlert.objects.create(key="a", summary="open")
    OpsAlert.objects.create(key="b", summary="acknowledged", acknowledged_at=now)
    OpsAlert.objects.create(key="c", summary="resolved", resolved_at=now)

    make_email(Notification.Kind.DAILY_SUMMARY, Notification.Status.SENT, now - 60 * MIN, n=2)
    make_email(Notification.Kind.SYSTEM_REPORT, Notification.Status.FAILED, now - 23 * 60 * MIN)
    make_email(Notification.Kind.DAILY_SUMMARY, Notification.Status.SENT, now - 25 * 60 * MIN)

    make_steps({("embedding", "pending"): 3, ("embedding", "done"): 1,
                ("explanation", "failed"): 2})

    BackupRecord.objects.create(name="old.dump", engine="sqlite", status="verified",
                                created_at=now - 30 * 60 * MIN, verified_at=now - 29 * 60 * MIN)
    BackupRecord.objects.create(name="new.dump", engine="sqlite", status="verified",
                                created_at=now - 3 * 60 * MIN, verified_at=now - 2 * 60 * MIN)
    BackupRecord.objects.create(name="failed.dump", engine="sqlite", status="failed",
                                created_at=now - 60 * MIN)

    HealthCheckRun.objects.create(checked_at=now - 10 * MIN, source="job", status="pass",
                                  checks=[])
    HealthCheckRun.objects.create(checked_at=now - 2 * MIN, source="job", status="warn", checks=[
        {"name": "database", "status": "pass", "critical": True},
        {"name": "backup", "status": "warn", "critical": False}])


# --- The figures ---------------------------------------------------------------------------


def test_every_family_with_its_values_for_seeded_rows(client, token):
    now = timezone.now()
    seed(now)
    with mock.patch("maintenance.metrics.timezone.now", return_value=now):
        response = scrape(client)
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    text = response.content.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    found = samples(text)

    assert {name for name in families if name.startswith("pastq_")} >= {
        "pastq_queue_served", "pastq_queue_waiting_tasks", "pastq_queue_oldest_wait_seconds",
        "pastq_queue_running_jobs", "pastq_queue_retries_pending", "pastq_job_runs_last_hour",
        "pastq_job_duration_seconds", "pastq_alerts_open", "pastq_emails_last_24h",
        "pastq_student_email_paused", "pastq_ai_steps", "pastq_backup_age_seconds",
        "pastq_backups_failed_last_24h", "pastq_health_status", "pastq_health_check_passing",
        "pastq_health_last_run_age_seconds"}
    # Nothing that could go down while calling itself a counter.
    assert {f.type for f in families.values()} <= {"gauge", "histogram"}

    for queue in settings.PASTQ_QUEUES:
        assert value(found, "pastq_queue_served", queue=queue) == 1
    assert value(found, "pastq_queue_waiting_tasks", queue="maintenance") == 2
    assert value(found, "pastq_queue_oldest_wait_seconds", queue="maintenance") == 90
    assert value(found, "pastq_queue_waiting_tasks", queue="analytics") == 0
    assert value(found, "pastq_queue_oldest_wait_seconds", queue="analytics") == 0
    assert value(found, "pastq_queue_retries_pending", queue="analytics") == 1
    assert value(found, "pastq_queue_running_jobs", queue="maintenance") == 1

    prune, processing = "maintenance.tasks.job_records_prune", "core.tasks.process_pending_questions"
    assert value(found, "pastq_job_runs_last_hour", job=prune, outcome="succeeded") == 3
    assert value(found, "pastq_job_runs_last_hour", job=prune, outcome="failed") == 1
    assert value(found, "pastq_job_runs_last_hour", job=processing, outcome="gave_up") == 1
    assert value(found, "pastq_job_runs_last_hour", job=prune, outcome="running") is None

    def bucket(le, outcome="succeeded"):
        return value(found, "pastq_job_duration_seconds_bucket", job=prune, outcome=outcome,
                     le=le)

    assert [bucket(le) for le in ("0.05", "0.1", "0.25", "2.5", "5.0", "1800.0", "+Inf")] == \
        [1, 1, 2, 2, 3, 3, 3]
    assert bucket("1.0", "failed") == 0 and bucket("2.5", "failed") == 1
    assert value(found, "pastq_job_duration_seconds_gcount", job=prune,
                 outcome="succeeded") == 3
    assert value(found, "pastq_job_duration_seconds_gsum", job=prune,
                 outcome="succeeded") == pytest.approx(3.24)

    assert value(found, "pastq_alerts_open", acknowledged="no") == 1
    assert value(found, "pastq_alerts_open", acknowledged="yes") == 1

    assert value(found, "pastq_emails_last_24h", kind="daily_summary", status="sent") == 2
    assert value(found, "pastq_emails_last_24h", kind="system_report", status="failed") == 1
    assert value(found, "pastq_emails_last_24h", kind="weekly_report", status="queued") == 0
    assert value(found, "pastq_student_email_paused") == 0

    assert value(found, "pastq_ai_steps", step="embedding", status="pending") == 3
    assert value(found, "pastq_ai_steps", step="embedding", status="done") == 1
    assert value(found, "pastq_ai_steps", step="explanation", status="failed") == 2
    assert value(found, "pastq_ai_steps", step="similar", status="pending") == 0

    assert value(found, "pastq_backup_age_seconds", state="created") == 3 * 3600
    assert value(found, "pastq_backup_age_seconds", state="verified") == 2 * 3600
    assert value(found, "pastq_backups_failed_last_24h") == 1

    assert value(found, "pastq_health_status", status="warn") == 1
    assert value(found, "pastq_health_status", status="pass") == 0
    assert value(found, "pastq_health_check_passing", check="database", critical="true") == 1
    assert value(found, "pastq_health_check_passing", check="backup", critical="false") == 0
    assert value(found, "pastq_health_last_run_age_seconds") == 120


def test_an_empty_database_has_no_backup_or_health_series_yet(client, token):
    found = samples(scrape(client).content.decode())

    assert value(found, "pastq_queue_served", queue="maintenance") == 0
    assert not [k for k in found if k[0] in ("pastq_backup_age_seconds", "pastq_health_status",
                                             "pastq_job_runs_last_hour")]
    assert value(found, "pastq_alerts_open", acknowledged="no") == 0


def test_openmetrics_when_prometheus_asks_for_it(client, token):
    now = timezone.now()
    make_run("maintenance.tasks.job_records_prune", JobRun.Outcome.SUCCEEDED,
             finished_at=now, duration_ms=300)
    response = scrape(client, Accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5")

    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in openmetrics_families(response.content.decode())}
    histogram = families["pastq_job_duration_seconds"]
    assert histogram.type == "gaugehistogram"
    assert {s.labels["le"]: s.value for s in histogram.samples
            if s.name.endswith("_bucket")}["0.5"] == 1


def test_the_paused_switch_is_exposed(client, token, settings):
    settings.NOTIFICATIONS_PAUSED = True
    assert value(samples(scrape(client).content.decode()), "pastq_student_email_paused") == 1


# --- Who may read it --------------------------------------------------------------------------


def test_anonymous_gets_401_with_a_bearer_challenge(client, token):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="pastq metrics"'
    assert b"pastq_" not in response.content


def test_a_wrong_token_is_refused(client, token):
    response = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_no_token_configured_means_no_token_works(client, settings):
    settings.HEALTH_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_staff_without_the_permission_gets_403(client, staff_user, token):
    client.force_login(staff_user)
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"maintenance.view_operations" in response.content


def test_a_student_gets_403(client, django_user_model, token):
    client.force_login(django_user_model.objects.create_user(email="s@example.org"))
    assert client.get("/metrics").status_code == 403


def test_staff_with_the_permission_may_read_it(client, staff_user):
    client.force_login(grant(staff_user, VIEW))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"# TYPE pastq_queue_waiting_tasks gauge" in response.content


def test_only_get(client, token):
    response = client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405


def test_a_database_error_is_a_503_that_says_so(client, token):
    with mock.patch.object(DatabaseCollector, "collect",
                           side_effect=OperationalError("the server closed the connection")):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert b"the server closed the connection" in response.content


# --- A fixed number of queries -------------------------------------------------------------


def _collect_queries(now) -> int:
    registry = metrics_registry(now=now)
    with CaptureQueriesContext(connection) as queries:
        list(registry.collect())
    return len(queries)


def test_a_scrape_runs_the_same_queries_whatever_the_data(client, token,
                                                          django_assert_max_num_queries):
    now = timezone.now()
    empty = _collect_queries(now)
    seed(now)
    seeded = _collect_queries(now)
    for i in range(20):  # more of everything
        make_run(f"maintenance.tasks.job_{i}", JobRun.Outcome.SUCCEEDED,
                 finished_at=now - MIN, duration_ms=i * 100)
        OpsAlert.objects.create(key=f"k{i}", summary="open")
        make_presence(name=f"cluster-{i}")
    make_steps({("metadata", "pending"): 10})
    more = _collect_queries(now)

    assert empty == seeded == more == 11
    with django_assert_max_num_queries(11):
        scrape(client)  # the token needs no session or permission query


# --- The documentation and the dashboard ---------------------------------------------------


def test_every_family_is_documented_and_on_the_dashboard_which_uses_no_other():
    import json
    import re

    root = Path(settings.BASE_DIR)
    names = {m.name for m in metrics_registry().collect()}
    doc = (root / "docs" / "metrics.md").read_text()
    dashboard = json.loads((root / "docs" / "grafana" / "pastq-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|gcount|gsum)$", "", n)
            for n in re.findall(r"\bpastq_[a-z0-9_]+", " ".join(exprs))}

    assert all(f"`{name}`" in doc for name in names), names - set(re.findall(r"`(pastq_\w+)`", doc))
    assert used == names
    assert dashboard["schemaVersion"] == 39
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["DS_PROMETHEUS"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"]
               if p["type"] != "row")
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
