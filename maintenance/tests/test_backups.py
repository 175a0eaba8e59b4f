"""Backups on the database the run uses (SQLite or PostgreSQL): create → change → restore gives
the backup's data back; every kind of bad backup is refused with a clear error and the live
database unchanged; the manifest, the files' modes, the refusals and the dry run."""

import datetime
import json
import os
import stat

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from core.ai import vectors
from core.models import Question, QuestionStep
from core.processing import _Space
from core.tests.factories import make_question
from maintenance.backups import archive, crypto, engines, services
from maintenance.backups.engines import BackupError, BackupInvalid, BackupTimeout
from maintenance.models import BackupRecord
from maintenance.tests import test_backups_helpers
from maintenance.tests.conftest import make_presence
from maintenance.tests.test_backups_helpers import (
    CHANGED_BY_DESIGN,
    KEY,
    OTHER_KEY,
    backup_files,
    chunks_of,
    rewrite_manifest,
    sqlite_write_lock,
    table_digests,
)
from notifications.models import EmailDelivery

backup_settings = test_backups_helpers.backup_settings  # a fixture

pytestmark = pytest.mark.django_db(transaction=True)

Status = BackupRecord.Status


@pytest.fixture
def data(backup_settings, student):
    """A small database with rows in many tables: the catalogue, a student, questions with
    their pipeline steps (embeddings done), the schedules."""
    from core import processing
    from core.jobs.schedules import schedules_sync

    schedules_sync()
    questions = [make_question(text=f"What is {n} + {n}?") for n in range(3)]
    processing.steps_create_missing()
    QuestionStep.objects.filter(step=QuestionStep.Step.EMBEDDING).update(
        status=QuestionStep.Status.DONE, model="test-embedder")
    Group.objects.create(name="before the backup")
    return questions


def _path(record) -> "os.PathLike":
    return archive.backup_dir() / record.name


def _verified(record) -> BackupRecord:
    """Marked verified, as the verify job after each backup does (a restore then skips its own
    scratch restore: tests of other things need not pay for one each)."""
    BackupRecord.objects.filter(pk=record.pk).update(status=Status.VERIFIED,
                                                     verified_at=timezone.now())
    return record


def test_backup_change_restore_gives_the_backup_s_data_back(data):
    record = services.backup_create(trigger="command")
    before = table_digests(exclude=CHANGED_BY_DESIGN)
    # The index (not in the backup) holds a vector for a question id the restore will reuse.
    with vectors.vector_index_open() as index:
        index.collection(_Space("test-embedder", 3)).upsert([data[0].pk], [[0.1, 0.2, 0.3]])

    # Change data after the backup: a new row, a deleted row, an edited row.
    Group.objects.create(name="after the backup")
    Question.objects.filter(pk=data[0].pk).delete()
    Question.objects.filter(pk=data[1].pk).update(text="Edited after the backup")
    assert table_digests(exclude=CHANGED_BY_DESIGN) != before

    result = services.backup_restore(record.name)

    assert table_digests(exclude=CHANGED_BY_DESIGN) == before
    assert result.row_counts["auth_group"] == 1 and result.warnings == []
    assert "Row counts match the manifest" in " ".join(result.steps)
    # The catalogue was carried over: the backup (now verified) and the safety backup.
    records = {r.name: r for r in BackupRecord.objects.all()}
    assert set(records) == {record.name, result.safety_backup}
    assert records[record.name].status == Status.VERIFIED
    assert records[result.safety_backup].trigger == "pre-restore"
    assert records[result.safety_backup].status == Status.CREATED
    # Student email waits for an operator; the index will be rebuilt.
    switch = EmailDelivery.objects.get()
    assert switch.student_email_paused and record.name in switch.note
    assert set(QuestionStep.objects.filter(step__in=["embedding", "similar"])
               .values_list("status", flat=True)) == {QuestionStep.Status.PENDING}
    with vectors.vector_index_open() as index:
        assert index.collections() == []
    # The safety backup holds the changed database: restoring it brings the change back.
    services.backup_restore(result.safety_backup)
    assert Group.objects.filter(name="after the backup").exists()
    assert Question.objects.filter(text="Edited after the backup").exists()


