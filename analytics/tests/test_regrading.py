"""Regrading: a corrected answer key re-marks the question's attempts and everything derived
from them, in one job recorded with who and when; the command previews and runs it."""

import datetime
import json
from unittest import mock

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from analytics import regrading, rollups, runs
from analytics.models import (
    DailyStudentStats,
    QuestionStats,
    Regrade,
    ReviewCard,
    StudentAchievement,
)
from core import services
from core.models import Achievement, Attempt, Choice, PracticeSession, Question
from core.tests.conftest import deliver
from core.tests.factories import make_question

CHANGE = "/admin/core/question/{}/change/"
DAY = datetime.date(2026, 3, 9)


def _at(day, hour):
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=datetime.UTC)


@pytest.fixture
def world(catalogue):
    """A multiple-choice question keyed B by mistake (A is right) and a second, correct one.
    Ann answered A (marked wrong), Ben answered B (marked right), Cy answered C; each in a
    completed session with one other right answer."""
    # Accuracy over two distinct questions is enough to earn "Sharp" here.
    Achievement.objects.filter(code="accuracy-80").update(min_questions=2)
    wrong_key = make_question(correct="B")
    other = make_question(correct="A")
    people = {}
    for name, zone, label in [("ann", "Pacific/Kiritimati", "A"), ("ben", "Europe/London", "B"),
                              ("cy", "Pacific/Pago_Pago", "C")]:
        user = services.student_create(email=f"{name}@example.com", password="pw",
                                       timezone_name=zone).user
        session = PracticeSession.objects.create(student=user, subject=wrong_key.subject)
        services.attempt_record(student=user, question=wrong_key, session=session,
                                choice=wrong_key.choices.get(label=label), time_taken_ms=9000,
                                answered_at=_at(DAY, 9))
        services.attempt_record(student=user, question=other, session=session,
                                choice=other.choices.get(label="A"), time_taken_ms=5000,
                                answered_at=_at(DAY, 9) + datetime.timedelta(minutes=1))
        services.session_complete(session, at=_at(DAY, 10))
        people[name] = user
    now = _at(DAY + datetime.timedelta(days=2), 13)
    runs.analytics_run(dates=[DAY + datetime.timedelta(days=n) for n in (-1, 0, 1)], now=now)
    return wrong_key, people


def _change_form_data(response) -> dict:
    """The admin change form's fields and inline formsets, as the browser would post them."""
    data = {}
    adminform = response.context["adminform"]
    for name, field in adminform.form.fields.items():
        value = adminform.form.initial.get(name, field.initial)
        data[name] = _form_value(value)
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management.initial.get(name, "")
        for form in formset.formset.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                data[form.add_prefix(name)] = _form_value(value)
    return {k: v for k, v in data.items() if v is not None}


def _form_value(value):
    if isinstance(value, bool):
        return "on" if value else None
    if isinstance(value, list | tuple):
        return [getattr(v, "pk", v) for v in value]
    if hasattr(value, "pk"):
        return value.pk
    return "" if value is None else value


def test_correcting_the_key_in_the_admin_regrades_everything_derived(
        admin_client, admin_user, world, django_capture_on_commit_callbacks):
    question, people = world
    ann, ben, cy = people["ann"], people["ben"], people["cy"]
    sharp = Achievement.objects.get(code="accuracy-80")
    earned = StudentAchievement.objects.get(student=ben, achievement=sharp)
    assert not StudentAchievement.objects.filter(student=ann, achievement=sharp).exists()
    earned.announced_at = timezone.now()  # the email went out; it is never taken back
    earned.save()
    assert QuestionStats.objects.get(question=question).n_correct == 1
    cards = ReviewCard.objects.filter(question=question)
    assert set(cards.values_list("student", flat=True)) == {ann.pk, cy.pk}

    page = admin_client.get(CHANGE.format(question.pk))
    data = _change_form_data(page)
    choices = {c.pk: c.label for c in question.choices.all()}
    for key in list(data):
        if key.endswith("-is_correct"):
            del data[key]
    for key, value in list(data.items()):
        if key.endswith("-id") and choices.get(int(value or 0)) == "A":
            data[key.replace("-id", "-is_correct")] = "on"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGE.format(question.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Choice.objects.get(question=question, is_correct=True).label == "A"

    regrade = Regrade.objects.get()
    assert (regrade.requested_by, regrade.key_before, regrade.key_after, regrade.status) == (
        admin_user, {"choices": ["B"]}, {"choices": ["A"]}, "pending")
    [task] = [row.task for row in OrmQ.objects.all()]
    assert (task["func"], list(task["args"])) == ("analytics.tasks.regrade_question",
                                                 [regrade.pk])
    result = deliver(task)
    assert result["attempts_changed"] == 2

    regrade.refresh_from_db()
    assert (regrade.status, regrade.attempts_changed, regrade.became_correct,
            regrade.became_wrong) == ("done", 2, 1, 1)
    assert regrade.finished_at is not None
    marks = dict(Attempt.objects.filter(question=question).values_list("student", "is_correct"))
    assert marks == {ann.pk: True, ben.pk: False, cy.pk: False}
    scores = dict(PracticeSession.objects.values_list("student", "score"))
    assert scores == {ann.pk: 100.0, ben.pk: 50.0, cy.pk: 50.0}
    counts = dict(PracticeSession.objects.values_list("student", "correct_count"))
    assert counts == {ann.pk: 2, ben.pk: 1, cy.pk: 1}
    # Rollups of the days they answered on (Ann's local day is already the 9th's evening).
    daily = {(row.student_id, row.date): row.correct for row in DailyStudentStats.objects.all()}
    assert sum(v for (s, _), v in daily.items() if s == ann.pk) == 2
    assert sum(v for (s, _), v in daily.items() if s == ben.pk) == 1
    assert QuestionStats.objects.get(question=question).n_correct == 1  # Ann instead of Ben
    # Ben's "Sharp" no longer holds: withdrawn, still marked announced; Ann earned it.
    earned.refresh_from_db()
    assert earned.withdrawn_at is not None and earned.announced_at is not None
    assert StudentAchievement.objects.get(student=ann, achievement=sharp).withdrawn_at is None
    assert regrade.summary["achievements_withdrawn"] == 1
    # Spaced review, replayed: Ann never got it wrong after all; Ben did.
    assert set(cards.values_list("student", flat=True)) == {ben.pk, cy.pk}


def test_an_edit_that_keeps_the_key_regrades_nothing(admin_client, world,
                                                     django_capture_on_commit_callbacks):
    question, _ = world
    data = _change_form_data(admin_client.get(CHANGE.format(question.pk)))
    data["explanation"] = "Because."
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGE.format(question.pk), data)
    assert response.status_code == 302
    assert not Regrade.objects.exists() and not OrmQ.objects.exists()


