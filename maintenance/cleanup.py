"""Cleanup that loses nothing: what has served its time goes, a batch at a time
(maintenance/pruning.py), and each part can say first what it would do (`dry_run`).

Parts (docs/operations.md, "Cleanup"), each a service of its own, run together by cleanup_run:

- sessions: open practice sessions idle for CLEANUP_SESSION_IDLE_HOURS become abandoned;
  abandoned sessions WITHOUT attempts idle for CLEANUP_ABANDONED_SESSION_DAYS are deleted.
  Attempts are never deleted: they are the history every statistic is built on.
- tokens: API tokens expired or revoked more than CLEANUP_TOKEN_GRACE_DAYS ago; Django's
  expired login sessions.
- jobs: job records past CLEANUP_JOB_RECORD_DAYS (pruning.job_records_prune).
- email: the stored HTML and text of emails sent or skipped more than CLEANUP_EMAIL_HTML_DAYS
  ago (the ledger row and its status stay: it is the at-most-once record), and the HTML and
  chart of reports last built that long ago (their figures stay).
- tmp: files under var/tmp older than CLEANUP_TMP_HOURS, and the directories they leave empty.
- health: health-check runs older than MAINTENANCE_HEALTH_RETENTION_DAYS.
"""

from __future__ import annotations

import datetime
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from analytics.models import Report
from core.models import ApiToken, Attempt, PracticeSession
from maintenance import pruning
from maintenance.models import HealthCheckRun
from maintenance.pruning import BATCH_SIZE, Budget, rows_change_in_batches, rows_delete_in_batches
from notifications.models import Notification

PARTS = ("sessions", "tokens", "jobs", "email", "tmp", "health")

Status = PracticeSession.Status


def _at_least(value: int, minimum: int, what: str) -> int:
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}.")
    return value


# --- Practice sessions ----------------------------------------------------------------------


def _idle_sessions(idle_cutoff: datetime.datetime) -> QuerySet:
    """Open sessions whose last activity, their own stamp or their latest attempt, is before
    the cutoff. attempt_record moves last_activity_at with every answer; the attempts are read
    too (an index on session_id) so an attempt written another way still counts as activity."""
    recent_answer = Attempt.objects.filter(session=OuterRef("pk"), answered_at__gte=idle_cutoff)
    return PracticeSession.objects.filter(
        status__in=PracticeSession.OPEN_STATUSES, last_activity_at__lt=idle_cutoff,
    ).filter(~Exists(recent_answer))


def _empty_old_sessions(delete_cutoff: datetime.datetime, *,
                        idle_cutoff: datetime.datetime | None) -> QuerySet:
    """Sessions without a single attempt, idle since before `delete_cutoff`, and abandoned
    (or, with `idle_cutoff`, open but idle enough to be abandoned by this same run: what a dry
    run counts, so its count equals the real one)."""
    closed = Q(status=Status.ABANDONED)
    if idle_cutoff is not None:
        closed |= Q(status__in=PracticeSession.OPEN_STATUSES, last_activity_at__lt=idle_cutoff)
    return PracticeSession.objects.filter(closed, last_activity_at__lt=delete_cutoff).filter(
        ~Exists(Attempt.objects.filter(session=OuterRef("pk"))))


def _sessions_delete_without_attempts(keys: list[int],
                                      delete_cutoff: datetime.datetime) -> int:
    """Delete the abandoned sessions among `keys` that have no attempt, in ONE statement whose
    condition the database checks as it deletes. Not QuerySet.delete(): Attempt.session is
    on_delete=CASCADE, and Django's delete would first delete the attempts it finds for these
    sessions. Here an attempt written since the keys were read keeps its session (NOT EXISTS),
    and on PostgreSQL one committed while this statement runs makes a foreign-key check fail
    (the attempt's or this delete's, whichever comes second) instead of being lost; SQLite
    admits one writer at a time. Nothing else references a session (a test pins it), so this
    skips no cascade that should have run."""
    if not keys:
        return 0
    ops = connection.ops
    session_table = ops.quote_name(PracticeSession._meta.db_table)
    attempt_table = ops.quote_name(Attempt._meta.db_table)
    session_pk = ops.quote_name(PracticeSession._meta.pk.column)

    def column(name: str) -> str:
        return ops.quote_name(PracticeSession._meta.get_field(name).column)

    sql = (
        f"DELETE FROM {session_table} WHERE {session_pk} IN ({', '.join(['%s'] * len(keys))}) "
        f"AND {column('status')} = %s AND {column('last_activity_at')} < %s "
        f"AND NOT EXISTS (SELECT 1 FROM {attempt_table} WHERE {attempt_table}."
        f"{ops.quote_name(Attempt._meta.get_field('session').column)} = "
        f"{session_table}.{session_pk})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*keys, Status.ABANDONED.value,
                             ops.adapt_datetimefield_value(delete_cutoff)])
        return cursor.rowcount


