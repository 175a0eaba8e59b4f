"""Backups: create, list, verify, restore, clean up, copy off-site (docs/backups.md).

Every entry point (the `backup_db` command, the admin, the jobs) calls these. The files in
BACKUP_DIR and their manifests are the truth: a restore works from them alone, even into an
empty database; `BackupRecord` rows are the catalogue the admin shows and the verification
state retention reads. A restore would roll that catalogue back with everything else, so it is
carried over: the catalogue describes files, which a restore does not change.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import InvalidStorageError, storages
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import DatabaseError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from core import processing
from core.ai import vectors
from core.ai.types import ProviderUnavailable
from core.jobs import liveness
from core.jobs.schedules import schedules_sync
from core.models import Question, QuestionStep
from maintenance.backups import archive, crypto, retention
from maintenance.backups.archive import BackupIntegrityError, BackupMissing
from maintenance.backups.engines import (
    BackupError,
    BackupInvalid,
    Snapshot,
    SqliteEngine,
    engine_for,
    tool_timeout,
)
from maintenance.models import BackupRecord
from notifications.services import student_email_pause

logger = logging.getLogger("pastq.backups")

Status = BackupRecord.Status
TRIGGERS = ("schedule", "command", "admin", "pre-restore")
VECTOR_RESET_BATCH = 5000  # question ids per statement (SQLite allows 32766 parameters)
ENCRYPTION = "AES-256-GCM in chunks, a key per file (maintenance/backups/crypto.py, format 1)"

__all__ = ["BackupError", "BackupIntegrityError", "BackupInvalid", "BackupMissing", "backup_cleanup",
           "backup_create", "backup_list", "backup_offsite_copy", "backup_offsite_fetch",
           "backup_restore", "backup_verify"]


def _keys() -> tuple[bytes | None, dict[str, bytes]]:
    try:
        return crypto.keys_from_settings()
    except crypto.BackupKeyError as exc:
        raise BackupError(str(exc)) from exc


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _table_exists(table: str) -> bool:
    try:
        with connection.cursor() as cursor:
            return table in connection.introspection.table_names(cursor)
    except DatabaseError:
        return False


# --- create ----------------------------------------------------------------------------------


def _stale_creations_fail() -> int:
    """Records still "creating" while we hold the directory's lock belong to a backup whose
    process died (a worker killed at its time limit): its temporary file was removed with the
    lock; say so on the record."""
    return BackupRecord.objects.filter(status=Status.CREATING).update(
        status=Status.FAILED, finished_at=timezone.now(),
        error="Interrupted: the process writing it stopped before it finished; its temporary "
              "file was removed.")


def _manifest(*, name: str, engine, snapshot: Snapshot, written: archive.Written, trigger: str,
              created_at: datetime.datetime, duration_ms: int) -> dict:
    return {
        "format": archive.MANIFEST_FORMAT,
        "name": name,
        "engine": engine.name,
        "database": str(engine.path.name if isinstance(engine, SqliteEngine)
                        else engine.database),
        "server_version": snapshot.server_version,
        "tool": snapshot.tool,
        "created_at": created_at.isoformat(),
        "duration_ms": duration_ms,
        "trigger": trigger,
        "host": os.uname().nodename,
        "size_bytes": written.size,
        "sha256": written.sha256,
        "dump_bytes": written.dump_bytes,
        "compression": f"zstd level {archive.ZSTD_LEVEL}",
        "encrypted": bool(written.key_fingerprint),
        "encryption": ENCRYPTION if written.key_fingerprint else None,
        "key_fingerprint": written.key_fingerprint,
        "migrations": snapshot.latest_migrations,
        "applied_migrations": snapshot.applied_migrations,
        "row_counts": snapshot.row_counts,
        "tables": len(snapshot.row_counts),
        "rows": sum(snapshot.row_counts.values()),
    }


def backup_create(*, trigger: str = "command") -> BackupRecord:
    """Dump the database into a new backup file with its manifest; returns its record (status
    created). Raises BackupError (BackupToolError when trying again may help)."""
    engine = engine_for()
    key, _ = _keys()
    if key is None:
        logger.warning("BACKUP_ENCRYPTION_KEY is not set: the backup is compressed but not "
                       "encrypted.")
    created_at = timezone.now()
    started = time.perf_counter()
    name = archive.backup_name(engine.name, encrypted=key is not None, at=created_at)
    with archive.directory_lock():
        _stale_creations_fail()
        record = BackupRecord.objects.create(name=name, engine=engine.name, trigger=trigger,
                                             created_at=created_at, encrypted=key is not None,
                                             status=Status.CREATING)
        try:
            written, snapshot = archive.archive_write(
                name, lambda consume: engine.dump(consume, workdir=archive.work_dir(),
                                                  timeout=tool_timeout()), key=key)
            duration_ms = _ms_since(started)
            manifest = _manifest(name=name, engine=engine, snapshot=snapshot, written=written,
                                 trigger=trigger, created_at=created_at,
                                 duration_ms=duration_ms)
            archive.archive_commit(written, archive.backup_dir() / name, manifest)
        except BaseException as exc:
            BackupRecord.objects.filter(pk=record.pk).update(
                status=Status.FAILED, finished_at=timezone.now(), duration_ms=_ms_since(started),
                error=str(exc) or type(exc).__name__)
            raise
        record.status, record.finished_at = Status.CREATED, timezone.now()
        record.duration_ms, record.size_bytes = duration_ms, written.size
        record.sha256, record.key_fingerprint = written.sha256, written.key_fingerprint
        record.manifest = manifest
        record.save()
    logger.info("Backup %s created: %s bytes in %s ms", name, written.size, duration_ms)
    return record


# --- list ------------------------------------------------------------------------------------


@dataclass
class BackupListing:
    name: str
    engine: str
    status: str
    created_at: str
    size_bytes: int | None
    sha256: str
    encrypted: bool
    key_fingerprint: str
    trigger: str
    verified_at: str | None
    file_present: bool
    problem: str = ""
    offsite_name: str = ""
    tables: int | None = None
    rows: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _record_from_manifest(manifest: dict) -> BackupRecord:
    return BackupRecord(
        name=manifest["name"], engine=manifest.get("engine", ""), status=Status.CREATED,
        trigger=manifest.get("trigger", ""),
        created_at=datetime.datetime.fromisoformat(manifest["created_at"]),
        duration_ms=manifest.get("duration_ms"), size_bytes=manifest.get("size_bytes"),
        sha256=manifest.get("sha256", ""), encrypted=bool(manifest.get("encrypted")),
        key_fingerprint=manifest.get("key_fingerprint", ""), manifest=manifest)


def backup_records_sync() -> int:
    """Catalogue the backups on disk that have no record (after a restore into an empty
    database, or files copied in by hand). Returns how many were added."""
    known = set(BackupRecord.objects.values_list("name", flat=True))
    missing = [_record_from_manifest(entry.manifest) for entry in archive.archive_scan()
               if entry.manifest and entry.file_present and entry.name not in known
               and entry.manifest.get("name") == entry.name]
    BackupRecord.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


def backup_list() -> list[BackupListing]:
    """Every backup on disk (with its record's state) and every record whose file is gone
    (failed creations, deleted by retention), newest first. One query."""
    on_disk = archive.archive_scan()
    records = {r.name: r for r in BackupRecord.objects.all()}
    listings = []
    for entry in on_disk:
        record, manifest = records.pop(entry.name, None), entry.manifest or {}
        listings.append(BackupListing(
            name=entry.name, engine=manifest.get("engine") or (record.engine if record else ""),
            status=(record.status if record else "unrecorded"),
            created_at=manifest.get("created_at")
            or (record.created_at.isoformat() if record else ""),
            size_bytes=manifest.get("size_bytes"), sha256=manifest.get("sha256", ""),
            encrypted=bool(manifest.get("encrypted")),
            key_fingerprint=manifest.get("key_fingerprint", ""),
            trigger=manifest.get("trigger", ""),
            verified_at=(record.verified_at.isoformat()
                         if record and record.verified_at else None),
            file_present=entry.file_present, problem=entry.problem,
            offsite_name=record.offsite_name if record else "",
            tables=manifest.get("tables"), rows=manifest.get("rows")))
    for record in records.values():
        listings.append(BackupListing(
            name=record.name, engine=record.engine, status=record.status,
            created_at=record.created_at.isoformat(), size_bytes=record.size_bytes,
            sha256=record.sha256, encrypted=record.encrypted,
            key_fingerprint=record.key_fingerprint, trigger=record.trigger,
            verified_at=record.verified_at.isoformat() if record.verified_at else None,
            file_present=False,
            problem=record.error or ("removed by retention" if record.status == Status.DELETED
                                     else "the backup file is missing"),
            offsite_name=record.offsite_name))
    listings.sort(key=lambda item: (item.created_at, item.name), reverse=True)
    return listings


# --- verify ----------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    name: str
    ok: bool
    detail: str
    duration_ms: int = 0
    mismatches: list[str] = field(default_factory=list)


def _engine_for_backup(manifest: dict):
    live = engine_for()
    engine = manifest.get("engine")
    if engine == live.name:
        return live
    if engine == "sqlite":
        return SqliteEngine()  # a scratch restore needs nothing but the sqlite3 module
    raise BackupError(f"{manifest.get('name')} is a {engine} backup; this installation runs "
                      f"on {live.name}, which cannot restore it, even into a scratch database.")


def _compare(expected: dict, found: Snapshot) -> list[str]:
    problems = []
    counts = expected.get("row_counts", {})
    for table in sorted(set(counts) | set(found.row_counts)):
        want, got = counts.get(table), found.row_counts.get(table)
        if want != got:
            problems.append(f"{table}: manifest {want if want is not None else 'no table'}, "
                            f"restored {got if got is not None else 'no table'}")
    if found.applied_migrations != expected.get("applied_migrations", []):
        problems.append("the applied migrations differ from the manifest's")
    return problems


def _extracted(path: Path, manifest: dict) -> Path:
    """The dump inside a checked backup, as a private temporary file (the caller deletes it)."""
    _, keys = _keys()
    dump = archive.work_dir() / f".work-{secrets.token_hex(6)}.dump"
    try:
        archive.archive_extract(path, manifest, keys=keys, dest=dump)
    except BaseException:
        dump.unlink(missing_ok=True)
        raise
    return dump


def _manifest_named(path: Path, manifest: dict) -> dict:
    if manifest.get("name") != path.name:
        raise BackupIntegrityError(f"The manifest beside {path.name} describes "
                                   f"{manifest.get('name')}: it was renamed or swapped.")
    return manifest


def _verify_file(name: str, manifest: dict | None = None
                 ) -> tuple[dict, Path, list[str], Snapshot]:
    """Checksum (unless `manifest`, already checked, is given), decrypt, decompress and restore
    into a scratch database. Returns the manifest, the extracted dump (the caller deletes it),
    the mismatches and what the scratch copy held."""
    path = archive.backup_path(name)
    if manifest is None:
        manifest = _manifest_named(path, archive.archive_check(path))
    engine = _engine_for_backup(manifest)
    dump = _extracted(path, manifest)
    try:
        restored = engine.scratch_restore(dump, workdir=archive.work_dir(),
                                          timeout=tool_timeout())
    except BaseException:
        dump.unlink(missing_ok=True)
        raise
    return manifest, dump, _compare(manifest, restored), restored


def _record_for(name: str, manifest: dict | None) -> BackupRecord | None:
    record = BackupRecord.objects.filter(name=name).first()
    if record is None and manifest is not None:
        record = _record_from_manifest(manifest)
        record.save()
    return record


def backup_verify(name: str) -> VerifyResult:
    """Check a backup end to end: its SHA-256, decryption (every chunk authenticated),
    decompression, then a real restore into a scratch database (PostgreSQL: a temporary
    database; SQLite: a temporary file) whose row counts and migrations must equal the
    manifest's. Records the outcome (verified or failed) and returns it; never raises for a
    bad backup (it raises BackupError only when the check itself could not run)."""
    started = time.perf_counter()
    with archive.directory_lock():
        manifest = None
        try:
            manifest, dump, mismatches, restored = _verify_file(name)
            dump.unlink(missing_ok=True)
        except BackupInvalid as exc:
            result = VerifyResult(name=name, ok=False, detail=str(exc),
                                  duration_ms=_ms_since(started))
        else:
            ms = _ms_since(started)
            if mismatches:
                result = VerifyResult(
                    name=name, ok=False, duration_ms=ms, mismatches=mismatches,
                    detail="Restored into a scratch database, but it does not match the "
                           "manifest: " + "; ".join(mismatches[:10]))
            else:
                result = VerifyResult(
                    name=name, ok=True, duration_ms=ms,
                    detail=f"Checksum, decryption and decompression passed; restored into a "
                           f"scratch database in {ms / 1000:.1f} s: {len(restored.row_counts)} "
                           f"tables, {sum(restored.row_counts.values())} rows and "
                           f"{len(restored.applied_migrations)} migrations match the manifest.")
        try:
            manifest = manifest or archive.manifest_read(archive.backup_path(name))
        except BackupError:
            manifest = None
        record = _record_for(name, manifest)
        if record is not None:
            record.verify_detail = result.detail
            if result.ok:
                record.status, record.verified_at = Status.VERIFIED, timezone.now()
            elif record.status != Status.DELETED:
                record.status = Status.FAILED
            record.save(update_fields=["status", "verified_at", "verify_detail"])
    log = logger.info if result.ok else logger.error
    log("Backup %s verification %s: %s", name, "passed" if result.ok else "FAILED",
        result.detail)
    return result


# --- restore ---------------------------------------------------------------------------------


@dataclass
class MigrationState:
    unknown: list[str]  # applied in the backup, unknown to this code: a newer backup
    pending: list[str]  # this code's migrations the backup lacks: applied after the restore

    def describe(self) -> str:
        if not self.pending:
            return "the backup is at this code's migrations: none to apply"
        apps = sorted({m.split(".", 1)[0] for m in self.pending})
        return (f"the backup is at older migrations: {len(self.pending)} will be applied after "
                f"the restore ({', '.join(apps)})")


def migration_state(applied: list[str]) -> MigrationState:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    on_disk = {f"{app}.{name}" for app, name in loader.disk_migrations}
    done = set(applied)
    unknown = [m for m in applied if m not in on_disk]
    pending = []
    for app, name in sorted(loader.graph.nodes):
        key = f"{app}.{name}"
        migration = loader.graph.nodes[(app, name)]
        replaced = [f"{a}.{n}" for a, n in getattr(migration, "replaces", [])]
        if key not in done and not (replaced and all(r in done for r in replaced)):
            pending.append(key)
    return MigrationState(unknown=unknown, pending=pending)


@dataclass
class RestoreResult:
    name: str
    dry_run: bool
    steps: list[str] = field(default_factory=list)  # what was (or would be) done, in order
    warnings: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    safety_backup: str = ""
    duration_ms: int = 0


def live_clusters() -> list:
    """Clusters whose heartbeat is fresh (none when the table is not there yet: an empty
    database being restored into)."""
    now = timezone.now()
    try:
        return [p for p in liveness.cluster_presences(now) if liveness.cluster_is_live(p, now)]
    except DatabaseError:
        return []


def _records_snapshot() -> list[dict] | None:
    if not _table_exists(BackupRecord._meta.db_table):
        return None
    return list(BackupRecord.objects.values())


def _records_carry_over(rows: list[dict] | None) -> None:
    """Put the backup catalogue back as it was before the restore rolled it back."""
    with transaction.atomic():
        if rows is not None:
            BackupRecord.objects.all().delete()
            BackupRecord.objects.bulk_create([BackupRecord(**row) for row in rows])
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), [BackupRecord]):
                    cursor.execute(sql)
    backup_records_sync()


def _vector_index_reset() -> tuple[str, str]:
    """After a restore the vector index (Chroma, not in the backup) describes another state of
    the questions: ids may point at other questions' vectors, edited questions keep vectors of
    their old text. Every processable question's embedding and similar steps become pending (the
    pipeline rebuilds them, every 10 minutes) and the index's collections are dropped. Returns
    (what was done, a warning or "")."""
    # Dropped first, then made pending: a vector written in between would be dropped with
    # its step left done.
    warning = ""
    try:
        with vectors.vector_index_open() as index:
            dropped = [info.name for info in index.collections()
                       if index.collection_drop(info.name)]
    except (ProviderUnavailable, vectors.VectorIndexError, ImproperlyConfigured) as exc:
        dropped = None
        warning = (f"The vector index could not be cleared ({exc}): vectors of questions the "
                   "backup does not have stay in it until then (similar-question lookups skip "
                   "them), and the others are replaced as the pipeline re-embeds them. When "
                   "Chroma is back, run `manage.py backup_db reset-vectors`.")
    ids = list(Question.objects.filter(status__in=processing.PROCESSABLE)
               .values_list("pk", flat=True))
    pending = 0
    for start in range(0, len(ids), VECTOR_RESET_BATCH):
        for step in (QuestionStep.Step.EMBEDDING, QuestionStep.Step.SIMILAR):
            pending += processing.steps_force(step,
                                              question_ids=ids[start:start + VECTOR_RESET_BATCH])
    done = f"{pending} embedding and similar-question steps of {len(ids)} questions made pending"
    if dropped is not None:
        done += f"; vector collections dropped: {', '.join(dropped) or 'none'}"
    return done, warning


def backup_vectors_reset() -> str:
    done, warning = _vector_index_reset()
    if warning:
        raise BackupError(warning)
    return done


def _restore_checks(name: str, *, force: bool) -> tuple[Path, dict, MigrationState]:
    """Everything that refuses a restore, cheapest first; the checksum last."""
    engine = engine_for()
    path = archive.backup_path(name)
    if not path.exists():
        raise BackupMissing(f"The backup {name} is not in {path.parent}.")
    manifest = _manifest_named(path, archive.manifest_read(path))
    if manifest.get("engine") != engine.name:
        raise BackupError(f"{name} is a {manifest.get('engine')} backup and this database is "
                          f"{engine.name}: a backup restores only into the engine it was made "
                          "from.")
    state = migration_state(manifest.get("applied_migrations", []))
    if state.unknown:
        raise BackupError(
            f"{name} was made at migrations this code does not have "
            f"({', '.join(state.unknown[:5])}{' …' if len(state.unknown) > 5 else ''}): it is "
            "newer than the code. Deploy the code it was made with (or newer), then restore.")
    if manifest.get("encrypted"):
        _, keys = _keys()
        fingerprint = manifest.get("key_fingerprint", "")
        if fingerprint not in keys:
            raise BackupError(f"{name} is encrypted with the key whose fingerprint is "
                              f"{fingerprint}, and no configured key has it: set "
                              "BACKUP_ENCRYPTION_KEY or add the key to BACKUP_DECRYPTION_KEYS.")
    clusters = live_clusters()
    if clusters and not force:
        names = ", ".join(f"{c.name} on {c.host} (pid {c.pid})" for c in clusters[:5])
        raise BackupError(
            f"Workers are running ({names}): stop every qcluster first. A restore rolls back "
            "the job queue and the email ledger, so running workers would redo work and resend "
            "mail. --force restores anyway.")
    archive.archive_check(path)
    return path, manifest, state


def backup_restore(name: str, *, force: bool = False, dry_run: bool = False,
                   report: Callable[[str], None] | None = None) -> RestoreResult:
    """Replace the database with a backup. Refuses (BackupError, nothing changed) a missing,
    damaged, other-engine, newer-than-the-code or undecryptable backup, one failing
    verification, or live workers without `force`. Then: a safety backup of the current
    database, the restore in one transaction (a failure leaves the database as it was), the
    row counts checked against the manifest, forward migrations, the backup catalogue carried
    over, student email paused, the schedules synced and the vector index reset."""
    report = report or (lambda line: None)
    if connection.in_atomic_block:
        raise BackupError("A restore cannot run inside a database transaction.")
    started = time.perf_counter()
    result = RestoreResult(name=name, dry_run=dry_run)

    def step(line: str) -> None:
        result.steps.append(line)
        report(line)

    with archive.directory_lock():
        path, manifest, state = _restore_checks(name, force=force)
        engine = engine_for()
        step(f"Backup {name}: {manifest['engine']} {manifest.get('server_version', '')}, made "
             f"{manifest['created_at']}, {manifest.get('tables')} tables, "
             f"{manifest.get('rows')} rows; checksum matches.")
        step(f"Into: {engine.describe()}.")
        step(f"Migrations: {state.describe()}.")
        if dry_run:
            for line in ("Would verify it by a restore into a scratch database (unless it was "
                         "verified already with this checksum).",
                         "Would take a safety backup of the current database.",
                         "Would restore it in one transaction, then check the row counts "
                         "against the manifest.",
                         "Would apply migrations, keep the backup catalogue as it is now, pause "
                         "student email, sync the schedules and reset the vector index."):
                step(line)
            result.duration_ms = _ms_since(started)
            return result

        record = BackupRecord.objects.filter(name=name).first() \
            if _table_exists(BackupRecord._meta.db_table) else None
        if record is not None and record.status == Status.VERIFIED and \
                record.sha256 == manifest["sha256"]:
            dump = _extracted(path, manifest)
            step(f"Verified on {record.verified_at:%Y-%m-%d %H:%M} UTC with this checksum; "
                 "decrypted and decompressed again.")
        else:
            step("Verifying: a restore into a scratch database …")
            _manifest, dump, mismatches, _restored = _verify_file(name, manifest)
            if mismatches:
                dump.unlink(missing_ok=True)
                raise BackupIntegrityError(f"{name} fails verification: "
                                           + "; ".join(mismatches[:10]))
            step("Verified: the scratch copy matches the manifest.")
        try:
            if engine.live_snapshot().row_counts:
                safety = backup_create(trigger="pre-restore")
                result.safety_backup = safety.name
                step(f"Safety backup of the current database: {safety.name}.")
            else:
                step("The database has no tables: nothing to keep in a safety backup.")
            records = _records_snapshot()
            engine.restore(dump, timeout=tool_timeout())
        finally:
            dump.unlink(missing_ok=True)
        step("Restored in one transaction.")
        connections.close_all()
        ContentType.objects.clear_cache()

        # From here the database is the backup's: what follows brings it up to date. A failure
        # is reported with the safety backup's name (the database as it was before).
        try:
            _after_restore(name, manifest, state, records, result, step)
        except Exception as exc:
            before = (f"The database as it was before is in the safety backup "
                      f"{result.safety_backup}." if result.safety_backup else "")
            raise BackupError(f"{name} was restored, but a step after it failed: {exc}. "
                              + before) from exc
    result.duration_ms = _ms_since(started)
    return result


def _after_restore(name: str, manifest: dict, state: MigrationState, records, result,
                   step: Callable[[str], None]) -> None:
    live = engine_for().live_snapshot()
    live.applied_migrations = manifest.get("applied_migrations", [])
    differ = _compare(manifest, live)
    if differ:
        result.warnings.append("Row counts differ from the manifest right after the restore "
                               "(something wrote meanwhile?): " + "; ".join(differ[:10]))
    else:
        step(f"Row counts match the manifest ({len(live.row_counts)} tables).")
    if state.pending:
        call_command("migrate", interactive=False, verbosity=0)
        step(f"Applied {len(state.pending)} migrations.")
    executor = MigrationExecutor(connection)
    left = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if left:
        raise BackupError(f"{len(left)} migrations are still unapplied after migrate.")
    _records_carry_over(records)
    record = BackupRecord.objects.filter(name=name).first()
    if record is None:
        record = _record_from_manifest(manifest)
    if record.status != Status.VERIFIED:
        record.status, record.verified_at = Status.VERIFIED, timezone.now()
        record.verify_detail = "Verified before a restore."
    record.save()
    student_email_pause(note=f"Restored from backup {name} at "
                             f"{timezone.now():%Y-%m-%d %H:%M} UTC: resume when checked.")
    step("Student email paused: the restored ledger would resend what was sent after the "
         "backup. Resume it on the email delivery switch's admin page when you have checked.")
    changes = schedules_sync()
    step(f"Schedules synced ({len(changes)} changes).")
    done, warning = _vector_index_reset()
    step(f"Vector index: {done}.")
    if warning:
        result.warnings.append(warning)
    result.row_counts = engine_for().live_snapshot().row_counts


# --- cleanup ---------------------------------------------------------------------------------


@dataclass
class CleanupResult:
    dry_run: bool
    kept: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not dated (no manifest): left alone


def backup_cleanup(*, dry_run: bool = False, now: datetime.datetime | None = None
                   ) -> CleanupResult:
    """Apply retention (BACKUP_KEEP_LAST / _DAILY / _WEEKLY; the newest verified backup is
    always kept) to the backups on disk. Deleted files' records stay, marked deleted."""
    now = now or timezone.now()
    with archive.directory_lock():
        backup_records_sync()
        entries = archive.archive_scan()
        verified = set(BackupRecord.objects.filter(status=Status.VERIFIED)
                       .values_list("name", flat=True))
        candidates, result = [], CleanupResult(dry_run=dry_run)
        for entry in entries:
            if not (entry.file_present and entry.manifest):
                result.skipped.append(f"{entry.name}: {entry.problem}")
                continue
            created = datetime.datetime.fromisoformat(entry.manifest["created_at"])
            candidates.append(retention.Candidate(entry.name, created, entry.name in verified))
        plan = retention.retention_plan(
            candidates, now=now, keep_last=settings.BACKUP_KEEP_LAST,
            keep_daily=settings.BACKUP_KEEP_DAILY, keep_weekly=settings.BACKUP_KEEP_WEEKLY)
        result.kept, result.deleted = plan.keep, plan.delete
        if not dry_run and plan.delete:
            for name in plan.delete:
                archive.archive_delete(archive.backup_dir() / name)
            BackupRecord.objects.filter(name__in=plan.delete).update(status=Status.DELETED)
    return result


