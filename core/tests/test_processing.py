"""The AI pipeline (core/processing.py): offline end to end with the real sentence model and a
real Chroma file store, Gemini through the fake server, leases, edits, retirement, and the
query count of a batch."""

import datetime
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from core import processing
from core.ai import vectors
from core.models import Choice, Question, QuestionStep, SimilarQuestion
from core.services import questions_retire
from core.tests.factories import make_question

pytestmark = pytest.mark.django_db

Step, Status = QuestionStep.Step, QuestionStep.Status
PARAPHRASES = [
    ("A stone is dropped from rest from a height of 45 m. Taking g = 10 m/s², how long does "
     "it take to reach the ground?",
     "Starting from rest, a stone falls 45 m. With g = 10 m/s², find the time it takes to hit "
     "the ground."),
    ("What is the derivative of x³ + 2x with respect to x?",
     "Differentiate x³ + 2x with respect to x."),
]


def bank(catalogue, count=6):
    questions = [make_question(text=f"Solve {n}x + {n + 1} = {3 * n + 1} for x.")
                 for n in range(1, count + 1)]
    for first, second in PARAPHRASES:
        questions += [make_question(text=first, question_type="numeric", answer="3"),
                      make_question(text=second, question_type="numeric", answer="3")]
    return questions


def stored_vectors(embedder_name=None) -> int:
    from core.ai import providers

    with vectors.vector_index_open() as opened:
        return opened.collection(providers.embedder()).count()


def test_offline_end_to_end_every_step_recorded(catalogue, index):
    questions = bank(catalogue)
    summary = processing.pending_process()
    assert summary.failed == 0
    steps = {(s.question_id, s.step): s for s in QuestionStep.objects.all()}
    assert len(steps) == 4 * len(questions)
    for question in questions:
        embedding = steps[(question.pk, Step.EMBEDDING)]
        assert embedding.status == Status.DONE
        assert embedding.model.startswith("all-minilm-l6-v2") and embedding.input_hash
        explanation = steps[(question.pk, Step.EXPLANATION)]
        assert (explanation.status, explanation.reason) == (Status.SKIPPED, "no_generator")
        assert steps[(question.pk, Step.METADATA)].status == Status.DONE
        assert steps[(question.pk, Step.SIMILAR)].status == Status.DONE
        question.refresh_from_db()
        assert question.ai_explanation == ""  # never template text passed off as AI
        assert question.ai_metadata["question_type"] == question.question_type
    for question in questions[6:]:  # worded questions ("Solve 1x + 2 = 4" has no keyword)
        assert question.ai_metadata["keywords"]
    assert stored_vectors() == len(questions)
    # The paraphrases were found; a formula question and an unrelated one were not paired.
    pairs = {(p.question_a_id, p.question_b_id) for p in SimilarQuestion.objects.all()}
    for offset in (6, 8):
        first, second = questions[offset], questions[offset + 1]
        assert (first.pk, second.pk) in pairs
    assert (questions[0].pk, questions[6].pk) not in pairs


def test_a_second_run_does_nothing(catalogue, index):
    bank(catalogue, count=2)
    processing.pending_process()
    again = processing.pending_process()
    assert again.batches == 0


def test_queries_per_batch_do_not_grow_with_its_size(catalogue, index,
                                                     django_assert_max_num_queries):
    from django.test.utils import CaptureQueriesContext

    bank(catalogue, count=4)
    processing.steps_create_missing()
    counts = {}
    for size in (3, 8):
        QuestionStep.objects.update(status=Status.PENDING)
        per_step = {}
        for step in processing.STEP_ORDER:
            with CaptureQueriesContext(connection) as captured:
                token = processing.steps_claim(step, limit=size)
                processing.steps_run(step, token)
            per_step[step] = len(captured)
        counts[size] = per_step
    similar = Step.SIMILAR
    assert {k: v for k, v in counts[3].items() if k != similar} == \
        {k: v for k, v in counts[8].items() if k != similar}, counts
    # The similar step inserts its pairs in one query, made only when it found some.
    assert 0 <= counts[8][similar] - counts[3][similar] <= 1, counts
    assert max(max(c.values()) for c in counts.values()) <= 13, counts


