import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.models import ApiToken, Attempt, PracticeSession, Question, Subject
from core.question_files import validate_question
from core.services import (
    api_token_issue,
    api_token_revoke,
    api_token_verify,
    attempt_record,
    catalogue_load,
    catalogue_topics,
    question_check_choices,
    questions_import,
    session_complete,
    student_create,
)
from core.tests.factories import make_question

UTC = datetime.UTC


def test_catalogue_load_is_idempotent(db):
    first = catalogue_load()
    assert (first.subjects_created, first.topics_created) == (5, 18)
    second = catalogue_load()
    assert (second.subjects_created, second.topics_created, second.achievements_created) == (0, 0, 0)
    assert Subject.objects.count() == 5


def test_student_create_makes_a_user_with_a_profile(catalogue):
    # The notification preferences come from the notifications app (notifications/tests).
    profile = student_create(email="a@example.com", timezone_name="Asia/Tokyo")
    assert profile.user.has_usable_password() is False
    assert profile.user.profile.timezone == "Asia/Tokyo"


def test_student_create_rejects_bad_time_zone_and_writes_nothing(catalogue):
    with pytest.raises(ValidationError):
        student_create(email="a@example.com", timezone_name="Nowhere/Land")
    from core.models import User
    assert not User.objects.exists()


@pytest.mark.parametrize("flags, ok", [
    ([True, False, False, False], True),
    ([True, True, False, False], False),
    ([False, False, False, False], False),
    ([True], False),
])
def test_exactly_one_correct_choice(flags, ok):
    if ok:
        question_check_choices("multiple_choice", flags)
    else:
        with pytest.raises(ValidationError):
            question_check_choices("multiple_choice", flags)


def _records(n, catalogue):
    records = []
    for i in range(n):
        record, problems = validate_question({
            "subject": "MATH", "topic": "algebra", "type": "multiple_choice",
            "text": f"What is {i} + 1?", "exam_body": "Board", "year": 2020,
            "sitting": "June", "paper": 1 + i % 3,
            "choices": [{"label": "A", "text": str(i + 1), "correct": True},
                        {"label": "B", "text": str(i + 2), "correct": False}],
        }, f"entry {i}", catalogue)
        assert not problems
        records.append(record)
    return records


def test_questions_import_is_idempotent_and_creates_papers(catalogue):
    records = _records(12, catalogue_topics())
    first = questions_import(records, source="test")
    assert (first.added, first.unchanged) == (12, 0)
    second = questions_import(records, source="test")
    assert (second.added, second.unchanged) == (0, 12)
    assert Question.objects.count() == 12
    assert Question.objects.values("paper").distinct().count() == 3
    assert all(q.choices.filter(is_correct=True).count() == 1 for q in Question.objects.all())


def test_questions_import_query_count_does_not_grow_with_questions(
        catalogue, django_assert_max_num_queries):
    topics = catalogue_topics()
    with django_assert_max_num_queries(20):
        questions_import(_records(200, topics), source="test")
    assert Question.objects.count() == 200


def test_questions_import_dry_run_writes_nothing(catalogue):
    result = questions_import(_records(3, catalogue_topics()), source="t", dry_run=True)
    assert result.added == 3
    assert not Question.objects.exists()


@pytest.mark.parametrize("zone, answered_at, local_date", [
    # 11:30 UTC on the 1st is already the 2nd in Auckland (UTC+13 in summer) ...
    ("Pacific/Auckland", datetime.datetime(2024, 1, 1, 11, 30, tzinfo=UTC), datetime.date(2024, 1, 2)),
    # ... and still the 31st in Honolulu (UTC-10).
    ("Pacific/Honolulu", datetime.datetime(2024, 1, 1, 9, 30, tzinfo=UTC), datetime.date(2023, 12, 31)),
])
def test_attempt_stores_the_students_local_date(catalogue, zone, answered_at, local_date):
    user = student_create(email="tz@example.com", timezone_name=zone).user
    question = make_question()
    attempt = attempt_record(student=user, question=question,
                             choice=question.choices.get(label="B"), time_taken_ms=5000,
                             answered_at=answered_at)
    assert attempt.local_date == local_date
    assert attempt.is_correct


def test_attempts_are_numbered_and_update_the_session(student):
    question = make_question()
    session = PracticeSession.objects.create(student=student)
    first = attempt_record(student=student, question=question,
                           choice=question.choices.get(label="A"), time_taken_ms=100,
                           session=session)
    second = attempt_record(student=student, question=question,
                            choice=question.choices.get(label="B"), time_taken_ms=200,
                            session=session)
    assert (first.attempt_number, first.is_correct) == (1, False)
    assert (second.attempt_number, second.is_correct) == (2, True)
    session_complete(session)
    session.refresh_from_db()
    assert (session.question_count, session.correct_count, session.total_time_ms) == (2, 1, 300)
    assert session.score == 50.0
    assert session.status == PracticeSession.Status.COMPLETED


