import json
from pathlib import Path

import pytest

from core.question_files import content_hash, read_question_file

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
CATALOGUE = {"MATH": {"algebra", "calculus"}, "PHYS": {"optics"}, "CS": {"algorithms"},
             "CHEM": {"organic-chemistry"}, "BIO": {"genetics"}}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def good_question(**overrides):
    question = {
        "subject": "MATH", "topic": "algebra", "type": "multiple_choice", "text": "2 + 2?",
        "choices": [{"label": "A", "text": "4", "correct": True},
                    {"label": "B", "text": "5", "correct": False}],
    }
    question.update(overrides)
    return question


def test_content_hash_ignores_case_spacing_and_choice_order():
    assert content_hash("math", "multiple_choice", "What  is 2+2?", ["4", "5"]) == content_hash(
        "MATH", "multiple_choice", "what is 2+2? ", ["5", "4"])
    assert content_hash("MATH", "multiple_choice", "Q", ["4"]) != content_hash(
        "PHYS", "multiple_choice", "Q", ["4"])


@pytest.mark.parametrize("name", ["questions.json", "questions.csv"])
def test_documented_examples_are_valid(name):
    catalogue = {"MATH": {"algebra", "calculus", "geometry", "statistics"},
                 "PHYS": {"mechanics", "thermodynamics", "electromagnetism", "optics"},
                 "CS": {"programming-fundamentals", "data-structures", "algorithms",
                        "database-systems"},
                 "CHEM": {"general-chemistry", "organic-chemistry", "physical-chemistry"},
                 "BIO": {"cell-biology", "genetics", "ecology"}}
    report = read_question_file(EXAMPLES / name, catalogue)
    assert report.ok, [str(p) for p in report.problems]
    assert report.records


def test_every_problem_is_reported_with_entry_and_field(tmp_path):
    path = write(tmp_path, "bad.json", {"questions": [
        good_question(),
        good_question(text="", difficulty="impossible", colour="red"),
        good_question(text="Which?", choices=[{"label": "A", "text": "x", "correct": True},
                                              {"label": "A", "text": "y", "correct": True}]),
        good_question(subject="ART", text="Art?"),
        good_question(text="Year?", exam_body="Board", sitting="June", paper=1),
    ]})
    report = read_question_file(path, CATALOGUE)
    messages = [str(p) for p in report.problems]
    assert len(report.records) == 1
    assert "bad.json, entry 2, field 'text': is required" in messages
    assert any("entry 2, field 'difficulty'" in m for m in messages)
    assert any("entry 2, field 'colour': is not a known field" in m for m in messages)
    assert any("entry 3, field 'choices[2].label'" in m and "used twice" in m for m in messages)
    assert any("entry 3, field 'choices': exactly one choice must be correct, found 2" in m
               for m in messages)
    assert any("entry 4, field 'subject': unknown subject 'ART'" in m for m in messages)
    assert any("entry 5, field 'year': is required when the question names a paper" in m
               for m in messages)


def test_invalid_json_names_the_line(tmp_path):
    report = read_question_file(write(tmp_path, "broken.json", '{"questions": [\n  {,]}'), CATALOGUE)
    assert not report.ok
    assert str(report.problems[0]).startswith("broken.json, line 2: is not valid JSON")


def test_duplicate_questions_in_one_file_are_a_problem(tmp_path):
    report = read_question_file(
        write(tmp_path, "dup.json", [good_question(), good_question(text="2  +  2?")]), CATALOGUE)
    assert [str(p) for p in report.problems] == [
        "dup.json, entry 2, field 'text': repeats dup.json, entry 1"]


