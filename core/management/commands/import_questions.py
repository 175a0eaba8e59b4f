from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.question_files import read_question_file
from core.services import catalogue_topics, questions_import


class Command(BaseCommand):
    help = (
        "Import past-paper questions from JSON or CSV files (formats: docs/question-files.md). "
        "Every problem is reported with its file, entry or line, and field; a file with problems "
        "imports nothing unless --skip-invalid. Idempotent: a question already present (same "
        "subject, type, text and choices) is left unchanged. Exit status 1 when anything was "
        "rejected."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument("--skip-invalid", action="store_true",
                            help="Import the valid entries of a file that has invalid ones.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Validate and count, write nothing.")

    def handle(self, *args, files, skip_invalid, dry_run, **options):
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CommandError(f"No such file: {', '.join(missing)}.", returncode=2)
        catalogue = catalogue_topics()
        if not catalogue:
            raise CommandError("The catalogue is empty: run `manage.py init_db` first.")

        added = unchanged = rejected = 0
        for path in files:
            report = read_question_file(path, catalogue)
            for problem in report.problems:
                self.stderr.write(f"  {problem}")
            if report.problems and not skip_invalid:
                rejected += len(report.records) + len(
                    {p.where for p in report.problems})
                self.stderr.write(self.style.ERROR(
                    f"{path}: {len(report.problems)} problems; nothing imported from this file "
                    "(fix them, or pass --skip-invalid to import the valid entries)."))
                continue
            rejected += len({p.where for p in report.problems})
            result = questions_import(
                report.records, source=f"import: {path.name}", dry_run=dry_run)
            added += result.added
            unchanged += result.unchanged
            self.stdout.write(
                f"{path}: {result.added} {'to add' if dry_run else 'added'}, "
                f"{result.unchanged} unchanged, {len({p.where for p in report.problems})} rejected.")

        verb = "would be added" if dry_run else "added"
        summary = f"{added} questions {verb}, {unchanged} unchanged, {rejected} rejected."
        if dry_run:
            summary += " Nothing was written (--dry-run)."
        if rejected:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
