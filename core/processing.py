"""The AI pipeline: each question's steps (embedding, metadata, explanation, similar), claimed
with a lease, run through the providers, written back in bulk.

- A step row (`QuestionStep`) per question and step records status, attempts, the last error,
  what produced the result and the hash of the input it ran on. Editing a question makes the
  steps whose input changed pending again (`question_steps_refresh`); a step done by another
  embedder than today's, or skipped for want of a generator that now exists, is pending again
  when a run starts (`steps_invalidate`).
- A batch is claimed with a lease committed before any work (`steps_claim`): PostgreSQL takes
  rows with `SELECT … FOR UPDATE SKIP LOCKED`, SQLite with one conditional UPDATE; a lease that
  ran out (its worker was killed) is claimed again. No network call happens inside a database
  transaction: providers and the vector index run between the claim and the bulk write.
- Queries per batch do not grow with its size: one claim, three reads, one Chroma call per
  step, one bulk update per table.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.utils import timezone

from core.ai import offline, providers, vectors
from core.ai.types import (
    ChoiceInput,
    Explanation,
    ProviderError,
    ProviderUnavailable,
    QuestionInput,
    QuestionMetadata,
    QuotaExhausted,
)
from core.models import Choice, Question, QuestionStep, SimilarQuestion, Topic

logger = logging.getLogger("pastq.processing")

Step = QuestionStep.Step
Status = QuestionStep.Status
Reason = QuestionStep.Reason
STEP_ORDER = [Step.EMBEDDING, Step.METADATA, Step.EXPLANATION, Step.SIMILAR]
PROCESSABLE = [Question.Status.ACTIVE, Question.Status.DRAFT]
MAX_ATTEMPTS = 3  # transient failures of one step before it is recorded failed


# --- Inputs and their hashes ----------------------------------------------------------------


def question_input(question: Question) -> QuestionInput:
    """What a provider sees of a question (its choices prefetched, its subject and topic
    selected)."""
    return QuestionInput(
        id=question.pk, subject=question.subject.name,
        topic=question.topic.name if question.topic_id else "",
        question_type=question.question_type, text=question.text,
        choices=tuple(ChoiceInput(c.label, c.text, c.is_correct)
                      for c in question.choices.all()),
        answer=question.answer, marks=question.marks, year=question.year,
    )


def embedding_text(question: QuestionInput) -> str:
    """What is embedded: the question and its options (not which one is right)."""
    options = "\n".join(f"{c.label}) {c.text}" for c in question.choices)
    return f"{question.text}\n{options}".strip()


def step_input_hash(step: str, question: QuestionInput) -> str:
    """The input a step depends on. Embedding and similar: the text and the options; metadata:
    also the subject, topic and answer; explanation: also which option is correct, so a
    corrected key runs the explanation (and its key check) again."""
    parts: dict = {"text": question.text, "type": question.question_type,
                   "choices": [[c.label, c.text] for c in question.choices]}
    if step in (Step.METADATA, Step.EXPLANATION):
        parts.update(subject=question.subject, topic=question.topic, answer=question.answer)
    if step == Step.EXPLANATION:
        parts["key"] = question.key_label
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _questions(ids: Iterable[int]) -> dict[int, Question]:
    return {q.pk: q for q in Question.objects.filter(pk__in=list(ids))
            .select_related("subject", "topic")
            .prefetch_related(Prefetch("choices", queryset=Choice.objects.order_by("label")))}


# --- Step rows ------------------------------------------------------------------------------


def steps_create_missing(question_ids: Sequence[int] | None = None) -> int:
    """Pending step rows for questions that lack them (new questions); a constant number of
    queries."""
    questions = Question.objects.filter(status__in=PROCESSABLE)
    if question_ids is not None:
        questions = questions.filter(pk__in=list(question_ids))
    created = 0
    for step in STEP_ORDER:
        missing = questions.exclude(Exists(QuestionStep.objects.filter(
            question=OuterRef("pk"), step=step))).values_list("pk", flat=True)
        rows = [QuestionStep(question_id=pk, step=step) for pk in missing]
        QuestionStep.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        created += len(rows)
    return created


def question_steps_refresh(question_ids: Sequence[int]) -> int:
    """After questions were created or edited: create their missing steps and make pending
    each step whose input changed since it ran. Returns how many steps became pending."""
    steps_create_missing(question_ids)
    questions = _questions(question_ids)
    changed = []
    for row in QuestionStep.objects.filter(question_id__in=list(questions)).exclude(
            status=Status.PENDING):
        question = questions[row.question_id]
        if row.input_hash and row.input_hash != step_input_hash(row.step, question_input(question)):
            row.status, row.reason, row.attempts = Status.PENDING, Reason.NONE, 0
            changed.append(row)
    QuestionStep.objects.bulk_update(changed, ["status", "reason", "attempts"], batch_size=500)
    return len(changed)


def steps_invalidate(embedder_name: str, *, has_generator: bool) -> dict[str, int]:
    """Pending again: embeddings (and similar lookups) done by another embedder than today's,
    and explanations skipped for want of a generator when one is configured now."""
    result = {}
    for step in (Step.EMBEDDING, Step.SIMILAR):
        result[step] = QuestionStep.objects.filter(step=step, status=Status.DONE).exclude(
            model=embedder_name).update(status=Status.PENDING, reason=Reason.NONE, attempts=0)
    result["explanation"] = QuestionStep.objects.filter(
        step=Step.EXPLANATION, status=Status.SKIPPED, reason=Reason.NO_GENERATOR).update(
        status=Status.PENDING, reason=Reason.NONE) if has_generator else 0
    return result


def steps_force(step: str, question_ids: Sequence[int] | None = None,
                subject: str | None = None) -> int:
    """Make finished steps pending again (`process_questions --force`)."""
    rows = QuestionStep.objects.filter(step=step).exclude(status=Status.RUNNING)
    if question_ids is not None:
        rows = rows.filter(question_id__in=list(question_ids))
    if subject:
        rows = rows.filter(question__subject__code=subject)
    return rows.update(status=Status.PENDING, reason=Reason.NONE, attempts=0)


def _eligible(step: str, now: datetime.datetime, *, question_ids=None, subject=None):
    rows = QuestionStep.objects.filter(
        Q(status=Status.PENDING) | Q(status=Status.RUNNING, lease_until__lt=now),
        step=step, question__status__in=PROCESSABLE)
    if step == Step.SIMILAR:  # needs the question's vector
        rows = rows.filter(Exists(QuestionStep.objects.filter(
            question=OuterRef("question_id"), step=Step.EMBEDDING, status=Status.DONE)))
    if question_ids is not None:
        rows = rows.filter(question_id__in=list(question_ids))
    if subject:
        rows = rows.filter(question__subject__code=subject)
    return rows


def steps_claim(step: str, *, limit: int, question_ids: Sequence[int] | None = None,
                subject: str | None = None) -> str | None:
    """Claim up to `limit` steps with a lease, committed before any work; returns the lease
    token naming them (None when nothing was waiting). Expired leases are claimed again."""
    now = timezone.now()
    token = uuid.uuid4().hex
    lease = {"status": Status.RUNNING, "lease_until": now + datetime.timedelta(
        seconds=settings.PASTQ_PROCESSING_LEASE_SECONDS), "lease_token": token}
    eligible = _eligible(step, now, question_ids=question_ids, subject=subject).order_by(
        "-question__priority", "question_id")
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            # PostgreSQL: rows another worker holds are skipped, not waited for.
            ids = list(eligible.select_for_update(skip_locked=True, of=("self",))
                       .values_list("pk", flat=True)[:limit])
            claimed = QuestionStep.objects.filter(pk__in=ids).update(**lease)
        else:
            # SQLite: one conditional UPDATE (its IMMEDIATE transaction holds the write lock),
            # re-checking the conditions so a row claimed meanwhile is not taken twice.
            ids = list(eligible.values_list("pk", flat=True)[:limit])
            claimed = _eligible(step, now).filter(pk__in=ids).update(**lease)
    return token if claimed else None


def steps_release(token: str) -> int:
    """Give a batch back unprocessed (the provider is unavailable): pending, lease cleared."""
    return QuestionStep.objects.filter(lease_token=token, status=Status.RUNNING).update(
        status=Status.PENDING, lease_until=None, lease_token="")


# --- Running a batch ------------------------------------------------------------------------


@dataclass
class BatchResult:
    step: str
    done: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # handed back: provider unavailable or a daily cap
    failures: list[str] = field(default_factory=list)
    transient_error: str = ""
    quota_exhausted: bool = False  # a daily cap: nothing more until it resets

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped

    def merge(self, other: BatchResult) -> None:
        self.done += other.done
        self.failed += other.failed
        self.skipped += other.skipped
        self.deferred += other.deferred
        self.failures += other.failures
        self.transient_error = other.transient_error or self.transient_error
        self.quota_exhausted = self.quota_exhausted or other.quota_exhausted


def steps_run(step: str, token: str) -> BatchResult:
    """Run the claimed batch `token` of `step` and write every outcome in bulk."""
    rows = list(QuestionStep.objects.filter(lease_token=token, status=Status.RUNNING))
    questions = _questions(r.question_id for r in rows)
    rows = [r for r in rows if r.question_id in questions]
    inputs = {pk: question_input(q) for pk, q in questions.items()}
    runner = {Step.EMBEDDING: _run_embedding, Step.SIMILAR: _run_similar,
              Step.METADATA: _run_metadata, Step.EXPLANATION: _run_explanation}[step]
    result = BatchResult(step=step)
    changed_questions: dict[int, set[str]] = {}
    try:
        runner(rows, questions, inputs, result, changed_questions)
    except ProviderUnavailable as exc:
        result.transient_error = f"{type(exc).__name__}: {exc}"
        result.quota_exhausted = isinstance(exc, QuotaExhausted)
        reason = Reason.QUOTA if result.quota_exhausted else Reason.UNAVAILABLE
        for row in rows:
            if row.status == Status.RUNNING:
                row.status, row.reason, row.last_error = Status.PENDING, reason, str(exc)[:2000]
                row.lease_until, row.lease_token = None, ""
                result.deferred += 1
    _write(rows, questions, changed_questions)
    logger.info("event=batch step=%s done=%s failed=%s skipped=%s deferred=%s", step,
                result.done, result.failed, result.skipped, result.deferred)
    return result


def _finish(row: QuestionStep, status: str, *, model: str = "", input_hash: str = "",
            reason: str = "", error: str = "", raw: str = "") -> None:
    row.status, row.reason, row.model = status, reason, model or row.model
    row.input_hash = input_hash or row.input_hash
    row.last_error, row.raw_output = error[:4000], raw[:20000]
    row.processed_at = timezone.now()
    row.lease_until, row.lease_token = None, ""


def _fail(row: QuestionStep, exc: ProviderError, result: BatchResult, model: str) -> None:
    invalid = bool(exc.raw)
    _finish(row, Status.FAILED, model=model, error=str(exc), raw=exc.raw,
            reason=Reason.INVALID_OUTPUT if invalid else Reason.PROVIDER_ERROR)
    result.failed += 1
    result.failures.append(f"question {row.question_id} {row.step}: {exc}")


STEP_RESULT_FIELDS = ["status", "reason", "model", "input_hash", "last_error", "raw_output",
                      "processed_at", "lease_until", "lease_token"]


def _write(rows: list[QuestionStep], questions: dict[int, Question],
           changed: dict[int, set[str]]) -> None:
    """Every outcome of a batch in one statement per table. The steps are written with one
    INSERT … ON CONFLICT (question, step) DO UPDATE: Django's bulk_update builds a CASE per
    field and row, which took 3 s for 500 rows on SQLite (bench/processing.py)."""
    fields = sorted({f for names in changed.values() for f in names})
    for row in rows:
        row.pk = None  # matched on (question, step), not on the id
    with transaction.atomic():
        if fields:
            Question.objects.bulk_update([questions[pk] for pk in changed], fields,
                                         batch_size=500)
        QuestionStep.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["question", "step"],
            update_fields=STEP_RESULT_FIELDS, batch_size=500)


def vector_metadata(question: Question) -> dict:
    """What the index stores beside a vector, for filtered search."""
    difficulty, _ = question.effective_difficulty
    return {"subject": question.subject.code,
            "topic": question.topic.slug if question.topic_id else "",
            "year": question.year or 0, "type": question.question_type,
            "difficulty": difficulty}


def _run_embedding(rows, questions, inputs, result, changed) -> None:
    embedder = providers.embedder()
    texts = [embedding_text(inputs[r.question_id]) for r in rows]
    vectors_ = []
    for start in range(0, len(texts), embedder.max_batch):
        vectors_ += embedder.embed(texts[start:start + embedder.max_batch])
    with vectors.vector_index_open() as index:
        index.collection(embedder).upsert(
            [r.question_id for r in rows], vectors_,
            [vector_metadata(questions[r.question_id]) for r in rows])
    for row in rows:
        _finish(row, Status.DONE, model=embedder.name,
                input_hash=step_input_hash(Step.EMBEDDING, inputs[row.question_id]))
        result.done += 1


def _run_similar(rows, questions, inputs, result, changed) -> None:
    embedder = providers.embedder()
    ids = [r.question_id for r in rows]
    with vectors.vector_index_open() as index:
        collection = index.collection(embedder)
        stored = {int(pk): vector for pk, vector in collection.vectors(ids).items()}
        missing = [pk for pk in ids if pk not in stored]
        if missing:  # not in this embedder's collection (it changed meanwhile): embed again
            fresh = embedder.embed([embedding_text(inputs[pk]) for pk in missing])
            stored.update(zip(missing, fresh, strict=True))
        neighbours = collection.query_many([stored[pk] for pk in ids],
                                           k=settings.PASTQ_SIMILAR_NEIGHBOURS + 1)
    pairs = {}
    for pk, found in zip(ids, neighbours, strict=True):
        for neighbour in found:
            other = int(neighbour.id)
            if other != pk and neighbour.similarity >= embedder.duplicate_threshold:
                pairs[(min(pk, other), max(pk, other))] = neighbour.similarity
    SimilarQuestion.objects.bulk_create(
        [SimilarQuestion(question_a_id=a, question_b_id=b, score=score, model=embedder.name)
         for (a, b), score in pairs.items()],
        update_conflicts=True, unique_fields=["question_a", "question_b"],
        update_fields=["score", "model", "found_at"], batch_size=500)
    for row in rows:
        _finish(row, Status.DONE, model=embedder.name,
                input_hash=step_input_hash(Step.SIMILAR, inputs[row.question_id]))
        result.done += 1


def _run_metadata(rows, questions, inputs, result, changed) -> None:
    generator = providers.generator()
    if generator is None:
        _run_offline_metadata(rows, questions, inputs, result, changed)
        return
    for row in rows:
        question = questions[row.question_id]
        try:
            generated = generator.metadata(inputs[row.question_id])
        except ProviderError as exc:
            _fail(row, exc, result, generator.name)
            continue
        _store_metadata(question, generated.value, changed)
        _finish(row, Status.DONE, model=generated.model,
                input_hash=step_input_hash(Step.METADATA, inputs[row.question_id]))
        result.done += 1


def _run_offline_metadata(rows, questions, inputs, result, changed) -> None:
    """Keywords by TF-IDF over the subject's bank, the nearest topic by embedding, the type
    from the question's structure: three queries and one embedding call per batch."""
    subjects = {q.subject_id for q in questions.values()}
    bank = list(Question.objects.filter(subject_id__in=subjects).exclude(
        status=Question.Status.RETIRED).values_list("text", flat=True))
    topics = [offline.TopicDescription(subject=t.subject.name, name=t.name,
                                       description=t.description)
              for t in Topic.objects.filter(subject_id__in=subjects).select_related("subject")]
    embedder = providers.embedder()
    given = [inputs[r.question_id] for r in rows]
    found = offline.offline_metadata_batch(
        given, bank_texts=bank, topics=topics, embedder=embedder,
        vectors=embedder.embed([embedding_text(q) for q in given]))
    for row, metadata in zip(rows, found, strict=True):
        _store_metadata(questions[row.question_id], metadata, changed)
        _finish(row, Status.DONE, model=f"offline+{embedder.name}",
                input_hash=step_input_hash(Step.METADATA, inputs[row.question_id]))
        result.done += 1


