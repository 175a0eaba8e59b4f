import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from maintenance.backups import archive, crypto, services
from maintenance.backups.engines import BackupError


def _size(value) -> str:
    return filesizeformat(value) if value is not None else "-"


class Command(BaseCommand):
    help = (
        "Back up and restore the database (docs/backups.md). "
        "create: dump it now into BACKUP_DIR (zstd, encrypted when BACKUP_ENCRYPTION_KEY is "
        "set; the daily job does this at 04:00). "
        "list [--json] [--offsite]: the backups and their state. "
        "verify NAME | --all: checksum, decrypt, decompress, restore into a scratch database "
        "and compare row counts with the manifest. "
        "restore NAME: replace the database with a backup (refused while workers run unless "
        "--force; asks first unless --no-input; --dry-run says what it would do; takes a safety "
        "backup first; pauses student email). "
        "cleanup: delete backups past retention (BACKUP_KEEP_*; --dry-run lists them). "
        "fetch NAME: bring a backup from the off-site storage. "
        "reset-vectors: clear the vector index after a restore when Chroma was down. "
        "keygen: print a new BACKUP_ENCRYPTION_KEY. "
        "Exit status: 0 done, 1 failed, 2 bad usage."
    )
    # A restore must work when something else is misconfigured (it may be the way out).
    requires_system_checks = []

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        actions.add_parser("create", help="Back up the database now.")

        listing = actions.add_parser("list", help="List the backups, newest first.")
        listing.add_argument("--json", action="store_true", dest="as_json",
                             help="Print JSON for scripts (format: docs/backups.md).")
        listing.add_argument("--offsite", action="store_true",
                             help="List the off-site storage's backups instead.")

        verify = actions.add_parser("verify", help="Verify backups by a scratch restore.")
        verify.add_argument("name", nargs="?", help="The backup's file name.")
        verify.add_argument("--all", action="store_true", dest="every",
                            help="Verify every backup in BACKUP_DIR.")
        verify.add_argument("--offsite", action="store_true",
                            help="Fetch NAME from the off-site storage first.")

        restore = actions.add_parser("restore", help="Replace the database with a backup.")
        restore.add_argument("name", help="The backup's file name (see `list`).")
        restore.add_argument("--force", action="store_true",
                             help="Restore even while a qcluster's heartbeat is fresh.")
        restore.add_argument("--dry-run", action="store_true",
                             help="Check the backup and say what would be done; change nothing.")
        restore.add_argument("--offsite", action="store_true",
                             help="Fetch NAME from the off-site storage first.")
        self._no_input(restore)

        cleanup = actions.add_parser("cleanup", help="Delete backups past retention.")
        cleanup.add_argument("--dry-run", action="store_true",
                             help="List what would be deleted and kept; delete nothing.")
        self._no_input(cleanup)

        fetch = actions.add_parser("fetch", help="Copy a backup from the off-site storage.")
        fetch.add_argument("name")
        actions.add_parser("reset-vectors",
                           help="Make every embedding pending and clear the vector index.")
        actions.add_parser("keygen", help="Print a new random encryption key.")

    @staticmethod
    def _no_input(parser):
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="Do not ask for confirmation (for scripts).")

    def handle(self, *args, action, **options):
        try:
            getattr(self, "handle_" + action.replace("-", "_"))(**options)
        except BackupError as exc:
            raise CommandError(str(exc)) from None

    # --- actions -------------------------------------------------------------------------------

    def handle_create(self, **options):
        record = services.backup_create(trigger="command")
        encryption = (f"encrypted (key {record.key_fingerprint[:12]}…)" if record.encrypted
                      else "NOT encrypted (set BACKUP_ENCRYPTION_KEY)")
        self.stdout.write(self.style.SUCCESS(
            f"Created {record.name}: {_size(record.size_bytes)}, {encryption}, "
            f"{record.manifest.get('tables')} tables, {record.manifest.get('rows')} rows, "
            f"in {record.duration_ms / 1000:.1f} s."))
        self.stdout.write(f"In {archive.backup_dir()}. Verify it: manage.py backup_db verify "
                          f"{record.name}")

    def handle_list(self, *, as_json=False, offsite=False, **options):
        if offsite:
            names = services.backup_offsite_list()
            if as_json:
                self.stdout.write(json.dumps({"offsite": names}, indent=2))
            else:
                self.stdout.write("\n".join(names) or "No backups in the off-site storage.")
            return
        listings = services.backup_list()
        if as_json:
            self.stdout.write(json.dumps({"backup_dir": str(archive.backup_dir()),
                                          "backups": [item.as_dict() for item in listings]},
                                         indent=2))
            return
        if not listings:
            self.stdout.write(f"No backups in {archive.backup_dir()}.")
            return
        for item in listings:
            encrypted = "encrypted" if item.encrypted else "plain"
            line = (f"{item.name}  {item.status:10} {_size(item.size_bytes):>9}  {encrypted:9}  "
                    f"{item.created_at[:19]}")
            if item.problem:
                line += f"  ({item.problem})"
            self.stdout.write(line)

    def handle_verify(self, *, name=None, every=False, offsite=False, **options):
        if bool(name) == every:
            raise CommandError("Give a backup's name or --all (not both).", returncode=2)
        if offsite:
            if every:
                raise CommandError("--offsite takes a name, not --all.", returncode=2)
            services.backup_offsite_fetch(name)
        names = [item.name for item in services.backup_list() if item.file_present] \
            if every else [name]
        failed = 0
        for each in names:
            result = services.backup_verify(each)
            style = self.style.SUCCESS if result.ok else self.style.ERROR
            self.stdout.write(style(f"{'OK    ' if result.ok else 'FAILED'} {each}: "
                                    f"{result.detail}"))
            failed += not result.ok
        if failed:
            raise CommandError(f"{failed} of {len(names)} backups failed verification.")
        if not names:
            self.stdout.write("No backups to verify.")

    def handle_restore(self, *, name, force=False, dry_run=False, offsite=False,
                       interactive=True, **options):
        if interactive and not dry_run and not sys.stdin.isatty():
            raise CommandError("A restore asks for confirmation, and there is no terminal to "
                               "ask on: pass --no-input to restore without asking.",
                               returncode=2)
        if offsite:
            services.backup_offsite_fetch(name)
        plan = services.backup_restore(name, force=force, dry_run=True)
        for line in plan.steps:
            self.stdout.write(line)
        if dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was changed."))
            return
        if interactive:
            answer = input("This replaces every table of the database. Type 'restore' to go "
                           "on: ")
            if answer.strip().lower() != "restore":
                raise CommandError("Cancelled: nothing was changed.")
        self.stdout.write("Restoring …")
        shown = set(plan.steps)
        result = services.backup_restore(
            name, force=force,
            report=lambda line: line in shown or self.stdout.write("  " + line))
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(warning))
        self.stdout.write("Rows per table now:")
        for table, count in sorted(result.row_counts.items()):
            self.stdout.write(f"  {table}: {count}")
        self.stdout.write(self.style.SUCCESS(
            f"Restored {name} in {result.duration_ms / 1000:.1f} s. The database as it was is "
            f"in {result.safety_backup}. Student email is paused: resume it once you have "
            "checked."))

    def handle_cleanup(self, *, dry_run=False, interactive=True, **options):
        plan = services.backup_cleanup(dry_run=True)
        for kept, reasons in plan.kept.items():
            self.stdout.write(f"keep    {kept} ({', '.join(reasons)})")
        for deleted in plan.deleted:
            self.stdout.write(f"delete  {deleted}")
        for skipped in plan.skipped:
            self.stdout.write(f"skip    {skipped}")
        if dry_run or not plan.deleted:
            self.stdout.write(f"{len(plan.deleted)} backups would be deleted." if dry_run
                              else "Nothing to delete.")
            return
        if interactive:
            if not sys.stdin.isatty():
                raise CommandError("cleanup deletes backups and asks first, and there is no "
                                   "terminal to ask on: pass --no-input (or --dry-run).",
                                   returncode=2)
            if input(f"Delete {len(plan.deleted)} backups? [y/N] ").strip().lower() != "y":
                raise CommandError("Cancelled: nothing was deleted.")
        done = services.backup_cleanup(dry_run=False)
        self.stdout.write(self.style.SUCCESS(f"Deleted {len(done.deleted)} backups."))

    def handle_fetch(self, *, name, **options):
        path = services.backup_offsite_fetch(name)
        self.stdout.write(self.style.SUCCESS(f"Fetched {name} into {path.parent}; its checksum "
                                             "matches its manifest."))

    def handle_reset_vectors(self, **options):
        self.stdout.write(services.backup_vectors_reset())

    def handle_keygen(self, **options):
        self.stdout.write(crypto.key_generate())
        self.stderr.write("Put it in BACKUP_ENCRYPTION_KEY (and keep a copy outside this "
                          "machine: without it no encrypted backup can be restored). To rotate, "
                          "move the old key to BACKUP_DECRYPTION_KEYS.")
