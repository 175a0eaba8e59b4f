"""Small builders for test data, going through the services where one exists."""

import itertools

from core.models import Choice, Question, Subject
from core.question_files import content_hash

_counter = itertools.count(1)


def make_question(*, subject_code="MATH", text=None, correct="B", labels="ABCD", **fields):
    """A multiple-choice question with one correct choice."""
    subject = Subject.objects.get(code=subject_code)
    text = text or f"Question number {next(_counter)}?"
    choice_texts = [f"option {label} of {text}" for label in labels]
    question = Question.objects.create(
        subject=subject, question_type=Question.Type.MULTIPLE_CHOICE, text=text,
        content_hash=content_hash(subject_code, "multiple_choice", text, choice_texts), **fields,
    )
    Choice.objects.bulk_create(
        Choice(question=question, label=label, text=choice_text, is_correct=label == correct)
        for label, choice_text in zip(labels, choice_texts, strict=True)
    )
    return question