# --- off-site copies -------------------------------------------------------------------------


def offsite_storage():
    """The storage of BACKUP_OFFSITE_STORAGE (a name in STORAGES), or None when unset."""
    alias = getattr(settings, "BACKUP_OFFSITE_STORAGE", "")
    if not alias:
        return None
    try:
        return storages[alias]
    except InvalidStorageError as exc:
        raise BackupError(f"BACKUP_OFFSITE_STORAGE names {alias!r}, which is not in "
                          "STORAGES.") from exc
    except ImportError as exc:
        raise BackupError(f"The off-site storage's backend cannot be imported ({exc}): install "
                          "django-storages[s3].") from exc


def backup_offsite_copy(name: str) -> str:
    """Copy a verified backup and its manifest to the off-site storage (the manifest last, so
    an off-site backup with a manifest is complete). Returns the stored name."""
    storage = offsite_storage()
    if storage is None:
        raise BackupError("No off-site storage is configured (BACKUP_OFFSITE_STORAGE).")
    record = BackupRecord.objects.filter(name=name).first()
    if record is None or record.status != Status.VERIFIED:
        raise BackupError(f"{name} is not verified: only verified backups are copied off-site.")
    with archive.directory_lock():
        path = archive.backup_path(name)
        archive.archive_check(path)
        for source in (path, archive.manifest_path(path)):
            if storage.exists(source.name):
                storage.delete(source.name)  # an earlier, interrupted copy
            with source.open("rb") as file:
                stored = storage.save(source.name, File(file, name=source.name))
            if stored != source.name:
                raise BackupError(f"The off-site storage stored {source.name} as {stored}.")
        record.offsite_name, record.offsite_at = name, timezone.now()
        record.save(update_fields=["offsite_name", "offsite_at"])
    return name


