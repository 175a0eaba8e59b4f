import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from core.models import (
    ApiToken,
    Attempt,
    ExamPaper,
    PracticeSession,
    Question,
    StudentProfile,
    Subject,
    Topic,
    User,
)
from core.services import attempt_record
from core.tests.factories import make_question


def test_email_is_unique_whatever_its_case(db):
    User.objects.create_user(email="Ada@Example.com", password="x")
    assert User.objects.get().email == "ada@example.com"
    with pytest.raises(IntegrityError), transaction.atomic():
        User(email="ADA@example.com").save()


def test_login_lookup_ignores_case(db):
    user = User.objects.create_user(email="ada@example.com", password="x")
    assert User.objects.get_by_natural_key("ADA@EXAMPLE.COM") == user


def test_topic_slug_unique_per_subject_only(catalogue):
    math, phys = Subject.objects.get(code="MATH"), Subject.objects.get(code="PHYS")
    Topic.objects.create(subject=phys, name="Algebra", slug="algebra")  # same slug, other subject
    with pytest.raises(IntegrityError), transaction.atomic():
        Topic.objects.create(subject=math, name="Algebra again", slug="algebra")


def test_topic_parent_must_share_subject(catalogue):
    algebra = Topic.objects.get(subject__code="MATH", slug="algebra")
    child = Topic(subject=Subject.objects.get(code="PHYS"), name="x", slug="x", parent=algebra)
    with pytest.raises(ValidationError, match="same subject"):
        child.full_clean()


def test_exam_paper_is_unique_per_sitting(catalogue):
    math = Subject.objects.get(code="MATH")
    fields = dict(subject=math, exam_body="Board", year=2020, sitting="June", paper_number=1)
    ExamPaper.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExamPaper.objects.create(**fields)


def test_exam_paper_year_is_checked_by_the_database(catalogue):
    with pytest.raises(IntegrityError), transaction.atomic():
        ExamPaper.objects.create(subject=Subject.objects.get(code="MATH"), exam_body="B",
                                 year=1200, sitting="June")


def test_question_topic_must_share_subject(catalogue):
    question = make_question(subject_code="MATH")
    question.topic = Topic.objects.get(subject__code="PHYS", slug="optics")
    with pytest.raises(ValidationError, match="another subject"):
        question.clean()


def test_session_cannot_have_more_correct_than_answered(student):
    with pytest.raises(IntegrityError), transaction.atomic():
        PracticeSession.objects.create(student=student, question_count=1, correct_count=2)


def test_profile_rejects_unknown_time_zone(student):
    profile = student.profile
    profile.timezone = "Mars/Olympus"
    with pytest.raises(ValidationError, match="IANA"):
        profile.full_clean()


def test_attempt_numbers_are_unique_per_student_and_question(student):
    question = make_question()
    attempt_record(student=student, question=question, choice=question.choices.first(),
                   time_taken_ms=1000)
    with pytest.raises(IntegrityError), transaction.atomic():
        Attempt.objects.create(student=student, question=question, is_correct=True,
                               time_taken_ms=1, local_date=datetime.date(2024, 1, 1),
                               attempt_number=1)


def test_answered_question_cannot_be_deleted(student):
    question = make_question()
    attempt_record(student=student, question=question, choice=question.choices.first(),
                   time_taken_ms=1000)
    with pytest.raises(ProtectedError):
        question.delete()
    assert Question.objects.filter(pk=question.pk).exists()


def test_unanswered_question_can_be_deleted_with_its_choices(catalogue):
    question = make_question()
    question.delete()
    assert not Question.objects.exists()


def test_deleting_a_student_deletes_their_personal_data(student):
    question = make_question()
    session = PracticeSession.objects.create(student=student)
    attempt_record(student=student, question=question, choice=question.choices.first(),
                   time_taken_ms=1000, session=session)
    ApiToken.objects.create(user=student, name="t", prefix="pq_x", digest="d" * 64,
                            expires_at=timezone.now())
    student.delete()
    assert not Attempt.objects.exists()
    assert not PracticeSession.objects.exists()
    assert not StudentProfile.objects.exists()
    assert not ApiToken.objects.exists()
    assert Question.objects.filter(pk=question.pk).exists()
