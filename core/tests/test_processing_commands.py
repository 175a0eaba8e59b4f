"""`manage.py process_questions` and `manage.py find_similar`, as operators and scripts run
them (exit codes included), offline with the real sentence model and a Chroma file store."""

import json

import pytest
from django_q.models import OrmQ

from core.models import QuestionStep
from core.tests.factories import make_question
from core.tests.test_processing import PARAPHRASES

pytestmark = pytest.mark.django_db


@pytest.fixture
def questions(catalogue):
    made = [make_question(text=text, question_type="numeric", answer="3")
            for pair in PARAPHRASES for text in pair]
    made.append(make_question(subject_code="PHYS", text="State Newton's second law."))
    return made


def test_process_questions_runs_every_step_and_summarises(run_command, questions, index):
    code, out, err = run_command("process_questions")
    assert code == 0, out + err
    assert "Embedder: all-minilm-l6-v2+formulas" in out and "generator: none (offline)" in out
    assert "embedding    5 done" in out and "explanation  0 done, 5 skipped" in out
    assert "0 failed" in out
    assert QuestionStep.objects.filter(status="pending").count() == 0


def test_status_shows_counts_reasons_and_recent_failures(run_command, questions, index):
    run_command("process_questions", "--steps", "embedding,explanation")
    QuestionStep.objects.filter(question=questions[0], step="embedding").update(
        status="failed", last_error="the provider refused it")
    code, out, _ = run_command("process_questions", "--status")
    assert code == 0
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.split() and line.split()[0] in ("embedding", "explanation", "metadata")}
    assert lines["embedding"] == ["0", "0", "4", "1", "0"]  # pending running done failed skipped
    assert lines["metadata"][0] == "5"  # not run yet: pending
    assert "No generator configured: 5" in out
    assert f"question {questions[0].pk} embedding" in out and "refused" in out


def test_dry_run_changes_nothing(run_command, questions, index):
    code, out, _ = run_command("process_questions", "--dry-run")
    assert code == 0 and "Dry run" in out and "embedding: 5" in out
    assert not QuestionStep.objects.exists()


def test_subject_ids_limit_and_force(run_command, questions, index):
    code, out, _ = run_command("process_questions", "--steps", "embedding", "--subject", "phys")
    assert code == 0
    assert set(QuestionStep.objects.filter(step="embedding", status="done")
               .values_list("question__subject__code", flat=True)) == {"PHYS"}
    run_command("process_questions", "--steps", "embedding", "--ids",
                f"{questions[0].pk},{questions[1].pk}")
    assert QuestionStep.objects.filter(step="embedding", status="done").count() == 3
    run_command("process_questions", "--steps", "embedding", "--limit", "1")
    assert QuestionStep.objects.filter(step="embedding", status="done").count() == 4
    code, out, _ = run_command("process_questions", "--steps", "embedding", "--force")
    assert code == 0 and "embedding    5 done" in out


def test_async_queues_batches_instead_of_running(run_command, questions, index,
                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        code, out, _ = run_command("process_questions", "--async", "--batch-size", "2")
    assert code == 0 and "Queued 3 batches" in out
    assert OrmQ.objects.filter(key="question_processing").count() == 3
    assert not QuestionStep.objects.filter(status="done").exists()


@pytest.mark.parametrize("argv, message", [
    (["--steps", "embedding,summary"], "Unknown step 'summary'; the steps are embedding"),
    (["--subject", "ASTRO"], "There is no subject 'ASTRO'"),
    (["--ids", "1,x"], "--ids takes question ids"),
    (["--ids", "999999"], "No question has the id 999999"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_bad_usage_is_a_clear_error_and_exit_2(run_command, questions, index, argv, message):
    code, out, err = run_command("process_questions", *argv)
    assert code == 2 and message in err
    assert not QuestionStep.objects.exists()


def test_some_failures_exit_1(run_command, questions, index, settings, fake_gemini):
    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "test-key", fake_gemini.base_url
    fake_gemini.fail(403, times=20)  # a permanent refusal
    code, out, _ = run_command("process_questions", "--steps", "explanation")
    assert code == 1 and "5 failed" in out


def test_find_similar_json_is_the_documented_list(run_command, questions, index):
    run_command("process_questions", "--steps", "embedding")
    code, out, err = run_command("find_similar", "--question", str(questions[0].pk), "-k", "3",
                                 "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [set(row) for row in rows] == [{"id", "similarity", "subject", "topic", "text"}] * 3
    assert rows[0]["id"] == questions[1].pk and questions[0].pk not in [r["id"] for r in rows]
    assert rows == sorted(rows, key=lambda r: -r["similarity"])
    code, out, _ = run_command("find_similar", "--text", "Differentiate x³ + 2x.", "-k", "1",
                               "--subject", "MATH", "--json")
    assert json.loads(out)[0]["id"] in (questions[2].pk, questions[3].pk)


@pytest.mark.parametrize("argv, message", [
    (["--question", "999999"], "There is no question 999999"),
    (["--text", "  "], "--text is empty"),
    (["--text", "x", "-k", "0"], "-k must be at least 1"),
    (["--text", "x", "--subject", "ASTRO"], "There is no subject 'ASTRO'"),
])
def test_find_similar_bad_usage(run_command, questions, index, argv, message):
    code, _, err = run_command("find_similar", *argv)
    assert code == 2 and message in err


def test_on_a_terminal_with_no_flags_a_menu_asks_what_to_do(run_command, questions, index,
                                                           monkeypatch):
    from core.management.commands import process_questions

    monkeypatch.setattr(process_questions, "is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "2")  # "Show the status"
    code, out, _ = run_command("process_questions")
    assert code == 0 and "What should process_questions do?" in out
    assert "pending" in out and not QuestionStep.objects.exists()  # only looked
    monkeypatch.setattr("builtins.input", lambda prompt="": "9")
    code, _, err = run_command("process_questions")
    assert code == 2 and "'9' is not one of the choices" in err