def test_numeric_and_short_answer_need_answers(tmp_path):
    report = read_question_file(write(tmp_path, "q.json", [
        {"subject": "PHYS", "type": "numeric", "text": "c?", "answer": "fast"},
        {"subject": "PHYS", "type": "short_answer", "text": "Name the unit of force."},
        {"subject": "PHYS", "type": "essay", "text": "Discuss.", "choices": [{"label": "A"}]},
        {"subject": "PHYS", "type": "numeric", "text": "g?", "answer": "9.81"},
    ]), CATALOGUE)
    fields = {(p.where.split(", ")[1], p.field) for p in report.problems}
    assert fields == {("entry 1", "answer"), ("entry 2", "answer"), ("entry 3", "choices")}
    assert len(report.records) == 1


def test_csv_rows_become_questions_and_errors_name_the_line(tmp_path):
    path = write(tmp_path, "q.csv", (
        "subject,topic,type,text,choice_a,choice_b,choice_c,correct,year\n"
        "MATH,algebra,multiple_choice,1+1?,1,2,3,B,2019\n"
        "MATH,algebra,multiple_choice,1+2?,1,2,3,,2019\n"
        "MATH,algebra,true_false,0 is even.,True,False,,A,nineteen\n"
    ))
    report = read_question_file(path, CATALOGUE)
    assert len(report.records) == 1
    record = report.records[0]
    assert [c.correct for c in record.choices] == [False, True, False]
    messages = [str(p) for p in report.problems]
    assert any(m.startswith("q.csv, line 3, field 'choices'") for m in messages)
    assert any(m.startswith("q.csv, line 4, field 'year'") for m in messages)


def test_csv_with_unknown_columns_is_rejected(tmp_path):
    report = read_question_file(write(tmp_path, "q.csv", "subject,type,text,colour\n"), CATALOGUE)
    assert [str(p) for p in report.problems] == ["q.csv, line 1: unknown columns: colour"]


def test_unknown_file_type(tmp_path):
    report = read_question_file(write(tmp_path, "q.xlsx", ""), CATALOGUE)
    assert "neither .json nor .csv" in str(report.problems[0])


@pytest.mark.parametrize("question_type, flags", [
    ("multiple_choice", [True, False, False]),
    ("multiple_choice", [True, True, False]),
    ("multiple_choice", [False, False]),
    ("multiple_choice", [True]),
    ("true_false", [True, False, False]),
    ("true_false", [False]),
    ("numeric", [True, False]),
    ("essay", []),
])
def test_files_and_services_apply_the_one_rule_for_choices(question_type, flags):
    """One implementation (choice_problems) decides; the file validator reports its words and
    question_check_choices (which the admin's choice formset calls) raises them."""
    from django.core.exceptions import ValidationError

    from core.question_files import choice_problems, validate_question
    from core.services import question_check_choices

    expected = choice_problems(question_type, flags)
    entry = {"subject": "MATH", "type": question_type, "text": "Which?", "answer": "1",
             "choices": [{"label": chr(65 + i), "text": f"option {i}", "correct": flag}
                         for i, flag in enumerate(flags)]}
    _, problems = validate_question(entry, "entry 1", CATALOGUE)
    assert [p.message for p in problems if p.field == "choices"] == expected
    if expected:
        with pytest.raises(ValidationError) as raised:
            question_check_choices(question_type, flags)
        assert [m.rstrip(".").lower() for m in raised.value.messages] == \
            [e.lower() for e in expected]
    else:
        question_check_choices(question_type, flags)


def test_question_types_and_difficulties_are_the_models_choices():
    """No list of their own to drift from Question.Type and Difficulty."""
    from core import question_files
    from core.models import Difficulty, Question

    assert not {"QUESTION_TYPES", "CHOICE_TYPES", "DIFFICULTIES"} & set(vars(question_files))
    for difficulty in Difficulty.values:
        record, problems = question_files.validate_question(
            good_question(difficulty=difficulty), "entry 1", CATALOGUE)
        assert problems == [] and record.difficulty == difficulty
    _, problems = question_files.validate_question(
        good_question(type="multiple-choice"), "entry 1", CATALOGUE)
    assert f"must be one of {', '.join(Question.Type.values)}" in str(problems[0])
