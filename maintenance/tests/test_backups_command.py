"""The entry points of backups: `manage.py backup_db`, the jobs, the admin, off-site copies."""

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django_q.models import OrmQ

import maintenance.backups.admin  # noqa: F401 (registers BackupRecordAdmin)
from core.jobs import TransientError
from core.jobs.models import JobRun
from core.tests.conftest import deliver
from maintenance.backups import archive, crypto, services, tasks
from maintenance.backups.engines import BackupToolError
from maintenance.models import BackupRecord, OpsAlert
from maintenance.tests import test_backups_helpers
from maintenance.tests.conftest import grant, make_presence
from maintenance.tests.test_backups_helpers import (
    backup_files,
    rewrite_manifest,
)

Status = BackupRecord.Status
transactional = pytest.mark.django_db(transaction=True)

backup_settings = test_backups_helpers.backup_settings  # a fixture


def _queued(func: str) -> list[dict]:
    return [row.task for row in OrmQ.objects.all() if row.task["func"] == func]


# --- the command ---------------------------------------------------------------------------


def test_help_says_what_each_action_does(run_command):
    code, out, _err = run_command("backup_db", "--help")
    assert code == 0
    for action in ("create", "list", "verify", "restore", "cleanup", "keygen", "--no-input"):
        assert action in out


@pytest.mark.parametrize("argv", [(), ("verify",), ("verify", "x", "--all"), ("restore",),
                                  ("frobnicate",)])
def test_bad_usage_exits_2(run_command, backup_settings, argv, db):
    code, _out, err = run_command("backup_db", *argv)
    assert code == 2 and "Traceback" not in err


def test_keygen_prints_a_key_that_parses(run_command):
    code, out, err = run_command("backup_db", "keygen")
    assert code == 0 and len(crypto.key_parse(out.strip())) == 32
    assert "BACKUP_DECRYPTION_KEYS" in err


@transactional
def test_create_list_verify_restore_cleanup_from_the_command_line(run_command, backup_settings,
                                                                  catalogue):
    code, out, _ = run_command("backup_db", "create")
    assert code == 0 and "Created pastq-" in out and "encrypted" in out
    name = BackupRecord.objects.get().name

    code, out, _ = run_command("backup_db", "list", "--json")
    listing = json.loads(out)
    assert code == 0 and listing["backup_dir"] == str(archive.backup_dir())
    [item] = listing["backups"]
    assert item["name"] == name and item["status"] == "created" and item["file_present"]
    assert set(item) >= {"engine", "created_at", "size_bytes", "sha256", "encrypted",
                         "key_fingerprint", "verified_at", "trigger", "problem", "tables",
                         "rows", "offsite_name"}

    code, out, _ = run_command("backup_db", "verify", "--all")
    assert code == 0 and out.startswith("OK") and name in out

    Group.objects.create(name="after the backup")
    # No terminal to confirm on: refused with a usage error, nothing changed.
    code, _out, err = run_command("backup_db", "restore", name)
    assert code == 2 and "--no-input" in err and "Traceback" not in err
    code, out, _ = run_command("backup_db", "restore", name, "--dry-run")
    assert code == 0 and "Dry run: nothing was changed." in out
    assert Group.objects.filter(name="after the backup").exists()

    code, out, err = run_command("backup_db", "restore", name, "--no-input")
    assert code == 0, err
    assert "Restored " + name in out and "Student email is paused" in out
    assert "auth_group: 0" in out  # the row counts after the restore
    assert not Group.objects.exists()

    backup_settings.BACKUP_KEEP_LAST = 1
    backup_settings.BACKUP_KEEP_DAILY = backup_settings.BACKUP_KEEP_WEEKLY = 0
    run_command("backup_db", "create")
    code, out, _ = run_command("backup_db", "cleanup", "--dry-run")
    assert code == 0 and "1 backups would be deleted." in out and "delete  " in out
    code, _out, err = run_command("backup_db", "cleanup")
    assert code == 2 and "--no-input" in err
    code, out, _ = run_command("backup_db", "cleanup", "--no-input")
    assert code == 0 and "Deleted 1 backups." in out


