import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.item_analysis import ItemAnalysis, item_analysis
from core.models import ExamPaper, Subject


def _number(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _seconds(milliseconds) -> str:
    return "—" if milliseconds is None else f"{milliseconds / 1000:.1f}"


class Command(BaseCommand):
    help = (
        "Item analysis of a subject's questions from students' first attempts, computed now "
        "(not read from the last scheduled run): per question n, facility, discrimination, "
        "mean and median time, skip rate and review flags, then each paper's Cronbach's alpha, "
        "mean and SD. --paper narrows to one paper; --json prints it for scripts (with the "
        "per-option breakdown). Changes nothing. Exit status 2 for an unknown subject or a "
        "paper not in it. docs/analytics.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subject", required=True, metavar="CODE",
                            help="subject code, e.g. MATH")
        parser.add_argument("--paper", type=int, metavar="ID",
                            help="only this exam paper's questions and statistics")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args, **options):
        code = options["subject"].strip().upper()
        subject = Subject.objects.filter(code=code).first()
        if subject is None:
            known = ", ".join(Subject.objects.order_by("code").values_list("code", flat=True))
            raise CommandError(f"No subject with the code '{code}' (known: {known or 'none'}).",
                               returncode=2)
        paper = None
        if options["paper"] is not None:
            paper = ExamPaper.objects.filter(pk=options["paper"]).first()
            if paper is None:
                raise CommandError(f"No paper with id {options['paper']}.", returncode=2)
            if paper.subject_id != subject.pk:
                raise CommandError(
                    f"Paper {paper.pk} ({paper}) is not a paper of {subject.code}.",
                    returncode=2)
        analysis = item_analysis(subject, paper=paper)
        if options["json"]:
            self.stdout.write(json.dumps(analysis.as_json(), indent=2))
        else:
            self._print(analysis)

    def _print(self, analysis: ItemAnalysis):
        subject, write = analysis.subject, self.stdout.write
        scope = f", paper {analysis.paper.pk} ({analysis.paper})" if analysis.paper else ""
        write(f"{subject.code} {subject.name}{scope}: {len(analysis.questions)} questions, "
              f"first attempts as of {analysis.computed_at:%Y-%m-%d %H:%M} UTC.")
        write(f"Flags need n ≥ {settings.ANALYTICS_MIN_N}; the discrimination counts students "
              f"with ≥ {settings.ANALYTICS_MIN_OTHER_ATTEMPTS} other first attempts in the "
              f"subject (n disc.). Times in seconds.")
        header = ("question", "n", "facility", "discrim.", "n disc.", "mean s", "median s",
                  "skip", "paper", "flags")
        rows = [(str(q.question_id), str(q.n), _number(q.facility, ".2f"),
                 _number(q.discrimination, ".2f"), str(q.n_discrimination),
                 _seconds(q.mean_time_ms), _seconds(q.median_time_ms),
                 _number(q.skip_rate, ".0%"), str(q.paper_id or "—"),
                 ", ".join(q.flags) or "—")
                for q in analysis.questions]
        self._table(header, rows)
        write("")
        write("Papers (students whose first attempts cover every question; Cronbach's alpha, "
              "mean and population SD of their scores):")
        header = ("paper", "questions", "students", "alpha", "mean", "sd", "name")
        names = {p.pk: str(p) for p in ExamPaper.objects.filter(
            pk__in=[p.paper_id for p in analysis.papers]).select_related("subject")}
        rows = [(str(p.paper_id), str(p.n_questions), str(p.n_students),
                 _number(p.alpha, ".3f"), _number(p.mean, ".2f"), _number(p.sd, ".2f"),
                 names.get(p.paper_id, ""))
                for p in analysis.papers]
        self._table(header, rows)

    def _table(self, header, rows):
        if not rows:
            self.stdout.write("  (none)")
            return
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        # Figures right-aligned, the last column (flags, names) left-aligned.
        for row in [header, *rows]:
            cells = [cell.rjust(width) for cell, width in zip(row[:-1], widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())
