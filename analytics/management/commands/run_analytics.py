import datetime
import json

from django.core.management.base import BaseCommand, CommandError

from analytics import runs

MAX_BACKFILL_DAYS = 3660


def _date(value: str, flag: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{flag} {value!r} is not a date: use YYYY-MM-DD.",
                           returncode=2) from None


class Command(BaseCommand):
    help = (
        "Run learning analytics now, as the hourly schedule does: the daily, per-subject and "
        "weekly rollups of every local day still open somewhere, spaced-review cards, question "
        "statistics, insights of the students whose day has closed, and achievements. --date D "
        "or --from/--to recompute those local dates instead (a backfill; achievements it finds "
        "are dated when their rule first held, so old ones are not announced); --all every "
        "date with attempts. --only picks "
        "parts. Exit status 2 for bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument("--date", metavar="YYYY-MM-DD", help="one local date")
        parser.add_argument("--from", dest="start", metavar="YYYY-MM-DD",
                            help="first local date of a backfill (with --to)")
        parser.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                            help="last local date of a backfill, inclusive (with --from)")
        parser.add_argument("--all", action="store_true", dest="all_dates",
                            help="every local date from the first attempt to the last")
        parser.add_argument("--if-empty", action="store_true",
                            help="do nothing when rollups exist already (make run uses it "
                                 "after seeding)")
        parser.add_argument("--only", metavar="PART[,PART]",
                            help=f"only these parts: {', '.join(runs.PARTS)} (default: all)")
        parser.add_argument("--json", action="store_true",
                            help="print what was written as JSON")

    def handle(self, *args, **options):
        parts = runs.PARTS
        if options["only"]:
            parts = tuple(p.strip() for p in options["only"].split(",") if p.strip())
            unknown = sorted(set(parts) - set(runs.PARTS))
            if unknown or not parts:
                raise CommandError(
                    f"--only: unknown part {', '.join(unknown) or '(none)'}; choose from "
                    f"{', '.join(runs.PARTS)}.", returncode=2)
        dates = self._dates(options)
        if options["if_empty"] and runs.rollups_exist():
            self.stdout.write("Rollups exist already: nothing to do (--if-empty).")
            return
        if options["all_dates"]:
            dates = runs.attempt_dates()
            if not dates:
                self.stdout.write("No attempts yet: nothing to do.")
                return
        run = runs.analytics_run(dates=dates, parts=parts)
        if options["json"]:
            self.stdout.write(json.dumps(run.as_dict(), indent=2))
            return
        if run.dates:
            span = (run.dates[0].isoformat() if len(run.dates) == 1
                    else f"{run.dates[0]} … {run.dates[-1]} ({len(run.dates)} days)")
            self.stdout.write(f"Local dates: {span}")
        if run.rollups is not None:
            r = run.rollups
            self.stdout.write(f"Rollups: {r.daily_rows} daily rows, {r.subject_rows} subject "
                              f"rows, {r.weekly_rows} weekly rows written.")
        if run.review is not None:
            v = run.review
            self.stdout.write(f"Spaced review: {v.attempts_applied} answers applied, "
                              f"{v.cards_created} cards created, {v.cards_updated} updated.")
        if run.questions is not None:
            self.stdout.write(f"Question statistics: {run.questions} questions.")
        if run.insights is not None:
            self.stdout.write(f"Insights: {run.insights} students.")
        if run.achievements is not None:
            self.stdout.write(f"Achievements: {run.achievements} earned or reinstated.")
        if run.reports is not None:
            self.stdout.write(f"Reports: {run.reports} built.")

    def _dates(self, options) -> list[datetime.date] | None:
        one, start, end = options["date"], options["start"], options["end"]
        if options["all_dates"] and (one or start or end):
            raise CommandError("--all takes no --date, --from or --to.", returncode=2)
        if one and (start or end):
            raise CommandError("Give --date, or --from and --to, not both.", returncode=2)
        if one:
            return [_date(one, "--date")]
        if bool(start) != bool(end):
            raise CommandError("--from and --to go together.", returncode=2)
        if not start:
            return None
        first, last = _date(start, "--from"), _date(end, "--to")
        if last < first:
            raise CommandError(f"--to {last} is before --from {first}.", returncode=2)
        days = (last - first).days + 1
        if days > MAX_BACKFILL_DAYS:
            raise CommandError(f"{days} days is more than {MAX_BACKFILL_DAYS}: backfill in "
                               "parts.", returncode=2)
        return runs.date_range(first, last)