def test_the_manifest_describes_the_backup_and_files_are_private(data):
    record = services.backup_create(trigger="schedule")
    path = _path(record)
    manifest = json.loads(archive.manifest_path(path).read_text())

    assert manifest == record.manifest
    assert manifest["name"] == record.name and manifest["engine"] == connection.vendor
    assert manifest["size_bytes"] == path.stat().st_size == record.size_bytes
    assert manifest["sha256"] == archive.file_sha256(path) == record.sha256
    assert manifest["encrypted"] is True and record.encrypted
    assert manifest["key_fingerprint"] == crypto.key_fingerprint(crypto.key_parse(KEY))
    assert manifest["server_version"] and manifest["tool"] and manifest["trigger"] == "schedule"
    datetime.datetime.fromisoformat(manifest["created_at"])
    # Latest migration per app, as django_migrations says; every table's row count.
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
        applied = cursor.fetchall()
    assert manifest["applied_migrations"] == [f"{a}.{n}" for a, n in applied]
    assert manifest["migrations"]["maintenance"] == "0002_backups_health_history_system_reports"
    assert set(manifest["row_counts"]) == set(connection.introspection.table_names())
    assert manifest["row_counts"]["core_question"] == 3
    assert manifest["row_counts"]["auth_group"] == 1
    assert manifest["tables"] == len(manifest["row_counts"])
    assert manifest["rows"] == sum(manifest["row_counts"].values())
    # The row being written when the dump was taken is in it, as "creating".
    assert manifest["row_counts"]["maintenance_backuprecord"] == 1

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.manifest_path(path).stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.backup_dir().stat().st_mode) == 0o700
    assert crypto.is_encrypted(path.read_bytes()[:8])
    assert backup_files(archive.backup_dir()) == sorted(
        [record.name, record.name + archive.MANIFEST_SUFFIX])


def test_an_unencrypted_backup_round_trips_and_says_it_is_not_encrypted(data, settings):
    settings.BACKUP_ENCRYPTION_KEY = ""
    record = services.backup_create()
    assert not record.encrypted and record.key_fingerprint == ""
    assert not crypto.is_encrypted(_path(record).read_bytes()[:8])
    result = services.backup_verify(record.name)
    assert result.ok, result.detail


def test_verify_restores_into_a_scratch_database_and_records_it(data, monkeypatch):
    record = services.backup_create()
    Group.objects.create(name="not in the backup")
    scratch = []
    connect = engines.PostgresEngine.connect

    def connect_and_remember(self, database=None):
        scratch.append(database)
        return connect(self, database)

    monkeypatch.setattr(engines.PostgresEngine, "connect", connect_and_remember)

    result = services.backup_verify(record.name)

    assert result.ok, result.detail
    assert "restored into a scratch database" in result.detail
    record.refresh_from_db()
    assert record.status == Status.VERIFIED and record.verified_at is not None
    assert record.verify_detail == result.detail
    assert Group.objects.filter(name="not in the backup").exists()  # live data untouched
    assert backup_files(archive.backup_dir()) == sorted(
        [record.name, record.name + archive.MANIFEST_SUFFIX])  # no scratch leftovers
    if connection.vendor == "postgresql":  # the scratch database was dropped
        [name] = [d for d in scratch if d]
        assert name.startswith("pastq_verify_")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
            assert cursor.fetchone()[0] == 0


def test_a_key_rotation_keeps_old_backups_readable(data, settings):
    old = services.backup_create()
    settings.BACKUP_ENCRYPTION_KEY = OTHER_KEY
    settings.BACKUP_DECRYPTION_KEYS = [KEY]
    new = services.backup_create()
    assert new.key_fingerprint != old.key_fingerprint
    assert services.backup_verify(old.name).ok
    assert services.backup_verify(new.name).ok


# --- bad backups: a clear error and the live database unchanged -------------------------------


def _damage_flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _damage_flip_and_fix_manifest(path):
    _damage_flip(path)
    rewrite_manifest(path, fix_checksum=True)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _truncate_at_chunk_boundary_and_fix_manifest(path):
    header, chunks = chunks_of(path)
    path.write_bytes(header + b"".join(chunks[:-1]))
    rewrite_manifest(path, fix_checksum=True)


def _reorder_chunks_and_fix_manifest(path):
    header, chunks = chunks_of(path)
    chunks[0], chunks[1] = chunks[1], chunks[0]
    path.write_bytes(header + b"".join(chunks))
    rewrite_manifest(path, fix_checksum=True)