def test_a_killed_workers_lease_runs_out_and_its_steps_are_claimed_again(catalogue, index):
    bank(catalogue, count=3)
    processing.steps_create_missing()
    first = processing.steps_claim(Step.EMBEDDING, limit=50)
    claimed = set(QuestionStep.objects.filter(lease_token=first).values_list("pk", flat=True))
    assert claimed and processing.steps_claim(Step.EMBEDDING, limit=50) is None
    # The worker dies here; its lease runs out.
    QuestionStep.objects.filter(lease_token=first).update(
        lease_until=timezone.now() - datetime.timedelta(seconds=1))
    second = processing.steps_claim(Step.EMBEDDING, limit=50)
    assert set(QuestionStep.objects.filter(lease_token=second).values_list("pk", flat=True)) \
        == claimed
    assert processing.steps_run(Step.EMBEDDING, second).done == len(claimed)
    assert processing.steps_run(Step.EMBEDDING, first).done == 0  # the lost batch is gone


@pytest.mark.postgres_only(reason="SKIP LOCKED claims need concurrent writers")
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_take_the_same_step(catalogue):
    for n in range(40):
        make_question(text=f"Question number {n}: what is {n} + {n}?")
    processing.steps_create_missing()
    barrier, tokens = threading.Barrier(4), []

    def claim():
        barrier.wait()
        tokens.append(processing.steps_claim(Step.EMBEDDING, limit=15))
        connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [set(QuestionStep.objects.filter(lease_token=t).values_list("pk", flat=True))
             for t in tokens if t]
    assert sum(len(t) for t in taken) == 40
    assert len(set().union(*taken)) == 40  # disjoint


def test_editing_the_key_reruns_the_explanation_but_not_the_embedding(catalogue, index):
    question = make_question(text="Which number is prime?", choices=[
        ("A", "4", False), ("B", "7", True), ("C", "9", False)])
    processing.pending_process()
    Choice.objects.filter(question=question).update(is_correct=False)
    Choice.objects.filter(question=question, label="C").update(is_correct=True)
    assert processing.question_steps_refresh([question.pk]) == 1
    statuses = dict(QuestionStep.objects.filter(question=question).values_list("step", "status"))
    assert statuses[Step.EXPLANATION] == Status.PENDING
    assert statuses[Step.EMBEDDING] == statuses[Step.METADATA] == Status.DONE


def test_editing_the_text_reruns_every_step(catalogue, index):
    question = make_question(text="What is 2 + 2?")
    processing.pending_process()
    Question.objects.filter(pk=question.pk).update(text="What is 3 + 3?")
    # Every step, the skipped explanation too (a generator may exist by the time it runs).
    assert processing.question_steps_refresh([question.pk]) == 4


def test_a_generator_configured_later_makes_skipped_explanations_pending(
        catalogue, index, settings, fake_gemini):
    question = make_question(text="Solve for x: 3x + 7 = 22.", choices=[
        ("A", "3", False), ("B", "5", True), ("C", "7", False), ("D", "15", False)])
    processing.pending_process(steps=[Step.EXPLANATION])
    assert QuestionStep.objects.get(question=question, step=Step.EXPLANATION).reason == \
        "no_generator"
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake_gemini.base_url
    fake_gemini.answer({"explanation": "3x = 15, so x = 5.", "concluded_label": "B",
                        "concluded_answer": None})
    assert processing.pipeline_prepare()["explanation"] == 1
    summary = processing.pending_process(steps=[Step.EXPLANATION])
    assert summary.steps[Step.EXPLANATION].done == 1
    question.refresh_from_db()
    assert question.ai_explanation == "3x = 15, so x = 5."
    assert question.ai_explanation_conclusion == "B" and not question.ai_key_disagreement
    step = QuestionStep.objects.get(question=question, step=Step.EXPLANATION)
    assert step.model.startswith("gemini") and step.status == Status.DONE


def test_an_explanation_that_concludes_another_option_flags_the_question(
        catalogue, index, settings, fake_gemini):
    question = make_question(text="Solve for x: 3x + 7 = 22.", choices=[
        ("A", "3", False), ("B", "5", True), ("C", "7", False)])
    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "test-key", fake_gemini.base_url
    fake_gemini.answer({"explanation": "x = 7.", "concluded_label": "C",
                        "concluded_answer": None})
    processing.pending_process(steps=[Step.EXPLANATION])
    question.refresh_from_db()
    assert question.ai_key_disagreement and question.ai_explanation_conclusion == "C"
    assert question.explanation == ""  # the human field is never replaced