def test_typed_answers_are_remarked_against_the_corrected_answer(catalogue):
    question = make_question(question_type=Question.Type.NUMERIC, answer="3.15")
    students = [services.student_create(email=f"n{i}@example.com", password="pw",
                                        timezone_name="UTC").user for i in range(3)]
    for student, given in zip(students, ["3.14", "3.1416", "3.15"], strict=True):
        services.attempt_record(student=student, question=question, answer_text=given,
                                time_taken_ms=1000, answered_at=_at(DAY, 12))
    services.attempt_record(student=students[0], question=question, skipped=True,
                            time_taken_ms=10, answered_at=_at(DAY, 13))
    question.answer = "3.1416"
    question.save()

    outcome = regrading.regrade_run(regrading.regrade_request(question.pk),
                                    now=_at(DAY, 20))

    # 3.14 and 3.1416 are within 1e-3 relative of 3.1416 (3.14 was not of 3.15); 3.15 is not
    # any more; the skip stays wrong.
    assert (outcome.attempts_changed, outcome.became_correct, outcome.became_wrong) == (3, 2, 1)
    marks = {(a.student_id, a.attempt_number): a.is_correct
             for a in Attempt.objects.filter(question=question)}
    assert marks == {(students[0].pk, 1): True, (students[0].pk, 2): False,
                     (students[1].pk, 1): True, (students[2].pk, 1): False}


def test_a_retry_after_a_crash_recomputes_without_remarking_twice(world):
    question, people = world
    Choice.objects.filter(question=question).update(is_correct=False)
    Choice.objects.filter(question=question, label="A").update(is_correct=True)
    regrade = regrading.regrade_request(question.pk)
    with mock.patch.object(rollups, "rollups_for_dates", side_effect=RuntimeError("killed")), \
            pytest.raises(RuntimeError):
        regrading.regrade_run(regrade)
    regrade.refresh_from_db()
    assert regrade.status == "pending" and regrade.attempts_changed == 2
    assert Attempt.objects.get(question=question, student=people["ann"]).is_correct
    stale = DailyStudentStats.objects.filter(student=people["ann"]).values_list(
        "correct", flat=True)
    assert sum(stale) == 1  # phase 2 did not run

    outcome = regrading.regrade_run(regrade)

    regrade.refresh_from_db()
    assert regrade.status == "done" and outcome.attempts_changed == 2
    assert sum(DailyStudentStats.objects.filter(student=people["ann"]).values_list(
        "correct", flat=True)) == 2


def test_the_command_previews_then_regrades(run_command, world):
    question, people = world
    Choice.objects.filter(question=question).update(is_correct=False)
    Choice.objects.filter(question=question, label="A").update(is_correct=True)
    before = list(Attempt.objects.order_by("pk").values_list("is_correct", flat=True))

    code, out, err = run_command("regrade", "--question", str(question.pk), "--dry-run")
    assert code == 0, err
    assert "2 attempts would change (1 now right, 1 now wrong)" in out
    assert "1 would be withdrawn, 1 would be earned" in out
    assert "Dry run: nothing was changed." in out
    assert list(Attempt.objects.order_by("pk").values_list("is_correct", flat=True)) == before
    assert not Regrade.objects.exists()

    code, out, err = run_command("regrade", "--question", str(question.pk), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["attempts_changed"], result["achievements_withdrawn"],
            result["achievements_earned"], result["dry_run"]) == (2, 1, 1, False)
    assert Regrade.objects.get().status == "done"

    code, out, err = run_command("regrade", "--question", str(question.pk))
    assert code == 0 and "0 attempts changed" in out


def test_the_command_refuses_an_unknown_question(run_command, db):
    code, out, err = run_command("regrade", "--question", "999999")
    assert code == 2 and "No question with id 999999" in err
