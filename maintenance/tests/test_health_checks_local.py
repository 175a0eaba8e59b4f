"""The health checks that read this machine and its database (maintenance/health.py): free disk,
the last verified backup, job failures and heartbeats per queue; the stored runs and their admin;
and what /health/ shows of the other services (the latest stored run, without writing rows)."""

import datetime
import json
import shutil
from collections import namedtuple
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.jobs.models import JobRun
from maintenance import health
from maintenance.health_admin import HealthCheckRunAdmin  # noqa: F401  (registers it)
from maintenance.models import BackupRecord, HealthCheckRun, OpsAlert
from maintenance.tests.conftest import grant, make_presence, make_run

pytestmark = pytest.mark.django_db

Usage = namedtuple("Usage", "total used free")
MB = 2**20
REAL_VECTOR_INDEX_PROBE = health.vector_index_probe


@pytest.fixture(autouse=True)
def _other_services_stubbed(settings, monkeypatch):
    settings.CHROMA_URL = "http://127.0.0.1:9"
    settings.GEMINI_API_KEY = ""
    settings.HEALTH_MIN_FREE_DISK_MB = 1
    settings.ADMINS = [("Operators", "ops@example.com")]
    monkeypatch.setattr(health, "vector_index_probe", lambda: health.VectorIndexReading(
        "server", "http://127.0.0.1:9", []))


def _check(name: str, report=None) -> health.CheckResult:
    report = report or health.health_report()
    return next(c for c in report.checks if c.name == name)


# --- Disk -----------------------------------------------------------------------------------


def _free(monkeypatch, free_mb: float, total_mb: float = 100_000):
    monkeypatch.setattr(health.shutil, "disk_usage", lambda path: Usage(
        int(total_mb * MB), int((total_mb - free_mb) * MB), int(free_mb * MB)))


def test_disk_reads_the_file_system_of_var(settings):
    check = health.check_disk()
    usage = shutil.disk_usage(settings.VAR_DIR)
    assert check.status == "pass" and check.critical and check.unit == "MB"
    assert abs(check.observed - usage.free / MB) < 200  # the same disk, read a moment apart
    assert check.details["path"] == str(settings.VAR_DIR)
    assert check.output.endswith(f"free of {check.output.split(' free of ')[1]}")


@pytest.mark.parametrize(("free_mb", "status", "output"), [
    (5000, "pass", "5000 MB free of 97.7 GB under "),
    (1000, "warn", "only 1000 MB free of 97.7 GB under "),
    (100, "fail", "only 100 MB free of 97.7 GB under "),
])
def test_disk_thresholds(settings, monkeypatch, free_mb, status, output):
    settings.HEALTH_MIN_FREE_DISK_MB = 1024
    _free(monkeypatch, free_mb)
    check = health.check_disk()
    assert check.status == status and check.output.startswith(output)
    assert check.details["warn_below_mb"] == 1024 and check.details["fail_below_mb"] == 102.4
    if status == "warn":
        assert "(HEALTH_MIN_FREE_DISK_MB is 1024 MB)" in check.output
    if status == "fail":
        assert "(critical below 102 MB): free space now" in check.output


def test_a_full_disk_fails_the_command_and_alerts_once(settings, monkeypatch, run_command,
                                                        mailoutbox):
    make_presence()
    settings.HEALTH_MIN_FREE_DISK_MB = 1024
    _free(monkeypatch, 50)
    code, out, _ = run_command("health_check")
    assert code == 1 and "FAIL  disk: only 50 MB free" in out
    assert run_command("health_check")[0] == 1
    alert = OpsAlert.objects.get(key="health-check:disk")
    assert len(mailoutbox) == 1 and "Health check disk failed" in mailoutbox[0].subject
    _free(monkeypatch, 800)  # freed some: a warning now, which resolves the alert
    assert run_command("health_check")[0] == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolution.startswith("It is warn again")


# --- Backup ---------------------------------------------------------------------------------


def _backup(name, hours_ago: float, status=BackupRecord.Status.VERIFIED, **fields):
    created = timezone.now() - datetime.timedelta(hours=hours_ago)
    return BackupRecord.objects.create(name=name, engine=connection.vendor, status=status,
                                       created_at=created, **fields)