@transactional
def test_failures_are_sentences_with_exit_status_1(run_command, backup_settings, catalogue):
    code, _out, err = run_command("backup_db", "restore", "pastq-20260101T040000Z-0000.pgdump.zst",
                                  "--no-input")
    assert code == 1 and "is not in" in err and "Traceback" not in err

    run_command("backup_db", "create")
    name = BackupRecord.objects.get().name
    make_presence(age_s=1)
    code, _out, err = run_command("backup_db", "restore", name, "--no-input")
    assert code == 1 and "Workers are running" in err

    path = archive.backup_dir() / name
    path.write_bytes(path.read_bytes()[:-10])
    code, out, err = run_command("backup_db", "verify", name)
    assert code == 1 and out.startswith("FAILED") and "1 of 1 backups failed" in err


# --- the jobs --------------------------------------------------------------------------------


@transactional
def test_the_daily_job_creates_then_a_job_of_its_own_verifies_and_cleans_up(backup_settings,
                                                                          catalogue):
    result = deliver({"id": "c" * 32, "func": "maintenance.backups.tasks.backup_create_job"})
    record = BackupRecord.objects.get()
    assert result["name"] == record.name and record.trigger == "schedule"
    [verify] = _queued(tasks.VERIFY_JOB)
    assert list(verify["args"]) == [record.name]

    result = deliver({"id": "v" * 32, "func": tasks.VERIFY_JOB, "args": [record.name]})
    assert result["verified"] and result["deleted"] == []
    record.refresh_from_db()
    assert record.status == Status.VERIFIED
    assert _queued(tasks.OFFSITE_JOB) == []  # no off-site storage configured
    assert set(JobRun.objects.values_list("outcome", flat=True)) == {"succeeded"}


@transactional
def test_a_backup_that_fails_verification_is_an_alert(backup_settings, catalogue):
    record = services.backup_create()
    path = archive.backup_dir() / record.name
    path.write_bytes(path.read_bytes()[:-10])
    rewrite_manifest(path, fix_checksum=True)

    with pytest.raises(Exception, match="failed verification"):
        deliver({"id": "v" * 32, "func": tasks.VERIFY_JOB, "args": [record.name]})

    assert JobRun.objects.get().outcome == "failed"
    assert "backup_verify_job" in OpsAlert.objects.get().summary


@transactional
def test_a_tool_failure_is_retried_once(backup_settings, catalogue, monkeypatch):
    def failing(**kwargs):
        raise BackupToolError("pg_dump failed (exit status 1): connection lost")

    monkeypatch.setattr(services, "backup_create", failing)
    with pytest.raises(TransientError):
        deliver({"id": "c" * 32, "func": "maintenance.backups.tasks.backup_create_job"})
    run = JobRun.objects.get()
    assert run.outcome == "retrying" and "connection lost" in run.error
    assert not OpsAlert.objects.exists()
    assert tasks.BACKUP_RETRY.max_attempts == 2


# --- off-site copies ------------------------------------------------------------------------


@pytest.fixture
def offsite(backup_settings, tmp_path):
    backup_settings.STORAGES = {
        **backup_settings.STORAGES,
        "backups_offsite": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                            "OPTIONS": {"location": str(tmp_path / "offsite")}}}
    backup_settings.BACKUP_OFFSITE_STORAGE = "backups_offsite"
    return tmp_path / "offsite"


@transactional
def test_a_verified_backup_is_copied_off_site_and_restores_from_there(offsite, catalogue,
                                                                     run_command):
    record = services.backup_create()
    deliver({"id": "v" * 32, "func": tasks.VERIFY_JOB, "args": [record.name]})
    [job] = _queued(tasks.OFFSITE_JOB)
    deliver({"id": "o" * 32, "func": tasks.OFFSITE_JOB, "args": job["args"]})
    assert sorted(p.name for p in offsite.iterdir()) == [
        record.name, record.name + archive.MANIFEST_SUFFIX]
    record.refresh_from_db()
    assert record.offsite_name == record.name and record.offsite_at

    # The machine's disk is lost: the off-site copy is all there is.
    archive.archive_delete(archive.backup_dir() / record.name)
    Group.objects.create(name="after the backup")
    code, out, _ = run_command("backup_db", "list", "--offsite")
    assert code == 0 and out.strip() == record.name
    code, out, err = run_command("backup_db", "restore", record.name, "--offsite", "--no-input")
    assert code == 0, err
    assert not Group.objects.exists()


@pytest.fixture
def offsite_s3(backup_settings, monkeypatch):
    """django-storages' S3 backend against moto's in-process S3 (it patches botocore: no
    network), configured the way the settings build it from BACKUP_OFFSITE_BUCKET."""
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="pastq-offsite",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        backup_settings.STORAGES = {
            **backup_settings.STORAGES,
            "backups_offsite": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
                "bucket_name": "pastq-offsite", "region_name": "eu-west-1",
                "location": "pastq-backups", "default_acl": "private",
                "file_overwrite": True}}}
        backup_settings.BACKUP_OFFSITE_STORAGE = "backups_offsite"
        yield boto3.client("s3", region_name="eu-west-1")


