import json

from core.models import Choice, ExamPaper, Question


def question(text, **extra):
    return {"subject": "MATH", "topic": "algebra", "type": "multiple_choice", "text": text,
            "exam_body": "Board", "year": 2021, "sitting": "June", "paper": 2,
            "choices": [{"label": "A", "text": "yes", "correct": True},
                        {"label": "B", "text": "no", "correct": False}], **extra}


def test_import_good_file_then_again_adds_nothing(catalogue, run_command, tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps({"questions": [question("One?"), question("Two?")]}))
    code, out, _ = run_command("import_questions", str(path))
    assert code == 0
    assert "2 questions added, 0 unchanged, 0 rejected" in out
    assert Question.objects.count() == 2 and Choice.objects.count() == 4
    assert ExamPaper.objects.count() == 1
    assert Question.objects.first().source == "import: paper.json"
    code, out, _ = run_command("import_questions", str(path))
    assert code == 0 and "0 questions added, 2 unchanged" in out
    assert Question.objects.count() == 2


def test_file_with_errors_imports_nothing(catalogue, run_command, tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps([question("One?"), question("Two?", year="MMXX")]))
    code, _, err = run_command("import_questions", str(path))
    assert code == 1
    assert "paper.json, entry 2, field 'year': must be a whole number, not 'MMXX'" in err
    assert "nothing imported from this file" in err
    assert "0 questions added, 0 unchanged, 2 rejected" in err
    assert not Question.objects.exists()


def test_skip_invalid_imports_the_valid_entries(catalogue, run_command, tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps([question("One?"), question("Two?", year="MMXX")]))
    code, _, err = run_command("import_questions", "--skip-invalid", str(path))
    assert code == 1
    assert "1 questions added, 0 unchanged, 1 rejected" in err
    assert Question.objects.count() == 1


def test_csv_import_and_dry_run(catalogue, run_command, tmp_path):
    path = tmp_path / "paper.csv"
    path.write_text("subject,topic,type,text,choice_a,choice_b,correct\n"
                    "MATH,algebra,multiple_choice,3*3?,9,6,A\n")
    code, out, _ = run_command("import_questions", "--dry-run", str(path))
    assert code == 0 and "1 questions would be added" in out and "Nothing was written" in out
    assert not Question.objects.exists()
    code, out, _ = run_command("import_questions", str(path))
    assert code == 0 and Question.objects.get().choices.get(is_correct=True).text == "9"


def test_missing_file_is_a_usage_error(catalogue, run_command, tmp_path):
    code, _, err = run_command("import_questions", str(tmp_path / "nope.json"))
    assert code == 2 and "No such file" in err