def _store_metadata(question: Question, metadata: QuestionMetadata, changed) -> None:
    question.ai_metadata = metadata.model_dump(mode="json")
    question.ai_difficulty = metadata.difficulty or ""
    changed.setdefault(question.pk, set()).update({"ai_metadata", "ai_difficulty"})


def _run_explanation(rows, questions, inputs, result, changed) -> None:
    generator = providers.generator()
    if generator is None:
        # Offline there is no generator: never template text passed off as AI.
        for row in rows:
            _finish(row, Status.SKIPPED, reason=Reason.NO_GENERATOR,
                    input_hash=step_input_hash(Step.EXPLANATION, inputs[row.question_id]))
            result.skipped += 1
        return
    for row in rows:
        question, given = questions[row.question_id], inputs[row.question_id]
        try:
            generated = generator.explain(given)
        except ProviderError as exc:
            _fail(row, exc, result, generator.name)
            continue
        explanation: Explanation = generated.value
        question.ai_explanation = explanation.explanation
        question.ai_explanation_conclusion = (
            explanation.concluded_label or explanation.concluded_answer or "")[:200]
        question.ai_key_disagreement = explanation_disagrees(given, explanation)
        changed.setdefault(question.pk, set()).update(
            {"ai_explanation", "ai_explanation_conclusion", "ai_key_disagreement"})
        _finish(row, Status.DONE, model=generated.model,
                input_hash=step_input_hash(Step.EXPLANATION, given))
        result.done += 1


