import datetime
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.management.interaction import confirm, is_interactive
from core.models import Question, SeedRecord
from core.seeding import (
    DEMO_DOMAIN,
    SeedDataError,
    SeedParameters,
    seed_conflicts,
    seed_default_end_date,
    seed_recorded_end_date,
    seed_reset,
    seed_world,
)

PARTS = [SeedRecord.Part.QUESTIONS, SeedRecord.Part.USERS, SeedRecord.Part.ACTIVITY]


def non_negative(value):
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def positive(value):
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


non_negative.__name__ = "non-negative whole number"
positive.__name__ = "positive whole number"


class Command(BaseCommand):
    help = (
        "Build a reproducible demo world: the seed question bank (core/seed/questions), three "
        "named demo students plus --users generated ones in several time zones, and --days of "
        "practice activity drawn from a latent-ability model, as the world stood at 00:00 UTC "
        "today. The demo students cannot log in (there is no student interface yet): their "
        "activity feeds analytics, the emails and the read API; to call the API as one, issue "
        "it a token (manage.py api_token issue, or in the admin). Running it again with the same flags "
        "changes nothing; other flags need --reset (which asks first). Demo data only: it "
        "refuses to run with DEBUG off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=non_negative, default=20,
                            help="Generated students besides the three named ones (default 20).")
        parser.add_argument("--days", type=positive, default=30,
                            help="Days of activity, ending at --end-date (default 30).")
        parser.add_argument("--end-date", type=datetime.date.fromisoformat,
                            help="Last day of activity, YYYY-MM-DD (default: the recorded one, "
                            "else yesterday, UTC). Nothing is generated after 00:00 UTC today, "
                            "so the same flags give the same world at any hour of the day.")
        parser.add_argument("--seed", type=int, default=1,
                            help="Random seed; the same seed and end date give the same data.")
        parser.add_argument("--only", choices=[p.value for p in PARTS],
                            help="Seed one part only: questions, users or activity.")
        parser.add_argument("--reset", action="store_true",
                            help="Delete the demo world first (asks unless --no-input).")
        parser.add_argument("--dry-run", action="store_true",
                            help="With --reset: show what would be deleted, change nothing.")
        parser.add_argument("--if-empty", action="store_true",
                            help="Do nothing when the database already holds questions.")
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="Never ask: for scripts.")
        parser.add_argument("--force", action="store_true",
                            help="Run even with DEBUG off (demo data in a production database).")

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_data writes demo data and refuses to run with DEBUG off; "
                "set DEBUG=on, or pass --force if you really mean it.")
        if options["dry_run"] and not options["reset"]:
            raise CommandError("--dry-run goes with --reset.", returncode=2)
        if options["if_empty"] and Question.objects.exists():
            self.stdout.write("The database already holds questions: nothing to seed (--if-empty).")
            return
        interactive = options["interactive"] and is_interactive()
        end_date = (options["end_date"] or seed_recorded_end_date()
                    or seed_default_end_date(timezone.now().date()))
        params = SeedParameters(users=options["users"], days=options["days"],
                                end_date=end_date, seed=options["seed"])
        parts = [SeedRecord.Part(options["only"])] if options["only"] else PARTS

        if options["reset"]:
            if not self._reset(options, interactive):
                return
        else:
            conflicts = seed_conflicts(parts, params)
            if conflicts:
                described = "; ".join(str(c) for c in conflicts)
                if not interactive:
                    raise CommandError(
                        f"The demo world differs from these flags: {described}. Run again with "
                        "--reset to delete it and seed anew.", returncode=2)
                if not confirm(f"{described}. Delete the demo world and seed anew?"):
                    raise CommandError("Nothing changed.")
                seed_reset(dry_run=False)

        started = time.monotonic()
        try:
            report = seed_world(params, parts, progress=self._progress)
        except SeedDataError as exc:
            raise CommandError(str(exc)) from None
        self._summarise(report, params, time.monotonic() - started)

    def _reset(self, options, interactive) -> bool:
        preview = seed_reset(dry_run=True)
        described = (
            f"{preview.students} demo students with {preview.sessions} sessions and "
            f"{preview.attempts} attempts, {preview.questions} seed-bank questions and "
            f"{preview.papers} papers; {preview.questions_kept} seed-bank questions that real "
            "students answered are kept"
        )
        if options["dry_run"]:
            self.stdout.write(f"Would delete {described}. Nothing changed (--dry-run).")
            return False
        if options["interactive"]:
            if not interactive:
                raise CommandError(
                    "--reset deletes data and needs confirmation: run it on a terminal, or pass "
                    "--no-input.", returncode=2)
            if not confirm(f"Delete {described}?"):
                raise CommandError("Nothing changed.")
        seed_reset(dry_run=False)
        self.stdout.write(f"Deleted {described}.")
        return True

    def _progress(self, done, total, attempts):
        if sys.stdout.isatty():
            self.stdout.write(f"\rActivity: {done}/{total} students, {attempts:,} attempts",
                              ending="")
            if done == total:
                self.stdout.write("")
        elif done == total or done % 50 == 0:
            self.stdout.write(f"Activity: {done}/{total} students, {attempts:,} attempts")

    def _summarise(self, report, params, seconds):
        if report.skipped_parts and not (
            report.questions_added or report.students_created or report.attempts_created
        ):
            self.stdout.write(
                "Already seeded with these parameters "
                f"({', '.join(report.skipped_parts)}): nothing changed.")
        self.stdout.write(self.style.SUCCESS(
            f"Seeded in {seconds:.1f}s: {report.questions_added} questions added "
            f"({report.questions_unchanged} already present), {report.students_created} "
            f"students, {report.sessions_created} sessions, {report.attempts_created} attempts "
            f"(seed {params.seed}, {params.days} days to {params.end_date})."))
        if report.students_created:
            generated = report.students_created - len(report.named_students_created)
            named = ", ".join(report.named_students_created) or "none new"
            self.stdout.write(
                f"Demo students: {named}, and {generated} generated (studentNNNN@{DEMO_DOMAIN}).\n"
                "They cannot log in: their activity feeds analytics, the emails and the read "
                "API. To call the API as one, issue it a token: manage.py api_token issue "
                "--user EMAIL --name NAME (or in the admin: API tokens, Add).")
