from django.core.management.base import BaseCommand, CommandError

from core.jobs.schedules import schedules_sync


class Command(BaseCommand):
    help = (
        "Write the table of periodic jobs (pastq/schedules.py) into django-q's schedules. "
        "Idempotent; init_db runs it on every deploy. It owns the managed rows (named 'pastq:…'): "
        "their task, cron, arguments and cluster, set to match PASTQ_QUEUE_ROUTING; it never "
        "touches their paused state, removes managed rows that left the table, and leaves "
        "hand-made schedules alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Show what would change, change nothing.")

    def handle(self, *args, dry_run=False, **options):
        try:
            changes = schedules_sync(dry_run=dry_run)
        except ValueError as exc:
            raise CommandError(f"The schedule table is wrong: {exc}") from None
        for line in changes:
            self.stdout.write(f"  {'would ' if dry_run else ''}{line}")
        if not changes:
            self.stdout.write("Schedules are up to date.")
        else:
            self.stdout.write(f"{len(changes)} schedule changes"
                              f"{' (dry run: nothing written)' if dry_run else ''}.")