def explanation_disagrees(question: QuestionInput, explanation: Explanation) -> bool:
    """Whether the explanation concludes something other than the answer key: for a choice
    question another option (or none), for a numeric one another number."""
    if question.choices:
        concluded = (explanation.concluded_label or "").strip().upper()
        return concluded != (question.key_label or "").strip().upper()
    if question.question_type == Question.Type.NUMERIC and explanation.concluded_answer:
        try:
            given, expected = float(explanation.concluded_answer), float(question.answer)
        except ValueError:
            return True
        return abs(given - expected) > 1e-9 + 1e-3 * abs(expected)
    return False


# --- Whole runs -----------------------------------------------------------------------------


@dataclass
class RunSummary:
    steps: dict[str, BatchResult] = field(default_factory=dict)
    batches: int = 0
    out_of_time: bool = False  # stopped at the deadline with work left
    prepared: dict = field(default_factory=dict)  # what pipeline_prepare did

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.steps.values())

    @property
    def transient_error(self) -> str:
        return next((r.transient_error for r in self.steps.values() if r.transient_error), "")

    @property
    def quota_exhausted(self) -> bool:
        return any(r.quota_exhausted for r in self.steps.values())


def pipeline_prepare(question_ids: Sequence[int] | None = None) -> dict:
    """At the start of a run: step rows for new questions, and steps to redo because the
    embedder or the generator changed."""
    created = steps_create_missing(question_ids)
    invalidated = steps_invalidate(providers.embedder().name,
                                   has_generator=providers.generator() is not None)
    return {"created": created, **invalidated}


