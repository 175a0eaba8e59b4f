import json

from django.core.management.base import BaseCommand, CommandError

from analytics import regrading
from core.models import Question


class Command(BaseCommand):
    help = (
        "Re-mark a question's attempts against its answer key as it is now, and recompute "
        "what derives from them (session scores, rollups, question statistics, insights, "
        "achievements), recorded as a Regrade. --dry-run says what would change and changes "
        "nothing. Editing a key in the admin queues a regrade by itself. Exit status 2 for an "
        "unknown question."
    )

    def add_arguments(self, parser):
        parser.add_argument("--question", type=int, required=True, metavar="ID")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would change; change nothing")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")

    def handle(self, *args, **options):
        question = Question.objects.filter(pk=options["question"]).first()
        if question is None:
            raise CommandError(f"No question with id {options['question']}.", returncode=2)
        if options["dry_run"]:
            outcome = regrading.regrade_preview(question)
        else:
            regrade = regrading.regrade_request(question.pk)
            outcome = regrading.regrade_run(regrade)
        summary = outcome.summary()
        if options["json"]:
            self.stdout.write(json.dumps({"question": question.pk,
                                          "dry_run": options["dry_run"], **summary}, indent=2))
            return
        verb = "would change" if options["dry_run"] else "changed"
        self.stdout.write(
            f"Question {question.pk}: {summary['attempts_changed']} attempts {verb} "
            f"({summary['became_correct']} now right, {summary['became_wrong']} now wrong), "
            f"in {summary['sessions']} sessions, for {summary['students']} students on "
            f"{summary['dates']} local dates"
            + (f" ({summary['first_date']} … {summary['last_date']})" if summary["dates"] else "")
            + ".")
        self.stdout.write(
            f"Achievements: {summary['achievements_withdrawn']} "
            f"{'would be ' if options['dry_run'] else ''}withdrawn, "
            f"{summary['achievements_earned']} {'would be ' if options['dry_run'] else ''}"
            "earned.")
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
