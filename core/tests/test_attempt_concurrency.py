"""Answers recorded at the same moment from separate database connections, as two web workers
would record them. PostgreSQL only: SQLite's IMMEDIATE transactions let one writer at a time in,
so the races these tests look for cannot happen there."""

import threading

import pytest
from django.db import connection

from core.models import Attempt, PracticeSession
from core.services import attempt_record, catalogue_load, session_complete, student_create
from core.tests.factories import make_question

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres_only(
        reason="concurrent writers need PostgreSQL; SQLite runs one write transaction at a time"),
]


def run_at_once(*calls):
    """Run each call in its own thread with its own database connection, all released together
    by a barrier; returns what each call returned or raised, in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        try:
            connection.ensure_connection()  # connect first, so the race is between the writes
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001  (reported to the test, which fails on it)
            results[index] = exc
        finally:
            connection.close()  # this thread's connection; the test's own stays open

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (a deadlock?)"
    return results


@pytest.fixture
def world():
    catalogue_load()
    return student_create(email="racer@example.com", timezone_name="Asia/Tokyo").user


def failures(results):
    return [r for r in results if isinstance(r, BaseException)]


def test_two_answers_at_once_both_count_in_the_session(world):
    first, second = make_question(), make_question()
    session = PracticeSession.objects.create(student=world)

    def answer(question, label, time_taken_ms):
        # Each request loads the session itself, before the other one has written.
        own_copy = PracticeSession.objects.get(pk=session.pk)
        return lambda: attempt_record(
            student=world, question=question, choice=question.choices.get(label=label),
            time_taken_ms=time_taken_ms, session=own_copy)

    results = run_at_once(answer(first, "B", 1000), answer(second, "A", 3000))

    assert failures(results) == []
    session.refresh_from_db()
    assert Attempt.objects.filter(session=session).count() == 2
    assert (session.question_count, session.correct_count, session.total_time_ms) == (2, 1, 4000)
    assert session.status == PracticeSession.Status.IN_PROGRESS


def test_answers_to_the_same_question_at_once_are_all_kept_and_numbered_without_gaps(world):
    question = make_question()
    choice = question.choices.get(label="B")
    answers = 6

    results = run_at_once(*[
        lambda: attempt_record(student=world, question=question, choice=choice,
                               time_taken_ms=1000)
        for _ in range(answers)
    ])

    assert failures(results) == []
    numbers = sorted(Attempt.objects.filter(student=world, question=question)
                     .values_list("attempt_number", flat=True))
    assert numbers == list(range(1, answers + 1))


def test_completing_while_an_answer_arrives_never_reopens_the_session(world):
    earlier, late = make_question(), make_question()
    session = PracticeSession.objects.create(student=world)
    attempt_record(student=world, question=earlier, choice=earlier.choices.get(label="B"),
                   time_taken_ms=1000, session=session)
    answering_copy = PracticeSession.objects.get(pk=session.pk)
    completing_copy = PracticeSession.objects.get(pk=session.pk)

    results = run_at_once(
        lambda: attempt_record(student=world, question=late, choice=late.choices.get(label="A"),
                               time_taken_ms=1000, session=answering_copy),
        lambda: session_complete(completing_copy),
    )

    # Either the answer came first and counts in the score, or it was refused as too late.
    session.refresh_from_db()
    assert session.status == PracticeSession.Status.COMPLETED
    stored = Attempt.objects.filter(session=session).count()
    assert session.question_count == stored
    assert session.score == round(100 * session.correct_count / stored, 2)
    assert [type(r).__name__ for r in failures(results)] in ([], ["ValidationError"])