def pending_process(*, steps: Sequence[str] = tuple(STEP_ORDER), batch_size: int | None = None,
                    limit: int | None = None, question_ids: Sequence[int] | None = None,
                    subject: str | None = None, on_batch=None,
                    deadline: float | None = None) -> RunSummary:
    """Claim and run batches of each step in order until none is left (or `limit` steps per
    step, or the monotonic `deadline`); stops a step at the first transient failure (the
    provider is down: the job retries later). `on_batch(result)` reports progress."""
    summary = RunSummary()
    summary.prepared = pipeline_prepare(question_ids)
    batch_size = batch_size or settings.PASTQ_PROCESSING_BATCH_SIZE
    # One opening of the index for the whole run (the file store's client is re-used by the
    # batches, not reopened for each), and none when no step needs it.
    needs_index = bool({Step.EMBEDDING, Step.SIMILAR} & set(steps))
    with vectors.vector_index_open() if needs_index else contextlib.nullcontext():
        _pending_steps(summary, steps, batch_size, limit, question_ids, subject, on_batch,
                       deadline)
    return summary


def _pending_steps(summary, steps, batch_size, limit, question_ids, subject, on_batch,
                   deadline) -> None:
    for step in STEP_ORDER:
        if step not in steps:
            continue
        total = summary.steps.setdefault(step, BatchResult(step=step))
        while limit is None or total.processed < limit:
            if deadline is not None and time.monotonic() > deadline:
                summary.out_of_time = True
                return
            size = batch_size if limit is None else min(batch_size, limit - total.processed)
            token = steps_claim(step, limit=size, question_ids=question_ids, subject=subject)
            if token is None:
                break
            batch = steps_run(step, token)
            summary.batches += 1
            total.merge(batch)
            if on_batch:
                on_batch(batch)
            if batch.transient_error:
                break