@transactional
def test_off_site_copies_go_to_s3_compatible_storage_and_come_back(offsite_s3, catalogue,
                                                                    run_command):
    record = services.backup_create()
    services.backup_verify(record.name)
    services.backup_offsite_copy(record.name)
    keys = sorted(o["Key"] for o in offsite_s3.list_objects_v2(
        Bucket="pastq-offsite")["Contents"])
    assert keys == [f"pastq-backups/{record.name}",
                    f"pastq-backups/{record.name}{archive.MANIFEST_SUFFIX}"]

    archive.archive_delete(archive.backup_dir() / record.name)
    Group.objects.create(name="after the backup")
    code, out, _ = run_command("backup_db", "list", "--offsite")
    assert code == 0 and out.strip() == record.name
    code, out, err = run_command("backup_db", "restore", record.name, "--offsite", "--no-input")
    assert code == 0, err
    assert not Group.objects.exists()


@transactional
def test_an_unverified_backup_is_not_copied_off_site(offsite, catalogue):
    record = services.backup_create()
    with pytest.raises(services.BackupError, match="not verified"):
        services.backup_offsite_copy(record.name)
    assert not offsite.exists() or not any(offsite.iterdir())


@transactional
def test_a_damaged_off_site_copy_is_not_used(offsite, catalogue):
    record = services.backup_create()
    services.backup_verify(record.name)
    services.backup_offsite_copy(record.name)
    archive.archive_delete(archive.backup_dir() / record.name)
    (offsite / record.name).write_bytes(b"garbage")
    with pytest.raises(services.BackupError, match="truncated or replaced"):
        services.backup_offsite_fetch(record.name)
    assert backup_files(archive.backup_dir()) == []


# --- the admin ------------------------------------------------------------------------------

CHANGELIST = "/admin/maintenance/backuprecord/"


@pytest.fixture
def record(db):
    return BackupRecord.objects.create(
        name="pastq-20261204T040000Z-abcd.pgdump.zst.enc", engine="postgresql",
        status=Status.VERIFIED, size_bytes=182 * 1024 * 1024, encrypted=True,
        key_fingerprint="48ae72eeddc23e3821f337dc604862077bd4", trigger="schedule",
        manifest={"engine": "postgresql", "row_counts": {"core_question": 12}})


def test_the_changelist_shows_backups_and_says_how_to_restore(client, staff_user, record):
    client.force_login(grant(staff_user, "maintenance.view_backuprecord",
                             "maintenance.create_backup"))
    page = client.get(CHANGELIST).content.decode()
    assert record.name in page and "182.0\xa0MB" in page and "48ae72eeddc2…" in page
    assert f"python manage.py backup_db restore {record.name} --dry-run" in page
    assert 'id="backup-create-now"' in page

    detail = client.get(f"{CHANGELIST}{record.pk}/change/").content.decode()
    assert "&quot;core_question&quot;: 12" in detail


def test_creating_and_verifying_need_the_permission(client, staff_user, record,
                                                    django_capture_on_commit_callbacks):
    client.force_login(grant(staff_user, "maintenance.view_backuprecord"))
    page = client.get(CHANGELIST).content.decode()
    assert 'id="backup-create-now"' not in page and "verify_selected" not in page
    assert client.post(f"{CHANGELIST}create/").status_code == 403
    assert not OrmQ.objects.exists()


def test_create_now_and_verify_enqueue_jobs(client, staff_user, record,
                                            django_capture_on_commit_callbacks):
    client.force_login(grant(staff_user, "maintenance.view_backuprecord",
                             "maintenance.create_backup"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{CHANGELIST}create/")
    assert response.status_code == 302 and response.url == reverse(
        "admin:maintenance_backuprecord_changelist")
    [create] = _queued("maintenance.backups.tasks.backup_create_job")
    assert create["kwargs"] == {"trigger": "admin"}

    with django_capture_on_commit_callbacks(execute=True):
        client.post(CHANGELIST, {"action": "verify_selected", "_selected_action": [record.pk]})
    [verify] = _queued(tasks.VERIFY_JOB)
    assert list(verify["args"]) == [record.name]
    assert client.get(f"{CHANGELIST}create/").status_code == 405
