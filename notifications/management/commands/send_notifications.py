import datetime
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from core.models import User
from notifications.models import Notification
from notifications.services import notifications_send_kind

STUDENT_KINDS = [str(k) for k in Notification.STUDENT_KINDS]


class Command(BaseCommand):
    help = (
        "Send one kind of student email now instead of at each student's local send time: "
        "daily_summary (the summary of --date, default each student's last closed local day), "
        "study_reminder (of --date, default each student's local today), weekly_report (of the "
        "ISO week holding --date, default each student's last closed week) or achievement "
        "(those not announced yet). Every rule still applies: preferences, undeliverable "
        "addresses, quiet hours, nothing to say, the pause, and the ledger's once per student, "
        "kind and period (what was sent is never sent again: use the admin's Resend). Prints "
        "to whom it sends and why the others are skipped; --dry-run only prints. The "
        "dispatcher (every 15 minutes) does this by itself. docs/notifications.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=STUDENT_KINDS)
        parser.add_argument("--date", metavar="YYYY-MM-DD",
                            help="the local date (or a date in the ISO week) it is about")
        parser.add_argument("--user", action="append", metavar="EMAIL", dest="users",
                            help="only this student (repeat for more)")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be sent and skipped; send and record nothing")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args, **options):
        day = None
        if options["date"]:
            try:
                day = datetime.date.fromisoformat(options["date"])
            except ValueError:
                raise CommandError(f"--date {options['date']!r} is not a date (YYYY-MM-DD).",
                                   returncode=2) from None
        emails = None
        if options["users"]:
            emails = []
            for email in options["users"]:
                try:
                    validate_email(email.strip())
                except ValidationError:
                    raise CommandError(f"--user {email!r} is not an email address.",
                                       returncode=2) from None
                user = User.objects.filter(email__iexact=email.strip()).first()
                if user is None or not hasattr(user, "profile"):
                    raise CommandError(f"No student with the email {email.strip()}.",
                                       returncode=2)
                emails.append(user.email)
        preview = notifications_send_kind(options["kind"], day=day, emails=emails,
                                          dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps({
                "kind": options["kind"], "dry_run": options["dry_run"],
                "counts": preview.counts, "result": preview.result,
                "emails": [{"to": a, "period": p, "outcome": w} for a, p, w in preview.lines],
            }, indent=2))
            return
        for address, period, what in preview.lines:
            self.stdout.write(f"{address:<40} {period:<24} {what}")
        counts = ", ".join(f"{n} {key}" for key, n in sorted(preview.counts.items())) or "none"
        self.stdout.write(f"{options['kind']}: {counts}"
                          + (" (dry run: nothing sent or recorded)" if options["dry_run"] else ""))
        if preview.result:
            done = ", ".join(f"{n} {key}" for key, n in sorted(preview.result.items()))
            self.stdout.write(f"Outcome: {done}")
            if preview.result.get("failed") or preview.result.get("unknown"):
                raise CommandError("Some emails were not sent: see the ledger in the admin "
                                   "(Notifications).", returncode=1)