def test_backup_none_yet_is_a_warning_so_a_fresh_install_is_healthy(run_command):
    make_presence()
    check = _check("backup")
    assert (check.status, check.critical, check.output) == (
        "warn", False, "no verified backup yet")
    assert run_command("health_check")[0] == 0


def test_backup_verified_recently_passes_with_its_age(settings):
    settings.HEALTH_BACKUP_MAX_AGE_HOURS = 26
    _backup("old.dump", 50)
    _backup("fresh.dump", 3, verified_at=timezone.now())
    _backup("newest.dump", 1, status=BackupRecord.Status.CREATED)  # not verified yet
    check = _check("backup")
    assert check.status == "pass" and check.unit == "h"
    assert 2.9 < check.observed < 3.1
    assert check.output == "the last verified backup, fresh.dump, is 3.0 h old"
    assert check.details["last_verified"]["name"] == "fresh.dump"
    assert check.details["newest"]["name"] == "newest.dump"


def test_backup_older_than_the_limit_is_a_warning(settings):
    settings.HEALTH_BACKUP_MAX_AGE_HOURS = 26
    _backup("stale.dump", 30)
    check = _check("backup")
    assert check.status == "warn"
    assert check.output == ("the last verified backup, stale.dump, is 30.0 h old "
                            "(HEALTH_BACKUP_MAX_AGE_HOURS is 26)")


def test_backup_that_failed_after_the_last_verified_one_is_a_warning():
    _backup("good.dump", 5)
    _backup("bad.dump", 1, status=BackupRecord.Status.FAILED,
            error="Traceback...\nBackupError: pg_dump 14 is older than the server (16)")
    check = _check("backup")
    assert check.status == "warn"
    assert check.output == ("the last verified backup, good.dump, is 5.0 h old; the newest "
                            "backup, bad.dump, failed: BackupError: pg_dump 14 is older than "
                            "the server (16)")


# --- Queues: heartbeats and failures ---------------------------------------------------------


def test_queue_heartbeat_age_is_the_freshest_live_cluster():
    make_presence(age_s=12, name="a")
    make_presence(age_s=3, name="b")
    check = _check("queue:analytics")
    assert 2.5 < check.details["heartbeat_age_s"] < 6


def test_queue_heartbeat_age_of_a_dead_cluster_is_when_it_was_last_seen(settings):
    make_presence(age_s=settings.PASTQ_PRESENCE_STALE_SECONDS + 100)
    check = _check("queue:analytics")
    assert check.status == "fail"
    assert check.details["heartbeat_age_s"] >= settings.PASTQ_PRESENCE_STALE_SECONDS + 100


def test_jobs_that_failed_in_the_last_hour_are_a_warning_with_their_names(run_command):
    make_presence()
    now = timezone.now()
    make_run(outcome=JobRun.Outcome.FAILED)
    make_run(outcome=JobRun.Outcome.GAVE_UP)
    make_run(job="maintenance.tasks.health_checks", outcome=JobRun.Outcome.LOST)
    make_run(outcome=JobRun.Outcome.RETRYING)  # a retry scheduled: counted, not warned about
    make_run(outcome=JobRun.Outcome.FAILED,  # two hours ago: out of the window
             started_at=now - datetime.timedelta(hours=2),
             finished_at=now - datetime.timedelta(hours=2))
    make_run(job="analytics.tasks.x", queue="analytics", outcome=JobRun.Outcome.SUCCEEDED)
    report = health.health_report()
    maintenance = _check("queue:maintenance", report)
    assert maintenance.status == "warn" and maintenance.critical
    assert maintenance.output == (
        "served; 0 waiting, 0 running; 3 jobs failed in the last hour: "
        "maintenance.tasks.job_records_prune (2), maintenance.tasks.health_checks (1)")
    assert maintenance.details["failed_last_hour"] == 3
    assert maintenance.details["retries_last_hour"] == 1
    assert maintenance.details["failed_jobs_last_hour"] == {
        "maintenance.tasks.job_records_prune": 2, "maintenance.tasks.health_checks": 1}
    assert _check("queue:analytics", report).status == "pass"
    code, out, _ = run_command("health_check")
    assert code == 0 and "WARN  queue:maintenance: served; 0 waiting" in out