def test_an_answer_that_stays_invalid_fails_the_step_with_the_raw_text_kept(
        catalogue, index, settings, fake_gemini):
    question = make_question(text="Which is a prime?", choices=[
        ("A", "4", False), ("B", "7", True)])
    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "test-key", fake_gemini.base_url
    fake_gemini.answer("not json {", "still not json")
    summary = processing.pending_process(steps=[Step.EXPLANATION])
    assert summary.failed == 1
    step = QuestionStep.objects.get(question=question, step=Step.EXPLANATION)
    assert (step.status, step.reason) == (Status.FAILED, "invalid_output")
    assert "still not json" in step.raw_output


def test_a_provider_that_is_down_hands_the_batch_back_pending(
        catalogue, index, settings, fake_gemini):
    make_question(text="Which is a prime?", choices=[("A", "4", False), ("B", "7", True)])
    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "test-key", fake_gemini.base_url
    fake_gemini.fail(503, times=5)
    summary = processing.pending_process(steps=[Step.EXPLANATION])
    assert summary.transient_error and summary.failed == 0
    step = QuestionStep.objects.get(step=Step.EXPLANATION)
    assert (step.status, step.reason, step.lease_token) == (Status.PENDING, "unavailable", "")


def test_retiring_removes_the_vectors_after_commit(catalogue, index,
                                                  django_capture_on_commit_callbacks):
    questions = bank(catalogue, count=2)
    processing.pending_process(steps=[Step.EMBEDDING])
    before = stored_vectors()
    with django_capture_on_commit_callbacks(execute=True):
        questions_retire(Question.objects.filter(pk=questions[0].pk))
    assert stored_vectors() == before - 1
    hits = processing.question_similar(text=questions[0].text, k=10)
    assert questions[0].pk not in {hit.question.pk for hit in hits}


def test_question_similar_finds_the_paraphrase_first(catalogue, index):
    questions = bank(catalogue)
    processing.pending_process(steps=[Step.EMBEDDING])
    hits = processing.question_similar(question=questions[6], k=3)
    assert hits[0].question.pk == questions[7].pk and hits[0].similarity > 0.8
    assert questions[6].pk not in {hit.question.pk for hit in hits}
    by_text = processing.question_similar(text="Differentiate x³ + 2x.", k=1)
    assert by_text[0].question.pk in (questions[8].pk, questions[9].pk)
    assert processing.question_similar(question=questions[6], k=3, subject="PHYS") == []


def test_the_declared_difficulty_is_optional_and_one_rule_picks_the_difficulty(catalogue):
    question = make_question(difficulty="")
    assert question.effective_difficulty == ("", "none")
    question.ai_difficulty = "hard"
    assert question.effective_difficulty == ("hard", "ai")
    question.difficulty = "easy"
    assert question.effective_difficulty == ("easy", "declared")
    question.measured_difficulty = "medium"
    assert question.effective_difficulty == ("medium", "measured")


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_a_lease_that_is_claimed_again(
        catalogue, index, qcluster, settings):
    import os
    import signal

    from core.jobs import enqueue
    from core.jobs.models import JobRun
    from core.tests.conftest import wait_for

    bank(catalogue, count=2)
    processing.steps_create_missing()
    qcluster(PASTQ_PROCESSING_LEASE_SECONDS="4", PASTQ_VAR_DIR=str(settings.VAR_DIR))
    enqueue("core.tests.jobs_for_tests.claim_steps_then_hang", args=["embedding", 120])
    run = wait_for(lambda: JobRun.objects.filter(outcome="running").first(), timeout=60,
                   what="the worker to claim the batch")
    wait_for(lambda: QuestionStep.objects.filter(step="embedding", status="running").exists(),
             timeout=30, what="the claim")
    os.kill(run.pid, signal.SIGKILL)
    claimed = QuestionStep.objects.filter(step="embedding", status="running")
    assert claimed.count() == 6
    settings.PASTQ_PROCESSING_LEASE_SECONDS = 4
    assert processing.steps_claim(Step.EMBEDDING, limit=50) is None  # still leased
    wait_for(lambda: processing.pending_process(steps=[Step.EMBEDDING]).batches, timeout=30,
             interval=1, what="the lease to run out and the steps to be claimed again")
    assert QuestionStep.objects.filter(step="embedding", status="done").count() == 6