def _delete_file(path):
    path.unlink()


def _delete_manifest(path):
    archive.manifest_path(path).unlink()


def _other_engine(path):
    other = "postgresql" if connection.vendor == "sqlite" else "sqlite"
    rewrite_manifest(path, engine=other)


def _wrong_key(path):
    settings.BACKUP_ENCRYPTION_KEY = OTHER_KEY


def _newer_migration(path):
    manifest = json.loads(archive.manifest_path(path).read_text())
    rewrite_manifest(path, applied_migrations=[*manifest["applied_migrations"],
                                               "core.9999_from_the_future"])


# damage → (how, the restore's refusal, the verification's failure or None when it is not about
# the file)
BAD_BACKUPS = {
    "corrupted": (_damage_flip, "does not match its manifest's SHA-256", "SHA-256"),
    "corrupted, manifest rewritten to match": (_damage_flip_and_fix_manifest,
                                               "failed authentication", "failed authentication"),
    "truncated": (_truncate, "truncated or replaced", "truncated or replaced"),
    "truncated at a chunk boundary, manifest rewritten": (
        _truncate_at_chunk_boundary_and_fix_manifest, "failed authentication",
        "failed authentication"),
    "chunks reordered, manifest rewritten": (_reorder_chunks_and_fix_manifest,
                                             "failed authentication", "failed authentication"),
    "missing": (_delete_file, "is not in", "is not in"),
    "manifest missing": (_delete_manifest, "manifest of .* is missing", "is missing"),
    "another engine": (_other_engine, "restores only into the engine it was made from", None),
    "wrong key": (_wrong_key, "no configured key has it", "None of the 1 configured"),
    "newer migrations": (_newer_migration, "newer than the code",
                         "applied migrations differ from the manifest"),
}


_PRISTINE: dict[str, tuple[str, bytes, bytes]] = {}


@pytest.fixture
def pristine(backup_settings, monkeypatch):
    """A good backup of a small database in BACKUP_DIR (with several encrypted chunks), made
    once per run and engine and copied in for each test that spoils it: the checks under test
    all come before anything is restored."""
    monkeypatch.setattr(archive, "ENCRYPTION_CHUNK_SIZE", 4096)
    if connection.vendor not in _PRISTINE:
        record = services.backup_create()
        path = _path(record)
        _PRISTINE[connection.vendor] = (record.name, path.read_bytes(),
                                        archive.manifest_path(path).read_bytes())
        BackupRecord.objects.all().delete()
    else:
        name, file_bytes, manifest_bytes = _PRISTINE[connection.vendor]
        archive.write_atomically(archive.backup_dir() / name, file_bytes)
        archive.write_atomically(archive.manifest_path(archive.backup_dir() / name),
                                 manifest_bytes)
    name = _PRISTINE[connection.vendor][0]
    assert len(chunks_of(archive.backup_dir() / name)[1]) >= 3
    return archive.backup_dir() / name


@pytest.mark.parametrize("damage", BAD_BACKUPS, ids=list(BAD_BACKUPS))
def test_a_bad_backup_is_refused_and_the_database_is_unchanged(pristine, damage):
    spoil, refusal, verify_failure = BAD_BACKUPS[damage]
    Group.objects.create(name="after the backup")
    spoil(pristine)
    before = table_digests()
    files = backup_files(archive.backup_dir())

    with pytest.raises(BackupError, match=refusal):
        services.backup_restore(pristine.name)

    assert table_digests() == before
    assert backup_files(archive.backup_dir()) == files  # no safety backup, no leftovers

    # Verification fails it too, with the reason, and records it.
    if verify_failure is not None:
        result = services.backup_verify(pristine.name)
        assert not result.ok and verify_failure in result.detail
        if damage not in ("missing", "manifest missing"):  # nothing left to record it by
            record = BackupRecord.objects.get(name=pristine.name)
            assert record.status == Status.FAILED and record.verify_detail == result.detail
        assert backup_files(archive.backup_dir()) == files
        del before["maintenance_backuprecord"]
        assert table_digests(exclude={"maintenance_backuprecord"}) == before