def test_only_retries_in_the_last_hour_pass():
    make_presence()
    make_run(outcome=JobRun.Outcome.RETRYING)
    check = _check("queue:maintenance")
    assert check.status == "pass" and check.details["retries_last_hour"] == 1


# --- Stored runs ----------------------------------------------------------------------------


def test_the_command_stores_each_run(run_command):
    make_presence()
    code, out, _ = run_command("health_check", "--json")
    printed = json.loads(out)
    run = HealthCheckRun.objects.get()
    assert (run.source, run.status) == ("command", printed["status"])
    assert run.checked_at.isoformat() == printed["checked_at"]
    assert run.duration_ms == printed["duration_ms"] > 0
    assert run.checks == printed["checks"]
    run_command("health_check")
    assert HealthCheckRun.objects.count() == 2


def test_the_job_stores_its_runs_as_job():
    from core.tests.conftest import deliver

    make_presence()
    result = deliver({"id": "j" * 32, "func": "maintenance.tasks.health_checks"})
    run = HealthCheckRun.objects.get()
    assert run.source == "job" and run.status == result["status"]
    assert [c["name"] for c in run.checks][:2] == ["database", "queue:question_processing"]


def test_nothing_is_stored_when_the_database_fails(run_command):
    failed = health.CheckResult("database", health.FAIL, True, "postgresql: connection refused")
    with mock.patch("maintenance.health.check_database", return_value=failed):
        assert run_command("health_check")[0] == 1
    assert not HealthCheckRun.objects.exists()


# --- /health/ -------------------------------------------------------------------------------


def _get(client, **headers):
    response = client.get("/health/", headers=headers)
    assert response["Content-Type"] == "application/health+json"
    return response, json.loads(response.content)


def test_health_writes_nothing_and_calls_no_other_service(client, monkeypatch):
    make_presence()
    probes = mock.Mock(side_effect=AssertionError("/health/ must not probe"))
    monkeypatch.setattr(health, "vector_index_probe", probes)
    monkeypatch.setattr(health, "start_gemini_probe", probes)
    monkeypatch.setattr(health, "start_email_probe", probes)
    for _ in range(3):
        response, body = _get(client)
        assert response.status_code == 200
    assert not HealthCheckRun.objects.exists() and not OpsAlert.objects.exists()
    assert probes.call_count == 0
    # No stored run yet: the other services are "not checked", a warning.
    assert body["checks"]["chroma"] == [{"status": "warn", "critical": True}]
    assert body["checks"]["gemini"] == [{"status": "warn", "critical": False}]


def test_health_shows_the_other_services_as_the_latest_run_found_them(client, settings,
                                                                      run_command):
    make_presence()
    settings.HEALTH_TOKEN = "tok"
    settings.CHROMA_URL = "http://127.0.0.1:1"  # nobody listens on port 1
    with mock.patch.object(health, "vector_index_probe", REAL_VECTOR_INDEX_PROBE):
        assert run_command("health_check")[0] == 1  # Chroma is critical
    stored = HealthCheckRun.objects.get()
    response, body = _get(client, Authorization="Bearer tok")
    assert response.status_code == 200  # the database serves: the web process stays in
    assert body["status"] == "fail"
    chroma = body["checks"]["chroma"][0]
    assert chroma["status"] == "fail" and chroma["critical"] is True
    assert "does not answer" in chroma["output"]
    assert chroma["time"] == stored.checked_at.isoformat()
    assert chroma["details"]["checked_at"] == stored.checked_at.isoformat()
    assert body["checks"]["gemini"][0]["output"].startswith("offline providers")
    assert body["checks"]["disk"][0]["time"] != stored.checked_at.isoformat()  # read live
    assert HealthCheckRun.objects.count() == 1