def practice_sessions_cleanup(*, now: datetime.datetime | None = None,
                              idle_hours: int | None = None, abandoned_days: int | None = None,
                              dry_run: bool = False, batch_size: int = BATCH_SIZE,
                              budget: Budget | None = None) -> dict:
    """Abandon open sessions idle for `idle_hours` (a conditional UPDATE: a session that took
    an answer meanwhile stays open), then delete abandoned sessions without attempts idle for
    `abandoned_days`. Returns {"abandoned", "deleted"}; with `dry_run`, what would be."""
    now = now or timezone.now()
    idle_hours = _at_least(idle_hours if idle_hours is not None
                           else settings.CLEANUP_SESSION_IDLE_HOURS, 1, "The idle time (hours)")
    abandoned_days = _at_least(abandoned_days if abandoned_days is not None
                               else settings.CLEANUP_ABANDONED_SESSION_DAYS, 1,
                               "The age of abandoned sessions to delete (days)")
    idle_cutoff = now - datetime.timedelta(hours=idle_hours)
    delete_cutoff = now - datetime.timedelta(days=abandoned_days)
    options = dict(dry_run=dry_run, batch_size=batch_size, budget=budget)

    abandoned = rows_change_in_batches(
        _idle_sessions(idle_cutoff), lambda batch: batch.update(status=Status.ABANDONED),
        **options)
    if dry_run:
        deleted = _empty_old_sessions(delete_cutoff, idle_cutoff=idle_cutoff).count()
    else:
        deleted = rows_change_in_batches(
            _empty_old_sessions(delete_cutoff, idle_cutoff=None),
            lambda batch: _sessions_delete_without_attempts(
                list(batch.values_list("pk", flat=True)), delete_cutoff),
            **options)
    return {"abandoned": abandoned, "deleted": deleted}


# --- Tokens and Django's login sessions -----------------------------------------------------


def tokens_cleanup(*, now: datetime.datetime | None = None, grace_days: int | None = None,
                   dry_run: bool = False, batch_size: int = BATCH_SIZE,
                   budget: Budget | None = None) -> dict:
    """API tokens that expired or were revoked more than `grace_days` ago (kept meanwhile so a
    person asking why their token stopped working can be told), and Django's expired login
    sessions (what `clearsessions` does, in batches). Returns {"api_tokens_deleted",
    "login_sessions_deleted"}; the second is None for a session engine without a table (its
    own clear_expired() runs; it cannot count)."""
    now = now or timezone.now()
    grace_days = _at_least(grace_days if grace_days is not None
                           else settings.CLEANUP_TOKEN_GRACE_DAYS, 0, "The grace period (days)")
    cutoff = now - datetime.timedelta(days=grace_days)
    options = dict(dry_run=dry_run, batch_size=batch_size, budget=budget)
    tokens = rows_delete_in_batches(
        ApiToken.objects.filter(Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)), **options)

    store = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store, "get_model_class"):  # the db and cached_db engines
        login_sessions = rows_delete_in_batches(
            store.get_model_class().objects.filter(expire_date__lt=now), **options)
    else:
        login_sessions = None
        if not dry_run:
            store.clear_expired()
    return {"api_tokens_deleted": tokens, "login_sessions_deleted": login_sessions}


# --- Stored email and report HTML -----------------------------------------------------------