def test_a_restore_that_cannot_get_its_locks_fails_and_changes_nothing(data, monkeypatch):
    """A worker (with --force) holding a table: the restore gives up after its lock timeout and
    rolls back, so the database stays as it was."""
    record = _verified(services.backup_create())
    Group.objects.create(name="after the backup")
    before = table_digests(exclude={"maintenance_backuprecord"})
    if connection.vendor == "sqlite":
        # A worker's write transaction that begins after the safety backup and outlasts the
        # restore's lock timeout.
        holders = []
        restore = engines.SqliteEngine.restore

        def restore_while_locked(self, *args, **kwargs):
            holders.append(sqlite_write_lock(connection.settings_dict["NAME"]))
            return restore(self, *args, **kwargs)

        monkeypatch.setattr(engines.SqliteEngine, "restore", restore_while_locked)

        def release():
            for holder in holders:
                holder.close()
    else:
        holder = connection.Database.connect(**{
            k: v for k, v in connection.get_connection_params().items()
            if k not in ("cursor_factory", "context", "prepare_threshold")})
        holder.cursor().execute("SELECT count(*) FROM auth_group")  # holds ACCESS SHARE
        release = holder.close
    try:
        with pytest.raises(BackupError, match="nothing (was restored|changed)") as caught:
            services.backup_restore(record.name)
    finally:
        release()
    assert "lock" in str(caught.value).lower()
    assert table_digests(exclude={"maintenance_backuprecord"}) == before
    assert Group.objects.filter(name="after the backup").exists()
    # The safety backup was taken before the attempt, and kept.
    assert BackupRecord.objects.filter(trigger="pre-restore", status=Status.CREATED).exists()


def test_a_restore_is_refused_while_a_cluster_heartbeat_is_fresh_unless_forced(data):
    record = _verified(services.backup_create())
    make_presence(age_s=2)
    Group.objects.create(name="after the backup")
    before = table_digests()

    with pytest.raises(BackupError, match="Workers are running .* --force restores anyway"):
        services.backup_restore(record.name)
    assert table_digests() == before

    services.backup_restore(record.name, force=True)
    assert not Group.objects.filter(name="after the backup").exists()


def test_a_stale_heartbeat_does_not_stop_a_restore(data):
    record = _verified(services.backup_create())
    make_presence(age_s=settings.PASTQ_PRESENCE_STALE_SECONDS + 60)
    services.backup_restore(record.name)


def test_a_dry_run_changes_nothing(data):
    record = services.backup_create()
    Group.objects.create(name="after the backup")
    before, files = table_digests(), backup_files(archive.backup_dir())

    result = services.backup_restore(record.name, dry_run=True)

    assert result.dry_run and any("Would take a safety backup" in s for s in result.steps)
    assert any("none to apply" in s for s in result.steps)
    assert table_digests() == before and backup_files(archive.backup_dir()) == files


def test_a_backup_at_older_migrations_is_migrated_forward_after_the_restore(data):
    """The backup lacks tables that newer migrations made (with foreign keys to its tables):
    the restore drops them, the forward migration makes them again."""
    call_command("migrate", "notifications", "0002", verbosity=0)
    try:
        record = services.backup_create()
    finally:
        call_command("migrate", verbosity=0)
    assert "notifications.0003_ledger_undeliverable_addresses_pause" not in \
        record.manifest["applied_migrations"]
    assert "notifications_emaildelivery" not in record.manifest["row_counts"]

    plan = services.backup_restore(record.name, dry_run=True)
    assert any("older migrations: 2 will be applied" in s for s in plan.steps)
    result = services.backup_restore(record.name)

    assert any("Applied 2 migrations" in s for s in result.steps)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM django_migrations WHERE app = 'notifications'")
        assert "0004_ledger_permissions_message_id" in {r[0] for r in cursor.fetchall()}
    assert EmailDelivery.objects.get().student_email_paused
    assert Question.objects.count() == 3


def test_a_failed_create_leaves_no_file_and_says_why(data, monkeypatch):
    def full_disk(src, dst, **kwargs):
        dst.write(b"x" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crypto, "encrypt_stream", full_disk)
    with pytest.raises(BackupError, match="No space left on device.*nothing was kept"):
        services.backup_create()
    assert backup_files(archive.backup_dir()) == []
    record = BackupRecord.objects.get()
    assert record.status == Status.FAILED and "No space left" in record.error


