"""The backup jobs: thin, primitive arguments, a small dict back.

`backup_create_job` runs daily at 04:00 (the schedule row `database-backup`); on success it
enqueues `backup_verify_job` for the new file, which restores it into a scratch database, then
applies retention and, when off-site storage is configured, enqueues the off-site copy. Each
fits the maintenance queue's time limit: the dump and restore tools get three quarters of it
(BACKUP_TOOL_TIMEOUT_SECONDS) and are stopped, their files removed, past it.

A failure worth retrying (a tool failed, the database or the directory's lock was busy) is
retried once; a second failure, or a permanent one (pg_dump older than the server, a backup
that fails verification), gives up and the job system opens an alert and emails the ADMINS.
"""

from django.db import OperationalError

from core.jobs import RetryPolicy, TransientError, enqueue, job
from maintenance.backups import services
from maintenance.backups.archive import BackupBusy
from maintenance.backups.engines import BackupError, BackupToolError

BACKUP_RETRY = RetryPolicy(max_attempts=2, base_delay=300.0,
                           transient=(TransientError, OperationalError, ConnectionError,
                                      TimeoutError))
OFFSITE_RETRY = RetryPolicy(max_attempts=4, base_delay=300.0)
VERIFY_JOB = "maintenance.backups.tasks.backup_verify_job"
OFFSITE_JOB = "maintenance.backups.tasks.backup_offsite_job"


@job(queue="maintenance", retry=BACKUP_RETRY)
def backup_create_job(trigger: str = "schedule") -> dict:
    """Create a backup; then its verification runs as a job of its own."""
    try:
        record = services.backup_create(trigger=trigger)
    except (BackupToolError, BackupBusy) as exc:
        raise TransientError(str(exc)) from exc
    enqueue(VERIFY_JOB, args=[record.name])
    return {"name": record.name, "size_bytes": record.size_bytes,
            "duration_ms": record.duration_ms, "encrypted": record.encrypted}


@job(queue="maintenance", retry=BACKUP_RETRY)
def backup_verify_job(name: str) -> dict:
    """Verify a backup by a real restore into a scratch database; a backup that fails is an
    alert. After a success: retention, and the off-site copy when configured."""
    try:
        result = services.backup_verify(name)
    except (BackupToolError, BackupBusy) as exc:
        raise TransientError(str(exc)) from exc
    if not result.ok:
        raise BackupError(f"Backup {name} failed verification: {result.detail}")
    if services.offsite_storage() is not None:
        enqueue(OFFSITE_JOB, args=[name])
    cleanup = services.backup_cleanup(dry_run=False)
    return {"name": name, "verified": True, "duration_ms": result.duration_ms,
            "deleted": cleanup.deleted}


@job(queue="maintenance", retry=OFFSITE_RETRY)
def backup_offsite_job(name: str) -> dict:
    """Copy a verified backup to the off-site storage (BACKUP_OFFSITE_STORAGE)."""
    try:
        stored = services.backup_offsite_copy(name)
    except BackupBusy as exc:
        raise TransientError(str(exc)) from exc
    except (BackupError, OperationalError):
        raise
    except Exception as exc:  # the storage's own errors (network, credentials): retried
        raise TransientError(f"Copying {name} off-site failed: {exc}") from exc
    return {"name": name, "offsite_name": stored}
