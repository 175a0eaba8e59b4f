"""Reading and validating question files (JSON and CSV).

One validator serves the seed bank and `import_questions`, so a file that seeds also imports.
It reports every problem it finds (file, entry or line, field), never just the first, and
touches no database: the caller passes the catalogue it validates against. Question types and
difficulties are the model's choices (Question.Type, Difficulty), and the rule for choices is
`choice_problems` below, which services and the admin apply too.

Formats: docs/question-files.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.models import Difficulty, Question

QUESTION_KEYS = {
    "subject", "topic", "exam_body", "year", "sitting", "paper", "type", "difficulty", "marks",
    "text", "choices", "answer", "explanation",
}
CHOICE_KEYS = {"label", "text", "correct"}
CSV_CHOICE_COLUMNS = ("choice_a", "choice_b", "choice_c", "choice_d", "choice_e")
CSV_COLUMNS = (
    {"subject", "topic", "exam_body", "year", "sitting", "paper", "type", "difficulty", "marks",
     "text", "correct", "answer", "explanation"}
    | set(CSV_CHOICE_COLUMNS)
)
MAX_TEXT = 20_000


def normalise_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def choice_problems(question_type: str, correct_flags: Iterable[bool]) -> list[str]:
    """The one statement of the rule for a question's choices, applied to question files, by
    services.question_check_choices and by the admin's choice formset: multiple-choice and
    true/false questions are single-answer (at least two choices, exactly two for true/false,
    exactly one correct), and no other type has choices. Returns what breaks it, if anything."""
    flags = list(correct_flags)
    if question_type not in Question.CHOICE_TYPES:
        return ["only multiple-choice and true/false questions have choices"] if flags else []
    problems = []
    if question_type == Question.Type.TRUE_FALSE and len(flags) != 2:
        problems.append("a true/false question has exactly two choices")
    elif len(flags) < 2:
        problems.append("a choice question needs at least two choices")
    if sum(flags) != 1:
        problems.append(f"exactly one choice must be correct, found {sum(flags)}")
    return problems


def content_hash(subject: str, question_type: str, text: str, choices: Iterable[str]) -> str:
    """Identity of a question's content: same subject, type, wording and options (in any order,
    any spacing or case) give the same hash, so importing a file twice adds nothing."""
    parts = [subject.upper(), question_type, normalise_text(text)]
    parts += sorted(normalise_text(c) for c in choices)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class ChoiceRecord:
    label: str
    text: str
    correct: bool


@dataclass(frozen=True)
class QuestionRecord:
    subject: str
    question_type: str
    text: str
    difficulty: str = ""  # declared by the author, or blank
    marks: int = 1
    topic: str | None = None
    exam_body: str | None = None
    year: int | None = None
    sitting: str | None = None
    paper: int | None = None
    choices: tuple[ChoiceRecord, ...] = ()
    answer: str = ""
    explanation: str = ""
    where: str = ""

    @property
    def content_hash(self) -> str:
        return content_hash(self.subject, self.question_type, self.text,
                            (c.text for c in self.choices))

    @property
    def paper_key(self) -> tuple | None:
        if not self.exam_body:
            return None
        return (self.subject, self.exam_body, self.year, self.sitting, self.paper or 1)


@dataclass(frozen=True)
class Problem:
    where: str
    field: str | None
    message: str

    def __str__(self):
        return f"{self.where}, field '{self.field}': {self.message}" if self.field else (
            f"{self.where}: {self.message}"
        )


@dataclass
class FileReport:
    path: Path
    records: list[QuestionRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Collector:
    def __init__(self, where: str):
        self.where = where
        self.problems: list[Problem] = []

    def add(self, field_name: str | None, message: str) -> None:
        self.problems.append(Problem(self.where, field_name, message))


def _text(raw, name, c: _Collector, *, required=False, max_length=MAX_TEXT) -> str:
    if raw is None or raw == "":
        if required:
            c.add(name, "is required")
        return ""
    if not isinstance(raw, str):
        c.add(name, f"must be text, not {type(raw).__name__}")
        return ""
    value = raw.strip()
    if required and not value:
        c.add(name, "is required")
    if len(value) > max_length:
        c.add(name, f"is longer than {max_length} characters")
    return value


def _integer(raw, name, c: _Collector, *, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        c.add(name, "must be a whole number")
        return None
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            c.add(name, f"must be a whole number, not {raw!r}")
            return None
    if not isinstance(raw, int):
        c.add(name, f"must be a whole number, not {raw!r}")
        return None
    if not low <= raw <= high:
        c.add(name, f"must be between {low} and {high}, not {raw}")
        return None
    return raw


def validate_question(
    data: Mapping, where: str, catalogue: Mapping[str, set[str]], default_subject: str | None = None
) -> tuple[QuestionRecord | None, list[Problem]]:
    """Check one question entry; `catalogue` maps subject codes to their topic slugs."""
    c = _Collector(where)
    if not isinstance(data, Mapping):
        c.add(None, "must be an object with the question's fields")
        return None, c.problems
    for key in sorted(set(data) - QUESTION_KEYS):
        c.add(key, "is not a known field (known: " + ", ".join(sorted(QUESTION_KEYS)) + ")")

    subject = _text(data.get("subject") or default_subject, "subject", c, required=True).upper()
    if subject and subject not in catalogue:
        c.add("subject", f"unknown subject {subject!r} (known: {', '.join(sorted(catalogue))})")
    topic = _text(data.get("topic"), "topic", c) or None
    if topic and subject in catalogue and topic not in catalogue[subject]:
        c.add("topic", f"unknown topic {topic!r} for {subject}")

    question_type = _text(data.get("type"), "type", c, required=True)
    if question_type and question_type not in Question.Type.values:
        c.add("type", f"must be one of {', '.join(Question.Type.values)}, not {question_type!r}")
    # Optional: blank when the author said nothing (the app then uses the measured or the AI's
    # estimate; Question.effective_difficulty).
    difficulty = _text(data.get("difficulty"), "difficulty", c) or ""
    if difficulty and difficulty not in Difficulty.values:
        c.add("difficulty", f"must be one of {', '.join(Difficulty.values)}, not {difficulty!r}")
    marks = _integer(data.get("marks"), "marks", c, low=1, high=100) or 1
    text = _text(data.get("text"), "text", c, required=True)
    answer = _text(data.get("answer"), "answer", c)
    explanation = _text(data.get("explanation"), "explanation", c)

    exam_body = _text(data.get("exam_body"), "exam_body", c, max_length=120) or None
    sitting = _text(data.get("sitting"), "sitting", c, max_length=40) or None
    year = _integer(data.get("year"), "year", c, low=1900, high=2100)
    paper = _integer(data.get("paper"), "paper", c, low=1, high=99)
    if exam_body or sitting or paper:
        for name, value in (("exam_body", exam_body), ("year", year), ("sitting", sitting)):
            if value is None:
                c.add(name, "is required when the question names a paper")

    choices = _choices(data.get("choices"), question_type, c)
    if question_type == Question.Type.NUMERIC:
        try:
            float(answer)
        except ValueError:
            c.add("answer", "a numeric question needs its answer as a number")
    elif question_type == Question.Type.SHORT_ANSWER and not answer:
        c.add("answer", "a short-answer question needs its model answer")

    if c.problems:
        return None, c.problems
    record = QuestionRecord(
        subject=subject, question_type=question_type, text=text, difficulty=difficulty,
        marks=marks, topic=topic, exam_body=exam_body, year=year, sitting=sitting,
        paper=paper if exam_body else None, choices=choices, answer=answer,
        explanation=explanation, where=where,
    )
    return record, []


def _choices(raw, question_type: str, c: _Collector) -> tuple[ChoiceRecord, ...]:
    if question_type not in Question.CHOICE_TYPES:
        if raw:  # whatever their shape: the rule only asks whether there are any
            for problem in choice_problems(question_type, [False]):
                c.add("choices", problem)
        return ()
    if not isinstance(raw, list) or not raw:
        c.add("choices", "a choice question needs a list of choices")
        return ()
    result, labels = [], set()
    for index, item in enumerate(raw, start=1):
        name = f"choices[{index}]"
        if not isinstance(item, Mapping):
            c.add(name, "must be an object with label, text and correct")
            continue
        for key in sorted(set(item) - CHOICE_KEYS):
            c.add(f"{name}.{key}", "is not a known field (known: correct, label, text)")
        label = _text(item.get("label"), f"{name}.label", c, required=True, max_length=4)
        text = _text(item.get("text"), f"{name}.text", c, required=True)
        correct = item.get("correct", False)
        if not isinstance(correct, bool):
            c.add(f"{name}.correct", "must be true or false")
        if label in labels:
            c.add(f"{name}.label", f"label {label!r} is used twice")
        labels.add(label)
        result.append(ChoiceRecord(label=label, text=text, correct=correct is True))
    for problem in choice_problems(question_type, [choice.correct for choice in result]):
        c.add("choices", problem)
    return tuple(result)


def _check_duplicates(report: FileReport) -> None:
    seen: dict[str, str] = {}
    for record in report.records:
        first = seen.setdefault(record.content_hash, record.where)
        if first != record.where:
            report.problems.append(Problem(record.where, "text", f"repeats {first}"))


def read_json(path: Path, catalogue: Mapping[str, set[str]]) -> FileReport:
    report = FileReport(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(Problem(path.name, None, f"cannot be read: {exc}"))
        return report
    except json.JSONDecodeError as exc:
        report.problems.append(
            Problem(f"{path.name}, line {exc.lineno}", None, f"is not valid JSON: {exc.msg}")
        )
        return report
    default_subject = None
    if isinstance(document, dict):
        unknown = set(document) - {"subject", "questions"}
        if unknown:
            report.problems.append(Problem(
                path.name, None, f"unknown top-level keys {sorted(unknown)}: expected "
                "'questions' and optionally 'subject'"))
        default_subject = document.get("subject")
        entries = document.get("questions")
    else:
        entries = document
    if not isinstance(entries, list):
        report.problems.append(Problem(
            path.name, None, "must be a list of questions or an object with a 'questions' list"))
        return report
    for number, entry in enumerate(entries, start=1):
        record, problems = validate_question(
            entry, f"{path.name}, entry {number}", catalogue, default_subject)
        report.problems += problems
        if record:
            report.records.append(record)
    _check_duplicates(report)
    return report


def read_csv(path: Path, catalogue: Mapping[str, set[str]]) -> FileReport:
    report = FileReport(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or ())
            missing = {"subject", "type", "text"} - header
            unknown = header - CSV_COLUMNS
            if missing or unknown:
                if missing:
                    report.problems.append(Problem(
                        f"{path.name}, line 1", None, f"missing columns: {', '.join(sorted(missing))}"))
                if unknown:
                    report.problems.append(Problem(
                        f"{path.name}, line 1", None, f"unknown columns: {', '.join(sorted(unknown))}"))
                return report
            for row in reader:
                where = f"{path.name}, line {reader.line_num}"
                if None in row:
                    report.problems.append(Problem(where, None, "has more cells than the header"))
                    continue
                record, problems = validate_question(_csv_row_to_entry(row), where, catalogue)
                report.problems += problems
                if record:
                    report.records.append(record)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.problems.append(Problem(path.name, None, f"cannot be read: {exc}"))
        return report
    _check_duplicates(report)
    return report


def _csv_row_to_entry(row: dict) -> dict:
    entry = {k: v for k, v in row.items() if k not in CSV_CHOICE_COLUMNS and k != "correct" and v}
    correct = (row.get("correct") or "").strip().upper()
    choices = []
    for column in CSV_CHOICE_COLUMNS:
        text = (row.get(column) or "").strip()
        if text:
            label = column[-1].upper()
            choices.append({"label": label, "text": text, "correct": label == correct})
    if choices:
        entry["choices"] = choices
    return entry


READERS = {".json": read_json, ".csv": read_csv}


def read_question_file(path: Path, catalogue: Mapping[str, set[str]]) -> FileReport:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        report = FileReport(path)
        report.problems.append(Problem(
            path.name, None, "is neither .json nor .csv; see docs/question-files.md"))
        return report
    return reader(path, catalogue)