# --- Reads ----------------------------------------------------------------------------------


def step_counts(subject: str | None = None) -> dict[str, Counter]:
    """Per step, how many questions are in each status ("status" or "status:reason"); a
    question that has no row for a step yet counts as pending. Five queries."""
    rows = QuestionStep.objects.all()
    questions = Question.objects.filter(status__in=PROCESSABLE)
    if subject:
        rows = rows.filter(question__subject__code=subject)
        questions = questions.filter(subject__code=subject)
    counts: dict[str, Counter] = {step: Counter() for step in STEP_ORDER}
    for step, status, reason, n in rows.values_list("step", "status", "reason").annotate(
            n=Count("id")).order_by():
        counts[step][f"{status}:{reason}" if reason else status] += n
    for step in STEP_ORDER:
        counts[step]["pending"] += questions.exclude(Exists(QuestionStep.objects.filter(
            question=OuterRef("pk"), step=step))).count()
    return counts


@dataclass
class SimilarHit:
    question: Question
    similarity: float


def question_similar(*, question: Question | None = None, text: str = "", k: int = 5,
                     subject: str | None = None) -> list[SimilarHit]:
    """The `k` questions nearest a question (itself excluded) or a text, most similar first,
    through the same embedder the pipeline uses."""
    if (question is None) == (not text):
        raise ValueError("Give a question or a text, not both.")
    embedder = providers.embedder()
    with vectors.vector_index_open() as index:
        collection = index.collection(embedder)
        vector = None
        if question is not None:
            vector = collection.vectors([question.pk]).get(str(question.pk))
            if vector is None:  # not embedded yet: embed it as the pipeline would
                [question_] = _questions([question.pk]).values()
                text = embedding_text(question_input(question_))
        if vector is None:
            vector = embedder.embed([text])[0]
        found = collection.query(vector, k=k, where={"subject": subject} if subject else None,
                                 exclude_ids=[question.pk] if question is not None else ())
    by_id = Question.objects.filter(pk__in=[int(n.id) for n in found]).exclude(
        status=Question.Status.RETIRED).select_related("subject", "topic").in_bulk()
    return [SimilarHit(by_id[int(n.id)], n.similarity) for n in found if int(n.id) in by_id]