def backup_offsite_list() -> list[str]:
    """Names of the complete backups (with their manifests) in the off-site storage."""
    storage = offsite_storage()
    if storage is None:
        raise BackupError("No off-site storage is configured (BACKUP_OFFSITE_STORAGE).")
    _dirs, files = storage.listdir("")
    present = set(files)
    return sorted((f for f in files if archive.NAME_PATTERN.match(f)
                   and f + archive.MANIFEST_SUFFIX in present), reverse=True)


def backup_offsite_fetch(name: str) -> Path:
    """Bring an off-site backup (and its manifest) into BACKUP_DIR, so it can be verified or
    restored like any other; its checksum is checked against its manifest."""
    storage = offsite_storage()
    if storage is None:
        raise BackupError("No off-site storage is configured (BACKUP_OFFSITE_STORAGE).")
    path = archive.backup_path(name)
    with archive.directory_lock():
        if path.exists():
            archive.archive_check(path)
            return path
        for stored in (archive.manifest_path(path).name, name):
            if not storage.exists(stored):
                raise BackupMissing(f"{stored} is not in the off-site storage.")
        manifest_bytes = storage.open(archive.manifest_path(path).name, "rb").read()
        partial = archive.work_dir() / f".work-{secrets.token_hex(6)}.fetch"
        try:
            with storage.open(name, "rb") as remote, \
                    os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                              "wb") as local:
                for chunk in remote.chunks(archive.IO_CHUNK):
                    local.write(chunk)
                local.flush()
                os.fsync(local.fileno())
            archive.write_atomically(archive.manifest_path(path), manifest_bytes)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        try:
            archive.archive_check(path)
        except BackupError:
            archive.archive_delete(path)
            raise
        backup_records_sync()
    return path