def test_a_create_that_times_out_leaves_no_file(data, settings, monkeypatch):
    if connection.vendor == "sqlite":
        # The copy's progress callback sees the deadline already passed.
        monkeypatch.setattr(engines, "tool_timeout", lambda: -1.0)
        monkeypatch.setattr(services, "tool_timeout", lambda: -1.0)
        with pytest.raises(BackupTimeout):
            services.backup_create()
    else:
        pytest.skip("PostgreSQL's timeout is tested with a slow fake pg_dump "
                    "(test_backups_postgres.py)")
    assert backup_files(archive.backup_dir()) == []
    assert BackupRecord.objects.get().status == Status.FAILED


def test_leftovers_of_a_killed_backup_are_removed_and_its_record_failed(data):
    directory = archive.backup_dir()
    partial = directory / ".pastq-20260101T040000Z-abcd.sqlite3.zst.partial-1234"
    partial.write_bytes(b"half a backup")
    (archive.work_dir() / ".work-dead.dump").write_bytes(b"plaintext")
    BackupRecord.objects.create(name="pastq-20260101T040000Z-abcd.sqlite3.zst", engine="sqlite",
                                status=Status.CREATING)

    record = services.backup_create()

    assert backup_files(directory) == sorted([record.name, record.name + archive.MANIFEST_SUFFIX])
    dead = BackupRecord.objects.get(name="pastq-20260101T040000Z-abcd.sqlite3.zst")
    assert dead.status == Status.FAILED and "Interrupted" in dead.error


def test_list_shows_files_records_and_problems(data):
    first = services.backup_create()
    second = services.backup_create()
    archive.manifest_path(_path(first)).unlink()
    BackupRecord.objects.create(name="pastq-20260101T040000Z-beef.sqlite3.zst", engine="sqlite",
                                status=Status.FAILED, error="pg_dump failed")

    listings = {item.name: item for item in services.backup_list()}

    assert listings[second.name].status == Status.CREATED and listings[second.name].file_present
    assert listings[second.name].rows == second.manifest["rows"]
    assert "manifest" in listings[first.name].problem
    assert listings["pastq-20260101T040000Z-beef.sqlite3.zst"].problem == "pg_dump failed"
    assert not listings["pastq-20260101T040000Z-beef.sqlite3.zst"].file_present


def test_cleanup_applies_retention_and_keeps_the_newest_verified(data, settings):
    settings.BACKUP_KEEP_LAST, settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY = 1, 0, 0
    oldest = services.backup_create()
    assert services.backup_verify(oldest.name).ok
    middle = services.backup_create()
    newest = services.backup_create()

    dry = services.backup_cleanup(dry_run=True)
    assert dry.deleted == [middle.name]
    assert set(dry.kept) == {oldest.name, newest.name}
    assert (archive.backup_dir() / middle.name).exists()

    done = services.backup_cleanup()
    assert done.deleted == [middle.name]
    assert not (archive.backup_dir() / middle.name).exists()
    assert not archive.manifest_path(archive.backup_dir() / middle.name).exists()
    assert BackupRecord.objects.get(name=middle.name).status == Status.DELETED
    assert services.backup_cleanup().deleted == []


def test_a_restore_into_an_empty_database_works_from_the_files_alone(data):
    """Disaster recovery: a new database without a single table; the files are enough."""
    record = services.backup_create()
    before = table_digests(exclude=CHANGED_BY_DESIGN)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA foreign_keys = OFF")
        for table in connection.introspection.table_names(cursor):
            cascade = " CASCADE" if connection.vendor == "postgresql" else ""
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}{cascade}")
    assert connection.introspection.table_names() == []

    result = services.backup_restore(record.name)

    assert result.safety_backup == ""
    assert any("no tables: nothing to keep" in s for s in result.steps)
    assert table_digests(exclude=CHANGED_BY_DESIGN) == before
    # The catalogue comes back from the files.
    assert BackupRecord.objects.get(name=record.name).status == Status.VERIFIED


def test_a_restore_inside_a_transaction_is_refused(data):
    from django.db import transaction

    record = services.backup_create()
    with transaction.atomic(), pytest.raises(BackupError, match="inside a database transaction"):
        services.backup_restore(record.name)


def test_verify_of_a_name_that_is_no_backup(backup_settings):
    result = services.backup_verify("pastq-20260101T040000Z-0000.sqlite3.zst")
    assert not result.ok and "is not in" in result.detail
    with pytest.raises(BackupInvalid, match="not the name of a pastq backup"):
        archive.backup_path("../../etc/passwd")