def questions_remove_vectors(question_ids: Sequence[int]) -> None:
    """Take retired or deleted questions out of every collection of the index after the
    commit that changed them (retiring is a queryset update, which sends no signal), and mark
    their embedding and similar steps skipped."""
    ids = list(question_ids)
    if not ids:
        return
    QuestionStep.objects.filter(question_id__in=ids, step__in=[Step.EMBEDDING, Step.SIMILAR]
                                ).update(status=Status.SKIPPED, reason=Reason.RETIRED)
    transaction.on_commit(lambda: _vectors_delete(ids))


def _vectors_delete(ids: list[int]) -> None:
    try:
        with vectors.vector_index_open() as index:
            for info in index.collections():
                index.collection(_Space(info.embedder, info.dimension)).delete(ids)
    except ProviderUnavailable as exc:
        # The index is down: the vectors stay, and similar-question lookups skip ids whose
        # question is retired (question_similar filters by the database).
        logger.warning("Could not remove %s vectors from the index: %s", len(ids), exc)


@dataclass(frozen=True)
class _Space:
    """A collection's embedding space by name (vectors.EmbeddingSpace)."""

    name: str
    dimension: int


def on_question_deleted(sender, instance: Question, **kwargs) -> None:
    """post_delete of a question: its vectors go too (after the commit)."""
    transaction.on_commit(lambda: _vectors_delete([instance.pk]))