# Ledger rows that may still be sent: a resend of a failed or unknown row sends its stored
# HTML (staff reports, test emails) and the report's chart, so those keep theirs.
_MAY_STILL_SEND = (Notification.Status.QUEUED, Notification.Status.SENDING,
                   Notification.Status.FAILED, Notification.Status.UNKNOWN)


def stored_email_cleanup(*, now: datetime.datetime | None = None, days: int | None = None,
                         dry_run: bool = False, batch_size: int = BATCH_SIZE,
                         budget: Budget | None = None) -> dict:
    """Empty the HTML and text of ledger rows sent or skipped, unchanged for `days` (the row,
    its status, subject and times stay: the ledger is the at-most-once record; the admin shows
    "pruned"); and the HTML and chart of reports last built `days` ago that no email still to
    be sent needs (their figures, `data`, stay; the API serves no report HTML). Returns
    {"emails_emptied", "reports_emptied"}."""
    now = now or timezone.now()
    days = _at_least(days if days is not None else settings.CLEANUP_EMAIL_HTML_DAYS, 1,
                     "The retention of stored email (days)")
    cutoff = now - datetime.timedelta(days=days)
    options = dict(dry_run=dry_run, batch_size=batch_size, budget=budget)

    emails = rows_change_in_batches(
        Notification.objects.filter(
            status__in=[Notification.Status.SENT, Notification.Status.SKIPPED],
            updated_at__lt=cutoff).exclude(html="", text=""),
        lambda batch: batch.update(html="", text=""), **options)

    needed_by_ledger = Notification.objects.filter(report=OuterRef("pk"),
                                                   status__in=_MAY_STILL_SEND)
    # A weekly report's email finds its report by student and ISO week, not by key.
    needed_by_weekly_email = Notification.objects.filter(
        user=OuterRef("student"), kind=Notification.Kind.WEEKLY_REPORT,
        period=OuterRef("label"), status__in=_MAY_STILL_SEND)
    reports = rows_change_in_batches(
        Report.objects.filter(updated_at__lt=cutoff).exclude(html="", chart_png=b"")
        .filter(~Exists(needed_by_ledger), ~Exists(needed_by_weekly_email)),
        lambda batch: batch.update(html="", chart_png=b""), **options)
    return {"emails_emptied": emails, "reports_emptied": reports}


# --- Temporary files ------------------------------------------------------------------------


def tmp_directory() -> Path:
    return Path(settings.VAR_DIR) / "tmp"


def tmp_files_cleanup(*, now: datetime.datetime | None = None, hours: int | None = None,
                      dry_run: bool = False, root: Path | None = None) -> dict:
    """Delete regular files under `root` (var/tmp) last modified more than `hours` ago, and
    the subdirectories that leaves empty (those themselves older than `hours`: a directory
    just made for a file about to be written stays). Symbolic links are never followed nor
    removed, and nothing outside `root` is touched: the walk goes by directory descriptors
    (os.fwalk), so a directory swapped for a link while it runs leads nowhere. `root` itself
    stays. Returns {"files_deleted", "bytes_freed", "directories_removed"}."""
    hours = _at_least(hours if hours is not None else settings.CLEANUP_TMP_HOURS, 1,
                      "The age of temporary files (hours)")
    cutoff = (now or timezone.now()).timestamp() - hours * 3600
    root = Path(root) if root is not None else tmp_directory()
    counts = {"files_deleted": 0, "bytes_freed": 0, "directories_removed": 0}
    if not root.is_dir() or root.is_symlink():
        return counts

    # Bottom-up, a directory after everything inside it: whether each (by its path relative
    # to root) is left empty and old, so its parent may remove it.
    goes: dict[str, bool] = {}
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, topdown=False,
                                                       follow_symlinks=False):
        relative = os.path.relpath(dirpath, root)
        # Its age before anything in it is removed (which would make it new).
        old = os.fstat(dirfd).st_mtime < cutoff
        emptied = True
        for name in filenames:
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff):
                emptied = False
                continue
            if not dry_run:
                try:
                    os.unlink(name, dir_fd=dirfd)
                except FileNotFoundError:
                    continue
            counts["files_deleted"] += 1
            counts["bytes_freed"] += info.st_size
        for name in dirnames:
            # A link to a directory is listed here but was never walked: it has no entry.
            if not goes.pop(os.path.normpath(os.path.join(relative, name)), False):
                emptied = False
                continue
            if not dry_run:
                try:
                    os.rmdir(name, dir_fd=dirfd)
                except OSError:  # something arrived in it meanwhile
                    emptied = False
                    continue
            counts["directories_removed"] += 1
        goes[relative] = emptied and old
    return counts