@pytest.mark.parametrize("close", [
    session_complete,
    lambda session: PracticeSession.objects.filter(pk=session.pk).update(
        status=PracticeSession.Status.ABANDONED),
], ids=["completed", "abandoned"])
def test_an_answer_to_a_closed_session_is_refused_and_changes_nothing(student, close):
    first, late = make_question(), make_question()
    session = PracticeSession.objects.create(student=student)
    loaded_before_closing = PracticeSession.objects.get(pk=session.pk)
    attempt_record(student=student, question=first, choice=first.choices.get(label="B"),
                   time_taken_ms=100, session=session)
    close(session)
    before = PracticeSession.objects.values().get(pk=session.pk)

    with pytest.raises(ValidationError, match="is closed"):
        attempt_record(student=student, question=late, choice=late.choices.get(label="B"),
                       time_taken_ms=100, session=loaded_before_closing)

    assert PracticeSession.objects.values().get(pk=session.pk) == before
    assert not Attempt.objects.filter(question=late).exists()


def test_the_session_counts_answers_in_the_database_not_in_a_stale_copy(student):
    question = make_question()
    session = PracticeSession.objects.create(student=student)
    copies = [PracticeSession.objects.get(pk=session.pk) for _ in range(3)]
    for copy in copies:  # three requests that each loaded the session before any answer
        attempt_record(student=student, question=question, choice=question.choices.get(label="B"),
                       time_taken_ms=100, session=copy)
    session.refresh_from_db()
    assert (session.question_count, session.correct_count, session.total_time_ms) == (3, 3, 300)
    session_complete(copies[0])
    session.refresh_from_db()
    assert (session.status, session.score) == (PracticeSession.Status.COMPLETED, 100.0)


def test_an_answer_goes_only_into_the_students_own_session(student):
    other = student_create(email="other@example.com").user
    question = make_question()
    session = PracticeSession.objects.create(student=other)
    with pytest.raises(ValidationError, match="another student"):
        attempt_record(student=student, question=question, choice=question.choices.first(),
                       time_taken_ms=1, session=session)
    assert not Attempt.objects.exists()


def test_a_user_without_a_student_profile_gets_a_clear_error(catalogue, django_user_model):
    staff = django_user_model.objects.create_user(email="staff@example.com")
    question = make_question()
    with pytest.raises(ValidationError, match="no student profile"):
        attempt_record(student=staff, question=question, choice=question.choices.first(),
                       time_taken_ms=1)


def test_attempt_rejects_a_choice_of_another_question(student):
    question, other = make_question(), make_question()
    with pytest.raises(ValidationError):
        attempt_record(student=student, question=question, choice=other.choices.first(),
                       time_taken_ms=1)


def test_numeric_answers_compare_as_numbers(student):
    question = Question.objects.create(
        subject=Subject.objects.get(code="PHYS"), question_type="numeric",
        text="g in m/s²?", answer="9.81", content_hash="n" * 64)
    assert attempt_record(student=student, question=question, answer_text="9.810",
                          time_taken_ms=1).is_correct
    assert not attempt_record(student=student, question=question, answer_text="9.9",
                              time_taken_ms=1).is_correct


def test_api_token_raw_secret_is_never_stored(student):
    token, raw = api_token_issue(user=student, name="phone")
    assert raw.startswith("pq_") and raw.startswith(token.prefix)
    stored = ApiToken.objects.values_list("prefix", "digest", "name").get()
    assert raw not in " ".join(stored)
    assert api_token_verify(raw) == token
    assert api_token_verify(raw + "x") is None
    assert api_token_verify("") is None


def test_api_token_verify_marks_last_use(student):
    token, raw = api_token_issue(user=student, name="phone")
    api_token_verify(raw)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_revoked_and_expired_tokens_do_not_verify(student):
    token, raw = api_token_issue(user=student, name="phone")
    assert api_token_revoke(token) is True
    assert api_token_revoke(token) is False
    assert api_token_verify(raw) is None
    soon = timezone.now() + datetime.timedelta(seconds=60)
    expiring, raw2 = api_token_issue(user=student, name="soon", expires_at=soon)
    ApiToken.objects.filter(pk=expiring.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert api_token_verify(raw2) is None


def test_api_token_needs_name_and_future_expiry(student):
    with pytest.raises(ValidationError):
        api_token_issue(user=student, name=" ")
    with pytest.raises(ValidationError):
        api_token_issue(user=student, name="x", expires_at=timezone.now())


@pytest.mark.parametrize("count", [5, 40])
def test_retiring_questions_takes_three_queries_whatever_their_number(
        catalogue, django_assert_num_queries, django_capture_on_commit_callbacks, count):
    from core.services import questions_retire

    for _ in range(count):
        make_question()
    # The ids, one UPDATE of the questions, one of their embedding and similar steps; their
    # vectors leave the index after the commit.
    with django_assert_num_queries(3), django_capture_on_commit_callbacks() as callbacks:
        assert questions_retire(Question.objects.all()) == count
    assert set(Question.objects.values_list("status", flat=True)) == {"retired"}
    assert len(callbacks) == 1
