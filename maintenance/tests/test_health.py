"""Health (maintenance/health.py): `manage.py health_check`, the watcher that alerts the staff
once per problem, the health_checks job, and the /health/ endpoints for load balancers.

Here the other services are stubbed (Chroma answers, Gemini is not configured, mail stays in
memory); their checks have their own tests: test_health_checks_services.py, and the local
checks (disk, backup, failures, stored runs) test_health_checks_local.py."""

import datetime
import json
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from core.tests.conftest import deliver
from maintenance import health
from maintenance.models import OpsAlert
from maintenance.tests.conftest import VIEW, grant, make_presence, stale_age

pytestmark = pytest.mark.django_db

QUEUES = ["question_processing", "analytics", "maintenance", "notifications"]
CHECK_KEYS = {"name", "status", "critical", "output", "observed", "unit", "duration_ms",
              "details"}
OTHER_CHECKS = ["disk", "chroma", "gemini", "email", "backup"]


@pytest.fixture(autouse=True)
def _admins(settings):
    settings.ADMINS = [("Operators", "ops@example.com")]


@pytest.fixture(autouse=True)
def _other_services_stubbed(settings, monkeypatch):
    settings.CHROMA_URL = "http://127.0.0.1:9"  # never opened: the probe is stubbed
    settings.GEMINI_API_KEY = ""
    settings.HEALTH_MIN_FREE_DISK_MB = 1
    monkeypatch.setattr(health, "vector_index_probe", lambda: health.VectorIndexReading(
        "server", "http://127.0.0.1:9", []))


# --- manage.py health_check -----------------------------------------------------------------


def test_a_live_cluster_serving_every_queue_passes(run_command, mailoutbox):
    make_presence()
    code, out, _ = run_command("health_check")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("PASS  database: ")
    for queue in QUEUES:
        assert f"PASS  queue:{queue}: served; 0 waiting, 0 running" in lines
    # No backup yet and mail kept in memory: warnings, which a fresh install may have.
    assert "WARN  backup (warning only): no verified backup yet" in lines
    assert lines[-1].startswith("Health: warn at ")
    assert not OpsAlert.objects.exists() and mailoutbox == []


def test_everything_in_order_passes_and_health_shows_it(run_command, client, settings):
    from maintenance.models import BackupRecord

    settings.DEBUG = True  # mail kept on this machine is fine in development
    make_presence()
    BackupRecord.objects.create(name="pastq-1.dump", engine=connection.vendor,
                                status=BackupRecord.Status.VERIFIED)
    code, out, _ = run_command("health_check")
    assert code == 0, out
    assert out.splitlines()[-1].startswith("Health: pass at "), out
    response, body = _get(client)
    assert response.status_code == 200 and body["status"] == "pass", body
    assert set(body["checks"]) == {"database", *(f"queue:{q}" for q in QUEUES), *OTHER_CHECKS}


@pytest.mark.parametrize("status", ["running", "stopping"])
def test_one_live_cluster_serving_all_queues_means_no_alert_at_all(run_command, mailoutbox,
                                                                   settings, status):
    """It replaces the old design's three stall emails when one queue's heartbeat had beaten:
    liveness is the cluster's, so one live cluster serves every queue, busy or not."""
    settings.PASTQ_QUEUE_ROUTING = False
    make_presence(status=status, busy_workers=5)
    make_presence(age_s=stale_age(), name="pastq", host="old-host")  # an earlier, dead one
    for _ in range(2):
        assert run_command("health_check")[0] == 0
    assert not OpsAlert.objects.exists() and mailoutbox == []


def test_a_dead_cluster_is_one_alert_one_email_resolved_when_a_fresh_one_appears(
        run_command, mailoutbox):
    dead = make_presence(age_s=stale_age())
    code, out, _ = run_command("health_check")
    assert code == 1
    for queue in QUEUES:
        assert f"FAIL  queue:{queue}: no live cluster; the last one (pastq on worker-1, pid " \
               f"4242) stopped reporting at {dead.last_seen_at:%Y-%m-%d %H:%M:%S} UTC" in out
    assert "Health: fail" in out
    alert = OpsAlert.objects.get()  # one alert for the cluster, not one per queue
    assert alert.key == "cluster-down:pastq" and alert.resolved_at is None
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["ops@example.com"]
    assert "No live qcluster serves question_processing, analytics, maintenance, " \
           "notifications" in mailoutbox[0].subject

    assert run_command("health_check")[0] == 1  # the next check: still down, no new email
    assert len(mailoutbox) == 1 and OpsAlert.objects.count() == 1

    make_presence()  # a new cluster starts
    assert run_command("health_check")[0] == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None and "serves its queues again" in alert.resolution
    assert len(mailoutbox) == 1


