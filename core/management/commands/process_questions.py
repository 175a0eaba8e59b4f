import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core import processing
from core.ai import providers
from core.ai.types import ProviderUnavailable
from core.jobs import enqueue
from core.management.interaction import is_interactive
from core.models import Question, QuestionStep, Subject

STEPS = [step.value for step in processing.STEP_ORDER]
MENU = [
    ("Process every pending step", {}),
    ("Show the status of every step", {"status": True}),
    ("Embeddings and similar questions only", {"steps": "embedding,similar"}),
    ("Reprocess everything (--force)", {"force": True}),
    ("Queue the work for the workers (--async)", {"async": True}),
]


class Command(BaseCommand):
    help = (
        "Run the AI pipeline over the question bank: embeddings (into the Chroma index), "
        "metadata, explanations (Gemini only; offline they are skipped with the reason "
        "no_generator) and similar questions. Processes what is pending, in batches, here "
        "(or queues the batches for the workers with --async). The schedule runs it every 10 "
        "minutes. Exit status 1 when some questions failed; 2 for an unknown step or subject."
    )

    def add_arguments(self, parser):
        parser.add_argument("--steps", help=f"comma list of steps (default: all): "
                                             f"{', '.join(STEPS)}")
        parser.add_argument("--subject", metavar="CODE", help="only this subject (e.g. MATH)")
        parser.add_argument("--ids", metavar="ID,ID", help="only these question ids")
        parser.add_argument("--limit", type=int, help="at most this many questions per step")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="questions per batch (default PASTQ_PROCESSING_BATCH_SIZE)")
        parser.add_argument("--force", action="store_true",
                            help="reprocess finished steps too")
        parser.add_argument("--async", action="store_true", dest="run_async",
                            help="queue batches for the workers instead of running them here")
        parser.add_argument("--status", action="store_true",
                            help="print counts per step and status, and the recent failures")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be processed; change nothing")

    def handle(self, *args, **options):
        if is_interactive() and not any(
                options[name] for name in ("steps", "subject", "ids", "limit", "batch_size",
                                           "force", "run_async", "status", "dry_run")):
            options.update(self._menu())
        steps = self._steps(options["steps"])
        subject = self._subject(options["subject"])
        ids = self._ids(options["ids"])
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.", returncode=2)
        batch_size = options["batch_size"] or settings.PASTQ_PROCESSING_BATCH_SIZE
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.", returncode=2)

        if options["status"]:
            self._print_status(subject)
            return
        if options["dry_run"]:
            self._print_plan(steps, subject, ids, options["force"])
            return
        if options["force"]:
            processing.steps_create_missing(ids)
            for step in steps:
                processing.steps_force(step, question_ids=ids, subject=subject)
        if options["run_async"]:
            self._queue(steps, subject, ids, limit, batch_size)
            return
        self._run(steps, subject, ids, limit, batch_size)

    # --- Arguments ----------------------------------------------------------------------------

    def _menu(self) -> dict:
        self.stdout.write("What should process_questions do?")
        for number, (label, _) in enumerate(MENU, 1):
            self.stdout.write(f"  {number}. {label}")
        answer = input("Choose a number (Enter: 1): ").strip() or "1"
        if not answer.isdigit() or not 1 <= int(answer) <= len(MENU):
            raise CommandError(f"{answer!r} is not one of the choices.", returncode=2)
        chosen = dict(MENU[int(answer) - 1][1])
        if "async" in chosen:
            chosen["run_async"] = chosen.pop("async")
        return chosen

    @staticmethod
    def _steps(value) -> list[str]:
        if not value:
            return STEPS
        steps = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in steps if s not in STEPS]
        if unknown or not steps:
            named = ", ".join(repr(step) for step in unknown) or repr(value)
            raise CommandError(f"Unknown step {named}; the steps are {', '.join(STEPS)}.",
                               returncode=2)
        return steps

    @staticmethod
    def _subject(code) -> str | None:
        if code is None:
            return None
        code = code.strip().upper()
        if not Subject.objects.filter(code=code).exists():
            known = ", ".join(Subject.objects.values_list("code", flat=True)) or "none yet"
            raise CommandError(f"There is no subject {code!r} (subjects: {known}).",
                               returncode=2)
        return code

    @staticmethod
    def _ids(value) -> list[int] | None:
        if value is None:
            return None
        try:
            ids = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise CommandError(f"--ids takes question ids separated by commas, not {value!r}.",
                               returncode=2) from None
        missing = sorted(set(ids) - set(Question.objects.filter(pk__in=ids)
                                        .values_list("pk", flat=True)))
        if missing:
            raise CommandError(f"No question has the id {', '.join(map(str, missing))}.",
                               returncode=2)
        return ids

    # --- Doing --------------------------------------------------------------------------------

    def _run(self, steps, subject, ids, limit, batch_size):
        started = time.monotonic()
        embedder, generator = providers.embedder(), providers.generator()
        self.stdout.write(f"Embedder: {embedder.name} ({embedder.dimension} dimensions); "
                          f"generator: {generator.name if generator else 'none (offline)'}.")
        counts = processing.step_counts(subject)
        total = sum(counts[s]["pending"] for s in steps) if ids is None else len(ids) * len(steps)
        if limit is not None:
            total = min(total, limit * len(steps))
        bar = tqdm(total=total, unit="step", disable=not sys.stdout.isatty() or total == 0,
                   file=self.stdout)
        last_line = time.monotonic()

        def on_batch(batch):
            nonlocal last_line
            bar.update(batch.processed + batch.deferred)
            if bar.disable and time.monotonic() - last_line > 10:
                last_line = time.monotonic()
                self.stdout.write(f"  {batch.step}: {batch.processed} more processed…")

        try:
            summary = processing.pending_process(steps=steps, batch_size=batch_size, limit=limit,
                                                 question_ids=ids, subject=subject,
                                                 on_batch=on_batch)
        except ProviderUnavailable as exc:
            bar.close()
            raise CommandError(f"The index or a provider is unavailable: {exc}") from None
        bar.close()
        self._print_summary(summary, time.monotonic() - started)
        if summary.failed:
            raise SystemExit(1)

    def _queue(self, steps, subject, ids, limit, batch_size):
        if ids is None:
            ids = list(Question.objects.filter(
                status__in=processing.PROCESSABLE,
                **({"subject__code": subject} if subject else {})).values_list("pk", flat=True))
        if limit is not None:
            ids = ids[:limit]
        for start in range(0, len(ids), batch_size):
            enqueue("core.tasks.process_question_batch",
                    args=[ids[start:start + batch_size]], kwargs={"steps": steps})
        batches = (len(ids) + batch_size - 1) // batch_size
        self.stdout.write(f"Queued {batches} batches of up to {batch_size} questions on "
                          f"question_processing; `process_questions --status` shows progress.")

    def _print_plan(self, steps, subject, ids, force):
        counts = processing.step_counts(subject)
        self.stdout.write("Dry run: nothing is changed. Steps to run"
                          f"{' (with --force: finished ones too)' if force else ''}:")
        for step in steps:
            waiting = counts[step]["pending"] + (
                counts[step]["done"] + counts[step]["failed"] if force else 0)
            self.stdout.write(f"  {step}: {waiting if ids is None else 'up to ' + str(len(ids))}")

    def _print_status(self, subject):
        counts = processing.step_counts(subject)
        self.stdout.write(f"{'step':<12} " + " ".join(f"{s:>8}" for s in (
            "pending", "running", "done", "failed", "skipped")))
        for step in STEPS:
            row = counts[step]
            skipped = sum(n for key, n in row.items() if key.startswith("skipped"))
            failed = sum(n for key, n in row.items() if key.startswith("failed"))
            pending = sum(n for key, n in row.items() if key.startswith("pending"))
            self.stdout.write(f"{step:<12} {pending:>8} {row['running']:>8} {row['done']:>8} "
                              f"{failed:>8} {skipped:>8}")
            reasons = {k.split(":", 1)[1]: n for k, n in row.items() if ":" in k}
            if reasons:
                self.stdout.write("             " + ", ".join(
                    f"{QuestionStep.Reason(r).label}: {n}" for r, n in sorted(reasons.items())))
        failures = QuestionStep.objects.filter(status=QuestionStep.Status.FAILED).order_by(
            "-processed_at")
        if subject:
            failures = failures.filter(question__subject__code=subject)
        recent = list(failures[:10])
        if recent:
            self.stdout.write("Recent failures:")
            for row in recent:
                self.stdout.write(f"  question {row.question_id} {row.step} "
                                  f"({row.processed_at:%Y-%m-%d %H:%M}): "
                                  f"{row.last_error.splitlines()[0] if row.last_error else ''}")

    def _print_summary(self, summary, seconds):
        for step, result in summary.steps.items():
            self.stdout.write(f"  {step:<12} {result.done} done, {result.skipped} skipped, "
                              f"{result.failed} failed, {result.deferred} deferred")
            for line in result.failures[:10]:
                self.stdout.write(self.style.ERROR(f"    {line}"))
        if summary.transient_error:
            self.stdout.write(self.style.WARNING(
                f"Stopped early: {summary.transient_error}. The rest stays pending."))
        style = self.style.ERROR if summary.failed else self.style.SUCCESS
        self.stdout.write(style(f"Processed {sum(r.processed for r in summary.steps.values())} "
                                f"steps in {summary.batches} batches in {seconds:.1f}s; "
                                f"{summary.failed} failed."))