def test_health_reports_a_stale_stored_run_as_not_checked(client, admin_client):
    make_presence()
    old = timezone.now() - datetime.timedelta(minutes=40)
    HealthCheckRun.objects.create(checked_at=old, source="job", status="pass", checks=[
        {"name": "chroma", "status": "pass", "critical": True, "output": "fine"}])
    _, body = _get(admin_client)
    chroma = body["checks"]["chroma"][0]
    assert chroma["status"] == "warn"
    assert chroma["output"] == (f"not checked in the last 15 min (the health-checks job and "
                                f"manage.py health_check check it); last checked at "
                                f"{old:%Y-%m-%d %H:%M} UTC: pass")


def test_health_stays_200_when_a_queue_and_the_warnings_fail(client, settings, monkeypatch):
    settings.HEALTH_MIN_FREE_DISK_MB = 1024
    _free(monkeypatch, 50)  # critical, but it does not stop this process from serving
    response, body = _get(client)
    assert response.status_code == 200
    assert body["status"] == "fail"
    assert body["checks"]["disk"] == [{"status": "fail", "critical": True}]
    assert body["checks"]["queue:analytics"] == [{"status": "fail", "critical": True}]


def test_a_check_that_raises_is_a_failed_check_never_a_500(client, monkeypatch, run_command,
                                                          admin_client):
    make_presence()
    monkeypatch.setattr(health, "check_disk", mock.Mock(side_effect=RuntimeError("statvfs")))
    monkeypatch.setattr(health, "check_backup", mock.Mock(side_effect=KeyError("name")))
    response, body = _get(admin_client)
    assert response.status_code == 200
    assert body["checks"]["disk"][0]["status"] == "fail"
    assert body["checks"]["disk"][0]["output"] == (
        "the check itself failed: RuntimeError: statvfs")
    assert body["checks"]["backup"][0]["status"] == "warn"  # a warning check only warns
    code, out, _ = run_command("health_check")
    assert code == 1 and "FAIL  disk: the check itself failed: RuntimeError: statvfs" in out


def test_health_runs_a_fixed_number_of_queries_whatever_the_rows(client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/health/").status_code == 200
        return len(captured)

    make_presence()
    make_run()
    _backup("one.dump", 2)
    first = queries()
    for i in range(30):
        make_presence(name=f"cluster-{i}")
        make_run(job=f"maintenance.tasks.job_{i}")
        _backup(f"more-{i}.dump", 3 + i)
    HealthCheckRun.objects.bulk_create(HealthCheckRun(source="job", status="pass")
                                       for _ in range(30))
    assert queries() == first


def test_health_check_query_count_does_not_grow_either(run_command):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            run_command("health_check")
        return len(captured)

    make_presence()
    make_run()
    first = queries()
    for i in range(30):
        make_presence(name=f"cluster-{i}")
        make_run(job=f"maintenance.tasks.job_{i}")
    assert queries() == first


# --- The admin's health history -------------------------------------------------------------


@pytest.fixture
def admin_urls(settings):
    """The project's URLs built again: they may have been built before this module's import
    registered HealthCheckRunAdmin (until maintenance/admin.py imports it, they would not
    have it)."""
    import importlib
    import sys

    from django.urls import clear_url_caches

    importlib.reload(sys.modules[settings.ROOT_URLCONF])
    clear_url_caches()
    yield
    clear_url_caches()


def test_admin_lists_runs_and_shows_each_check(admin_client, run_command, admin_urls):
    make_presence()
    run_command("health_check")
    run = HealthCheckRun.objects.get()
    page = admin_client.get("/admin/maintenance/healthcheckrun/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "WARN" in html and "backup (warn)" in html and "command" in html
    detail = admin_client.get(f"/admin/maintenance/healthcheckrun/{run.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "no verified backup yet" in html and "queue:analytics" in html
    assert 'name="_save"' not in html  # read-only
    assert admin_client.get("/admin/maintenance/healthcheckrun/add/").status_code == 403


def test_admin_needs_the_view_permission(client, django_user_model, admin_urls):
    staff = django_user_model.objects.create_user(email="s@example.com", password="pw",
                                                  is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/maintenance/healthcheckrun/").status_code == 403
    client.force_login(grant(staff, "maintenance.view_healthcheckrun"))
    assert client.get("/admin/maintenance/healthcheckrun/").status_code == 200