# --- Health-check history -------------------------------------------------------------------


def health_runs_cleanup(*, now: datetime.datetime | None = None, days: int | None = None,
                        dry_run: bool = False, batch_size: int = BATCH_SIZE,
                        budget: Budget | None = None) -> dict:
    """Health-check runs older than `days` (MAINTENANCE_HEALTH_RETENTION_DAYS)."""
    now = now or timezone.now()
    days = _at_least(days if days is not None else settings.MAINTENANCE_HEALTH_RETENTION_DAYS,
                     1, "The retention of health-check history (days)")
    cutoff = now - datetime.timedelta(days=days)
    return {"health_runs_deleted": rows_delete_in_batches(
        HealthCheckRun.objects.filter(checked_at__lt=cutoff), dry_run=dry_run,
        batch_size=batch_size, budget=budget)}


# --- All of it ------------------------------------------------------------------------------


@dataclass
class CleanupReport:
    """What cleanup_run did (or, dry, would do): counts per part; parts cut short by the time
    budget (the rest waits for the next run) or not started for it; failures per part."""

    dry_run: bool
    parts: dict[str, dict] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    exceptions: list[BaseException] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run, "parts": self.parts, "unfinished": self.unfinished,
                "errors": self.errors, "seconds": round(self.seconds, 3)}

    def raise_first_error(self) -> None:
        """For a job: fail (and so alert, or retry a transient error) after every part ran."""
        if self.exceptions:
            first = self.exceptions[0]
            if len(self.errors) > 1:
                first.add_note(f"Cleanup failures: {self.errors}")
            raise first


def _part_functions(now: datetime.datetime, dry_run: bool, batch_size: int,
                    budget: Budget) -> dict[str, Callable[[], dict]]:
    batched = dict(now=now, dry_run=dry_run, batch_size=batch_size, budget=budget)
    return {
        "sessions": lambda: practice_sessions_cleanup(**batched),
        "tokens": lambda: tokens_cleanup(**batched),
        "jobs": lambda: pruning.job_records_prune(days=settings.CLEANUP_JOB_RECORD_DAYS,
                                                  **batched),
        "email": lambda: stored_email_cleanup(**batched),
        "tmp": lambda: tmp_files_cleanup(now=now, dry_run=dry_run),
        "health": lambda: health_runs_cleanup(**batched),
    }


def cleanup_run(*, parts: Iterable[str] = PARTS, dry_run: bool = False,
                now: datetime.datetime | None = None, batch_size: int = BATCH_SIZE,
                time_limit_s: float | None = None) -> CleanupReport:
    """Run the named parts in PARTS order. A part that fails is recorded and the others still
    run; a part not started before `time_limit_s` ran out is left for the next run."""
    wanted = set(parts)
    unknown = wanted - set(PARTS)
    if unknown:
        raise ValueError(f"Unknown cleanup part(s): {', '.join(sorted(unknown))}; "
                         f"the parts are {', '.join(PARTS)}.")
    started = time.monotonic()
    now = now or timezone.now()
    budget = Budget.seconds(time_limit_s)
    report = CleanupReport(dry_run=dry_run)
    functions = _part_functions(now, dry_run, batch_size, budget)
    for part in PARTS:
        if part not in wanted:
            continue
        if budget.spent():
            report.unfinished.append(part)
            continue
        budget.cut_short = False
        try:
            report.parts[part] = functions[part]()
        except Exception as exc:  # noqa: BLE001  (recorded; the other parts still run)
            report.errors[part] = f"{type(exc).__name__}: {exc}"
            report.exceptions.append(exc)
        if budget.cut_short:
            report.unfinished.append(part)
    report.seconds = time.monotonic() - started
    return report
