import json

from django.core.management.base import BaseCommand, CommandError

from core.management.interaction import confirm, is_interactive
from maintenance.cleanup import PARTS, CleanupReport, cleanup_run


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def _many(n: int | None, one: str, more: str | None = None) -> str:
    if n is None:
        return f"uncounted {more or one + 's'}"
    return f"{n} {one if n == 1 else (more or one + 's')}"


def describe(part: str, counts: dict, dry_run: bool) -> str:
    """One line a person reads: what the part did, or would do."""
    deleted = "would be deleted" if dry_run else "deleted"
    if part == "sessions":
        abandoned = "would be abandoned" if dry_run else "abandoned"
        return (f"{_many(counts['abandoned'], 'idle practice session')} {abandoned}; "
                f"{_many(counts['deleted'], 'empty abandoned session')} {deleted} "
                "(attempts are never deleted)")
    if part == "tokens":
        return (f"{_many(counts['api_tokens_deleted'], 'expired or revoked API token')} and "
                f"{_many(counts['login_sessions_deleted'], 'expired login session')} {deleted}")
    if part == "jobs":
        return (f"{_many(counts['job_runs_deleted'], 'job run')}, "
                f"{_many(counts['task_results_deleted'], 'task result')}, "
                f"{_many(counts['presences_deleted'], 'cluster presence')} and "
                f"{_many(counts['alerts_deleted'], 'resolved alert')} {deleted}")
    if part == "email":
        emptied = "would be emptied" if dry_run else "emptied"
        entries = _many(counts["emails_emptied"], "email ledger entry", "email ledger entries")
        return (f"{entries} and {_many(counts['reports_emptied'], 'report')} {emptied} of "
                "their stored HTML (the ledger rows and the figures stay)")
    if part == "tmp":
        return (f"{_many(counts['files_deleted'], 'temporary file')} "
                f"({_size(counts['bytes_freed'])}) and "
                f"{_many(counts['directories_removed'], 'empty directory', 'empty directories')}"
                f" {deleted}")
    if part == "health":
        return f"{_many(counts['health_runs_deleted'], 'health-check run')} {deleted}"
    return json.dumps(counts)


class Command(BaseCommand):
    help = (
        "Delete what has served its time, in small batches (short transactions, so nothing "
        "waits on a lock for long), and print what went per part. Parts: sessions (open "
        "practice sessions idle for CLEANUP_SESSION_IDLE_HOURS become abandoned; abandoned "
        "sessions without attempts older than CLEANUP_ABANDONED_SESSION_DAYS are deleted; "
        "attempts are never deleted), tokens (API tokens expired or revoked more than "
        "CLEANUP_TOKEN_GRACE_DAYS ago, expired login sessions), jobs (job records older than "
        "CLEANUP_JOB_RECORD_DAYS), email (the stored HTML of emails sent and reports built "
        "more than CLEANUP_EMAIL_HTML_DAYS ago; the ledger rows and report figures stay), tmp "
        "(files under var/tmp older than CLEANUP_TMP_HOURS) and health (health-check runs older "
        "than MAINTENANCE_HEALTH_RETENTION_DAYS). The scheduled jobs do the same every night "
        "(session_cleanup 03:00, token_cleanup 03:30, job_records_prune 03:45, tmp_cleanup "
        "05:30). --dry-run counts what would go and changes nothing. Asks first on a terminal; "
        "--no-input for scripts. Exit status 1 when a part failed, 2 for bad usage."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--only", metavar="PARTS",
            help=f"Comma list of the parts to run (default: all): {','.join(PARTS)}.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count what would go; change nothing.")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print the counts as JSON.")
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="Never ask: for scripts and cron.")

    def handle(self, *args, only=None, dry_run=False, as_json=False, interactive=True,
               **options):
        parts = self._parts(only)
        if not dry_run and interactive:
            if not is_interactive():
                raise CommandError(
                    "cleanup deletes data past its retention and asks first: run it on a "
                    "terminal, or pass --no-input (or --dry-run to only count).", returncode=2)
            preview = cleanup_run(parts=parts, dry_run=True)
            self._print(preview, as_json=False)
            if not confirm("Go ahead?"):
                raise CommandError("Nothing changed.")
        report = cleanup_run(parts=parts, dry_run=dry_run)
        self._print(report, as_json=as_json)
        if report.errors:
            raise SystemExit(1)

    def _parts(self, only: str | None) -> list[str]:
        if only is None:
            return list(PARTS)
        chosen = [part.strip() for part in only.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in PARTS]
        if unknown or not chosen:
            raise CommandError(
                f"--only takes a comma list of {', '.join(PARTS)}"
                + (f"; not {', '.join(unknown)}." if unknown else "."), returncode=2)
        return chosen

    def _print(self, report: CleanupReport, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
            return
        for part in PARTS:
            if part in report.parts:
                self.stdout.write(f"{part:9} {describe(part, report.parts[part], report.dry_run)}")
            if part in report.errors:
                self.stdout.write(self.style.ERROR(f"{part:9} failed: {report.errors[part]}"))
        if report.dry_run:
            verdict = "Dry run: nothing was changed"
        elif report.errors:
            verdict = f"Cleanup failed in {', '.join(report.errors)}; the other parts are done"
        else:
            verdict = "Cleanup done"
        self.stdout.write(f"{verdict} ({report.seconds:.1f} s).")