def test_with_routing_each_dead_cluster_is_its_own_alert(run_command, mailoutbox, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    for queue in QUEUES:
        make_presence(name=queue, queues=[queue],
                      age_s=stale_age() if queue == "analytics" else 1)
    code, out, _ = run_command("health_check")
    assert code == 1
    assert "FAIL  queue:analytics" in out and "PASS  queue:notifications" in out
    assert list(OpsAlert.objects.values_list("key", flat=True)) == ["cluster-down:analytics"]
    assert len(mailoutbox) == 1 and "serves analytics (last seen" in mailoutbox[0].subject


def test_a_stopped_cluster_says_it_stopped(run_command):
    make_presence(status="stopped", stopped_at=timezone.now())
    code, out, _ = run_command("health_check")
    assert code == 1
    assert "(pastq on worker-1, pid 4242) stopped at" in out


def test_a_cluster_that_is_starting_passes(run_command, mailoutbox):
    make_presence(status="starting", age_s=0, up_s=0)
    code, out, _ = run_command("health_check")
    assert code == 0
    assert "PASS  queue:analytics: its cluster is starting; 0 waiting, 0 running" in out
    assert mailoutbox == []


def test_no_cluster_ever_is_one_alert(run_command, mailoutbox):
    for _ in range(2):
        code, out, _ = run_command("health_check")
        assert code == 1 and "no qcluster has served it yet" in out
    alert = OpsAlert.objects.get()
    assert alert.key == "queues-never-served" and len(mailoutbox) == 1
    make_presence()
    assert run_command("health_check")[0] == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_queue_whose_oldest_task_waits_too_long_is_a_failure_with_its_own_alert(
        run_command, mailoutbox, settings, django_capture_on_commit_callbacks):
    from core.jobs import enqueue

    make_presence()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue("maintenance.tasks.job_records_prune")
    OrmQ.objects.update(
        lock=timezone.now() - datetime.timedelta(seconds=settings.PASTQ_STALL_SECONDS + 30))
    code, out, _ = run_command("health_check")
    assert code == 1
    assert "FAIL  queue:maintenance: the oldest of 1 waiting tasks has waited" in out
    assert "PASS  queue:analytics" in out
    alert = OpsAlert.objects.get()
    assert alert.key == "queue-stalled:maintenance" and len(mailoutbox) == 1
    assert "Queue maintenance: work has stopped moving" in mailoutbox[0].subject
    assert run_command("health_check")[0] == 1 and len(mailoutbox) == 1

    OrmQ.objects.all().delete()  # the work was taken
    assert run_command("health_check")[0] == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_json_prints_the_documented_report(run_command):
    make_presence()
    make_presence(name="old", age_s=stale_age())
    code, out, _ = run_command("health_check", "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"status", "checked_at", "duration_ms", "checks"}
    assert report["status"] == "warn"  # no backup yet, mail kept in memory: warnings only
    assert datetime.datetime.fromisoformat(report["checked_at"]).tzinfo is not None
    assert isinstance(report["duration_ms"], float) and report["duration_ms"] > 0
    assert [c["name"] for c in report["checks"]] == (
        ["database"] + [f"queue:{q}" for q in QUEUES] + OTHER_CHECKS)
    critical = {c["name"]: c["critical"] for c in report["checks"]}
    assert [name for name, is_critical in critical.items() if not is_critical] == [
        "gemini", "email", "backup"]
    for check in report["checks"]:
        assert set(check) == CHECK_KEYS
        assert check["status"] == ("warn" if check["name"] in ("email", "backup") else "pass")
        assert isinstance(check["output"], str) and isinstance(check["duration_ms"], float)
        assert check["duration_ms"] > 0  # measured, every one
        assert isinstance(check["details"], dict)
    database, analytics = report["checks"][0], report["checks"][2]
    assert database["unit"] == "ms" and isinstance(database["observed"], float)
    assert analytics["observed"] == "running"
    heartbeat = analytics["details"].pop("heartbeat_age_s")
    assert 0.5 < heartbeat < 30
    assert analytics["details"] == {"liveness": "running", "waiting": 0, "running": 0,
                                    "delayed": 0, "oldest_waiting_s": None,
                                    "clusters": ["pastq@worker-1:4242"],
                                    "failed_last_hour": 0, "retries_last_hour": 0,
                                    "failed_jobs_last_hour": {}}


def test_json_of_a_failure(run_command):
    make_presence(age_s=stale_age())
    code, out, _ = run_command("health_check", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["status"] == "fail"
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "database": "pass", **{f"queue:{q}": "fail" for q in QUEUES},
        "disk": "pass", "chroma": "pass", "gemini": "pass", "email": "warn", "backup": "warn"}


def test_a_negative_repeat_is_bad_usage(run_command):
    code, _, err = run_command("health_check", "--repeat", "-1")
    assert code == 2 and "--repeat takes a positive number" in err


def test_the_health_checks_job_watches_from_inside_a_cluster(mailoutbox, settings):
    settings.PASTQ_QUEUE_ROUTING = True
    make_presence(name="maintenance", queues=["maintenance"])
    make_presence(name="analytics", queues=["analytics"], age_s=stale_age())
    result = deliver({"id": "h" * 32, "func": "maintenance.tasks.health_checks"})
    assert result["status"] == "fail"
    assert set(result["failed"]) == {"queue:analytics", "queue:question_processing",
                                     "queue:notifications"}
    assert set(OpsAlert.objects.values_list("key", flat=True)) == {
        "cluster-down:analytics", "queues-never-served"}
    assert len(mailoutbox) == 2
    deliver({"id": "i" * 32, "func": "maintenance.tasks.health_checks"})
    assert len(mailoutbox) == 2


# --- /health/ and /health/live --------------------------------------------------------------


def _get(client, path="/health/", **headers):
    response = client.get(path, headers=headers)
    assert response["Content-Type"] == "application/health+json"
    assert "no-cache" in response["Cache-Control"]
    return response, json.loads(response.content)


def test_health_answers_200_when_every_cluster_is_dead(client):
    make_presence(age_s=stale_age())
    response, body = _get(client)
    assert response.status_code == 200  # a dead worker never takes the web servers out
    assert body["status"] == "fail"
    assert body["checks"]["database"] == [{"status": "pass", "critical": True}]
    for queue in QUEUES:
        assert body["checks"][f"queue:{queue}"] == [{"status": "fail", "critical": True}]


def test_health_with_a_live_cluster_and_only_warnings_is_200(client):
    make_presence()
    response, body = _get(client)
    assert response.status_code == 200 and body["status"] == "warn"
    for queue in QUEUES:
        assert body["checks"][f"queue:{queue}"] == [{"status": "pass", "critical": True}]
    assert body["checks"]["backup"] == [{"status": "warn", "critical": False}]


def test_health_is_503_only_when_the_database_fails(client):
    failed = health.CheckResult("database", health.FAIL, True, "postgresql: connection refused")
    with mock.patch("maintenance.health.check_database", return_value=failed):
        response, body = _get(client)
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert body["checks"]["database"] == [{"status": "fail", "critical": True}]
    assert body["checks"]["queues"] == [{"status": "fail", "critical": True}]
    assert set(body["checks"]) == {"database", "queues", *OTHER_CHECKS}


def test_health_is_503_when_the_connection_cannot_give_a_cursor(client):
    with mock.patch.object(connection, "cursor", side_effect=OperationalError("gone")):
        response, body = _get(client)
        live, live_body = _get(client, "/health/live")
    assert response.status_code == 503 and body["status"] == "fail"
    assert live.status_code == 200 and live_body == {"status": "pass"}


def test_health_live_always_answers_200(client):
    response, body = _get(client, "/health/live")
    assert response.status_code == 200 and body == {"status": "pass"}


def _has_details(body) -> bool:
    entry = body["checks"]["queue:analytics"][0]
    return "output" in entry and "notes" not in body


def test_details_for_staff_with_view_operations(client, staff_user):
    make_presence()
    client.force_login(staff_user)
    _, body = _get(client)
    assert not _has_details(body)
    assert body["notes"] == ["Details need a staff session or the HEALTH_TOKEN."]

    client.force_login(grant(staff_user, VIEW))
    _, body = _get(client)
    assert _has_details(body)
    entry = body["checks"]["queue:analytics"][0]
    assert entry["output"].startswith("served") and entry["observedValue"] == "running"
    assert entry["details"]["clusters"] == ["pastq@worker-1:4242"]
    assert body["checks"]["database"][0]["observedUnit"] == "ms"


def test_details_for_a_superuser(admin_client):
    _, body = _get(admin_client)
    assert _has_details(body)


def test_details_with_the_health_token(client, settings):
    settings.HEALTH_TOKEN = "s3cret-token"
    assert _has_details(_get(client, Authorization="Bearer s3cret-token")[1])
    assert not _has_details(_get(client, Authorization="Bearer wrong")[1])
    assert not _has_details(_get(client)[1])
    settings.HEALTH_TOKEN = ""
    assert not _has_details(_get(client, Authorization="Bearer ")[1])
    assert not _has_details(_get(client, Authorization="Bearer s3cret-token")[1])


def test_health_is_exempt_from_the_https_redirect(settings):
    from pastq import settings as project_settings

    exempt = getattr(project_settings, "SECURE_REDIRECT_EXEMPT", None)
    assert exempt, "pastq/settings.py defines no SECURE_REDIRECT_EXEMPT (with DEBUG off)"
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = exempt
    client = Client()  # plain http
    for path in ("/health/", "/health/live"):
        response = client.get(path)
        assert response.status_code == 200, path
    response = client.get("/admin/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/"
    assert client.get("/health/", secure=True).status_code == 200


def test_a_database_missing_a_migration_fails_with_what_to_do(run_command, client):
    make_presence()
    from django.db.migrations.recorder import MigrationRecorder

    MigrationRecorder.Migration.objects.filter(
        app="maintenance", name="0001_operations_from_core").delete()
    code, out, _ = run_command("health_check")
    assert code == 1
    assert "1 migrations are not applied (first: maintenance.0001_operations_from_core)" in out
    assert "run manage.py init_db" in out
    assert client.get("/health/").status_code == 503  # this web process cannot serve
