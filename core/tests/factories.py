"""Small builders for test data, going through the services where one exists."""

import itertools

from core.models import Choice, Question, Subject
from core.question_files import content_hash

_counter = itertools.count(1)


def make_question(*, subject_code="MATH", text=None, correct="B", labels="ABCD",
                  question_type=Question.Type.MULTIPLE_CHOICE, choices=None, **fields):
    """A question: by default multiple-choice with choices labelled `labels`, `correct` the
    right one; `choices` as [(label, text, is_correct), ...] gives them exactly; a numeric,
    short-answer or essay question gets none."""
    subject = Subject.objects.get(code=subject_code)
    text = text or f"Question number {next(_counter)}?"
    if question_type not in Question.CHOICE_TYPES:
        choices = []
    elif choices is None:
        choices = [(label, f"option {label} of {text}", label == correct) for label in labels]
    question = Question.objects.create(
        subject=subject, question_type=question_type, text=text,
        content_hash=content_hash(subject_code, question_type, text, [c[1] for c in choices]),
        **fields,
    )
    Choice.objects.bulk_create(
        Choice(question=question, label=label, text=choice_text, is_correct=is_correct)
        for label, choice_text, is_correct in choices
    )
    return question
