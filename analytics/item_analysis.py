"""Question statistics and item analysis (classical test theory) from students' first attempts:
per question its facility, discrimination, times and skip rate, per option how often it was
chosen overall and by the top and bottom thirds of students, review flags, and per exam paper
Cronbach's alpha. Definitions, settings and the command: docs/analytics.md, "Question
statistics and item analysis".

How it is computed, and why (measured at 1M attempts in bench/analytics_questions.py):
the database does the set-based part in one statement, each student's totals per subject
joined back to every first attempt as its rest score, and sends one row per first attempt;
numpy then does the per-question reductions (sums, Pearson's r, Cronbach's alpha) and what
needs the attempts in order (medians, the top and bottom thirds). Medians and thirds need
those rows in order, which SQL window functions made several times slower on SQLite (ROW_NUMBER,
NTILE) and no faster on PostgreSQL; with the rows at hand, a second pass in SQL for the sums
would only repeat the joins. The live analysis (`item_analysis`, what the command prints) and
the stored one (`question_stats_refresh`, the schedule's) are the same code. Stored rows are
written with one `INSERT … SELECT … ON CONFLICT DO UPDATE` per table, whose rows travel as a
single JSON parameter: a fixed number of queries whatever the number of students, questions or
subjects.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.models import Choice, ExamPaper, Question, Subject

CHOICE_TYPES = frozenset(kind.value for kind in Question.CHOICE_TYPES)

# Flags, as stored in QuestionStats.flags and printed by the command.
TOO_EASY = "too_easy"
TOO_HARD = "too_hard"
WEAK_DISCRIMINATION = "weak_discrimination"
NEGATIVE_DISCRIMINATION = "negative_discrimination"
POSSIBLE_WRONG_KEY = "possible_wrong_key"
NOT_ENOUGH_DATA = "not_enough_data"


@dataclass
class ChoiceFigures:
    choice_id: int
    question_id: int
    label: str
    is_key: bool
    count: int = 0
    proportion: float | None = None
    upper_count: int = 0
    upper_proportion: float | None = None
    lower_count: int = 0
    lower_proportion: float | None = None

    def as_json(self) -> dict:
        return {"label": self.label, "is_key": self.is_key, "count": self.count,
                "proportion": self.proportion, "upper_proportion": self.upper_proportion,
                "lower_proportion": self.lower_proportion, "upper_count": self.upper_count,
                "lower_count": self.lower_count}


@dataclass
class QuestionFigures:
    question_id: int
    subject_id: int
    paper_id: int | None
    question_type: str
    n: int = 0
    n_correct: int = 0
    n_skipped: int = 0
    facility: float | None = None
    discrimination: float | None = None
    n_discrimination: int = 0
    mean_time_ms: float | None = None
    median_time_ms: float | None = None
    skip_rate: float | None = None
    n_upper: int = 0
    n_lower: int = 0
    enough_data: bool = False
    flags: list[str] = field(default_factory=list)
    choices: list[ChoiceFigures] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"id": self.question_id, "n": self.n, "facility": self.facility,
                "discrimination": self.discrimination, "mean_time_ms": self.mean_time_ms,
                "median_time_ms": self.median_time_ms, "skip_rate": self.skip_rate,
                "choices": [choice.as_json() for choice in self.choices],
                "flags": list(self.flags), "paper": self.paper_id,
                "question_type": self.question_type, "n_correct": self.n_correct,
                "n_skipped": self.n_skipped, "n_discrimination": self.n_discrimination,
                "n_upper": self.n_upper, "n_lower": self.n_lower,
                "enough_data": self.enough_data}


@dataclass
class PaperFigures:
    paper_id: int
    subject_id: int
    n_questions: int = 0
    n_students: int = 0
    alpha: float | None = None
    mean: float | None = None
    sd: float | None = None

    def as_json(self) -> dict:
        return {"id": self.paper_id, "n_students": self.n_students, "alpha": self.alpha,
                "mean": self.mean, "sd": self.sd, "n_questions": self.n_questions}


@dataclass
class ItemAnalysis:
    subject: Subject
    paper: ExamPaper | None
    questions: list[QuestionFigures]
    papers: list[PaperFigures]
    computed_at: datetime.datetime

    def as_json(self) -> dict:
        return {"subject": self.subject.code,
                "questions": [question.as_json() for question in self.questions],
                "papers": [paper.as_json() for paper in self.papers],
                "paper": self.paper.pk if self.paper else None,
                "computed_at": self.computed_at.isoformat(),
                "min_n": settings.ANALYTICS_MIN_N}


# --- Public API -----------------------------------------------------------------------------


def item_analysis(subject: Subject | str, *, paper: ExamPaper | int | None = None) -> ItemAnalysis:
    """The item analysis of a subject (a Subject or its code), computed now from the attempts as
    they are (not from the last scheduled run). With `paper` (an ExamPaper or its id), only that
    paper's questions and statistics; rest scores stay subject-wide. Raises Subject.DoesNotExist,
    ExamPaper.DoesNotExist, or ValueError for a paper of another subject."""
    if not isinstance(subject, Subject):
        subject = Subject.objects.get(code=subject)
    if paper is not None and not isinstance(paper, ExamPaper):
        paper = ExamPaper.objects.get(pk=paper)
    if paper is not None and paper.subject_id != subject.pk:
        raise ValueError(f"Paper {paper.pk} belongs to another subject than {subject.code}.")
    questions, papers = _figures([subject.pk])
    if paper is not None:
        questions = [q for q in questions if q.paper_id == paper.pk]
        papers = [p for p in papers if p.paper_id == paper.pk]
    return ItemAnalysis(subject=subject, paper=paper, questions=questions, papers=papers,
                        computed_at=timezone.now())


def question_stats_refresh(*, subject_ids: list[int] | None = None,
                           question_ids: list[int] | None = None,
                           now: datetime.datetime | None = None) -> int:
    """Compute and store QuestionStats, ChoiceStats and PaperStats for every question, option
    and paper of the given subjects (all when None). `question_ids` narrows to those questions'
    subjects, recomputed whole (rest scores are per subject). Returns the questions written.
    Reads run outside any transaction of their own (SQLite's write lock is taken only for the
    three upserts); the number of queries does not depend on the data."""
    now = now or timezone.now()
    if question_ids is not None:
        subject_ids = sorted(set(Question.objects.filter(pk__in=question_ids)
                                 .values_list("subject_id", flat=True)))
    if subject_ids is not None and not subject_ids:
        return 0
    questions, papers = _figures(None if subject_ids is None else list(subject_ids))
    with transaction.atomic():
        _upsert("analytics_questionstats", "question_id", _QUESTION_COLUMNS, [
            {"question_id": q.question_id, "n": q.n, "n_correct": q.n_correct,
             "n_skipped": q.n_skipped, "facility": q.facility,
             "discrimination": q.discrimination, "n_discrimination": q.n_discrimination,
             "mean_time_ms": q.mean_time_ms, "median_time_ms": q.median_time_ms,
             "skip_rate": q.skip_rate, "enough_data": q.enough_data, "flags": q.flags}
            for q in questions], now=now)
        _upsert("analytics_choicestats", "choice_id", _CHOICE_COLUMNS, [
            {"choice_id": c.choice_id, "question_id": c.question_id, "count": c.count,
             "proportion": c.proportion, "upper_count": c.upper_count,
             "upper_proportion": c.upper_proportion, "lower_count": c.lower_count,
             "lower_proportion": c.lower_proportion}
            for q in questions for c in q.choices], now=now)
        _upsert("analytics_paperstats", "paper_id", _PAPER_COLUMNS, [
            {"paper_id": p.paper_id, "n_students": p.n_students, "n_questions": p.n_questions,
             "alpha": p.alpha, "mean": p.mean, "sd": p.sd}
            for p in papers], now=now)
    return len(questions)


# --- Computation ----------------------------------------------------------------------------


def cronbach_alpha(k: int, n: int, score_sum: int, score_squares: int,
                   item_variance_sum: float) -> float | None:
    """Cronbach's alpha from n students' k item scores: k/(k−1)·(1 − Σ var(item)/var(total)),
    population variances; None for fewer than 2 questions or a total variance of 0."""
    if k < 2 or n < 1:
        return None
    total_variance = (n * score_squares - score_sum * score_sum) / (n * n)
    if total_variance <= 0:
        return None
    return k / (k - 1) * (1 - item_variance_sum / total_variance)


def _figures(subject_ids: list[int] | None) -> tuple[list[QuestionFigures], list[PaperFigures]]:
    """Every question (with its options) and every paper of the subjects (all: None)."""
    questions_of = Question.objects.order_by("pk")
    papers_of = ExamPaper.objects.order_by("pk")
    choices_of = Choice.objects.filter(question__question_type__in=CHOICE_TYPES).order_by(
        "question_id", "label", "pk")
    if subject_ids is not None:
        questions_of = questions_of.filter(subject_id__in=subject_ids)
        papers_of = papers_of.filter(subject_id__in=subject_ids)
        choices_of = choices_of.filter(question__subject_id__in=subject_ids)
    questions, in_paper = {}, {}
    for pk, subject_id, paper_id, question_type, status in questions_of.values_list(
            "pk", "subject_id", "paper_id", "question_type", "status"):
        questions[pk] = QuestionFigures(question_id=pk, subject_id=subject_id,
                                        paper_id=paper_id, question_type=question_type)
        if paper_id is not None and status != Question.Status.DRAFT:
            in_paper[pk] = paper_id
    for choice_id, question_id, label, is_key in choices_of.values_list(
            "pk", "question_id", "label", "is_correct"):
        if question_id in questions:
            questions[question_id].choices.append(ChoiceFigures(
                choice_id=choice_id, question_id=question_id, label=label, is_key=is_key))
    papers = {pk: PaperFigures(paper_id=pk, subject_id=subject_id)
              for pk, subject_id in papers_of.values_list("pk", "subject_id")}
    for paper_id in in_paper.values():
        if paper_id in papers:
            papers[paper_id].n_questions += 1

    rows = _first_attempt_rows(subject_ids)
    if len(rows):
        _question_figures(questions, rows)
        _paper_figures(papers, in_paper, rows)
    for q in questions.values():
        for c in q.choices:
            c.proportion = c.count / q.n if q.n else None
            c.upper_proportion = c.upper_count / q.n_upper if q.n_upper else None
            c.lower_proportion = c.lower_count / q.n_lower if q.n_lower else None
        q.enough_data = q.n >= settings.ANALYTICS_MIN_N
        q.flags = _flags(q)
    return list(questions.values()), list(papers.values())


# Columns of the first-attempt rows (_first_attempts_sql).
QUESTION, STUDENT, TIME, CHOICE, OUTCOME, REST = range(6)
RIGHT, SKIPPED = 1, 2  # outcomes; 0 is wrong
_FETCH_ROWS = 50_000


def _first_attempt_rows(subject_ids: list[int] | None) -> np.ndarray:
    """The subjects' first attempts as a float array, one row each (columns above)."""
    sql, params = _first_attempts_sql(subject_ids, settings.ANALYTICS_MIN_OTHER_ATTEMPTS)
    chunks = []
    # Converted in chunks, so that only one chunk of Python tuples exists at a time. Not a
    # server-side cursor on PostgreSQL: planned for its first rows (cursor_tuple_fraction)
    # and fetched in round trips, it measured 30–50 % slower here.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(_FETCH_ROWS):
            chunks.append(np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.float64,
                                      count=len(chunk) * 6).reshape(-1, 6))
    return np.concatenate(chunks) if chunks else np.empty((0, 6))


def _question_figures(questions: dict[int, QuestionFigures], rows: np.ndarray) -> None:
    """Each question's figures from its first-attempt rows.

    The database did the set-based part (each student's subject totals, the rest scores);
    what is left are per-question reductions, vectorised here: sums (n, right, skipped, time,
    the Pearson terms), and what needs the attempts in order, for which SQL window functions
    were several times slower (bench/RESULTS.md): medians and the thirds."""
    ids, index = np.unique(rows[:, QUESTION].astype(np.int64), return_inverse=True)
    size = len(ids)
    time_ms, rest = rows[:, TIME], rows[:, REST]
    x = (rows[:, OUTCOME] == RIGHT).astype(np.float64)
    n = np.bincount(index, minlength=size)
    n_correct = np.bincount(index, weights=x, minlength=size)
    n_skipped = np.bincount(index, weights=rows[:, OUTCOME] == SKIPPED, minlength=size)
    time_sum = np.bincount(index, weights=time_ms, minlength=size)

    # Medians: each question's times in order (one sort of question·2³² + time); the middle
    # one, or the mean of the middle two.
    ordered = np.sort((index.astype(np.int64) << 32) + time_ms.astype(np.int64)) & 0xFFFFFFFF
    starts = np.cumsum(n) - n
    medians = (ordered[starts + (n - 1) // 2] + ordered[starts + n // 2]) / 2

    # Discrimination: Pearson's r of x and the rest score over the counted students, from
    # centred sums; None where either variance is 0 (all x equal, or all rest scores equal).
    counted = rest >= 0
    at, cx, cy = index[counted], x[counted], rest[counted]
    m = np.bincount(at, minlength=size)
    right_counted = np.bincount(at, weights=cx, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = right_counted / m
        mean_y = np.bincount(at, weights=cy, minlength=size) / m
        dx, dy = cx - mean_x[at], cy - mean_y[at]
        sxx = np.bincount(at, weights=dx * dx, minlength=size)
        syy = np.bincount(at, weights=dy * dy, minlength=size)
        sxy = np.bincount(at, weights=dx * dy, minlength=size)
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
    lowest, highest = np.full(size, np.inf), np.full(size, -np.inf)
    np.minimum.at(lowest, at, cy)
    np.maximum.at(highest, at, cy)
    defined = (m >= 2) & (right_counted > 0) & (right_counted < m) & (lowest < highest)

    # Thirds (choice questions): the counted students ranked by rest score, highest first,
    # ties by student id, lowest first, cut as NTILE(3) cuts m rows: m // 3 each, plus one for
    # each of the first m % 3 thirds.
    is_choice = np.array([q in questions and questions[q].question_type in CHOICE_TYPES
                          for q in ids.tolist()], dtype=bool)
    third = np.zeros(len(rows), dtype=np.int8)  # 1 top, 3 bottom, 0 neither
    ranked = np.flatnonzero(counted & is_choice[index])
    if len(ranked):
        ranked = ranked[np.lexsort((rows[ranked, STUDENT], -rest[ranked], index[ranked]))]
        group = index[ranked]
        sizes = np.bincount(group, minlength=size)
        rank = np.arange(len(ranked)) - (np.cumsum(sizes) - sizes)[group]
        group_size = sizes[group]
        top = group_size // 3 + (group_size % 3 > 0)
        middle = group_size // 3 + (group_size % 3 > 1)
        third[ranked[rank < top]] = 1
        third[ranked[rank >= top + middle]] = 3
    n_upper = np.bincount(index[third == 1], minlength=size)
    n_lower = np.bincount(index[third == 3], minlength=size)
    choice = rows[:, CHOICE].astype(np.int64)
    chosen = choice > 0
    tallies = []
    for mask in (chosen, chosen & (third == 1), chosen & (third == 3)):
        values, counts = np.unique(choice[mask], return_counts=True)
        tallies.append(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    for i, question_id in enumerate(ids.tolist()):
        q = questions.get(question_id)
        if q is None:  # a question added after the questions were read
            continue
        q.n, q.n_correct, q.n_skipped = int(n[i]), int(n_correct[i]), int(n_skipped[i])
        q.facility, q.skip_rate = q.n_correct / q.n, q.n_skipped / q.n
        q.mean_time_ms, q.median_time_ms = float(time_sum[i]) / q.n, float(medians[i])
        q.n_discrimination = int(m[i])
        q.discrimination = float(r[i]) if defined[i] else None
        if q.question_type in CHOICE_TYPES:
            q.n_upper, q.n_lower = int(n_upper[i]), int(n_lower[i])
            for c in q.choices:
                c.count, c.upper_count, c.lower_count = (
                    tally.get(c.choice_id, 0) for tally in tallies)


def _paper_figures(papers: dict[int, PaperFigures], in_paper: dict[int, int],
                   rows: np.ndarray) -> None:
    """Each paper's scores over the students whose first attempts cover every question of it
    that is not a draft (a student has one first attempt per question, so covering means as
    many as the paper has): their number, Cronbach's alpha, mean and population SD."""
    paper_ids = sorted(papers)
    position = {paper_id: i for i, paper_id in enumerate(paper_ids)}
    of_question = sorted((q, position[p]) for q, p in in_paper.items() if p in position)
    if not of_question:
        return
    # Each row's paper (its position in paper_ids), −1 for a question in no paper.
    keys = np.array([q for q, _ in of_question], dtype=np.int64)
    values = np.array([p for _, p in of_question], dtype=np.int64)
    question = rows[:, QUESTION].astype(np.int64)
    found = np.minimum(np.searchsorted(keys, question), len(keys) - 1)
    paper = np.where(keys[found] == question, values[found], -1)
    keep = paper >= 0
    if not keep.any():
        return
    size = len(paper_ids)
    paper, question = paper[keep], question[keep]
    x = (rows[keep, OUTCOME] == RIGHT).astype(np.int64)
    k = np.array([papers[p].n_questions for p in paper_ids], dtype=np.int64)
    # One (student, paper) pair per student who answered any of a paper's questions.
    pairs, pair = np.unique(rows[keep, STUDENT].astype(np.int64) * size + paper,
                            return_inverse=True)
    pair_paper = pairs % size
    score = np.bincount(pair, weights=x).astype(np.int64)
    complete = np.bincount(pair) == k[pair_paper]
    n = np.bincount(pair_paper[complete], minlength=size)
    totals = np.bincount(pair_paper[complete], weights=score[complete], minlength=size)
    squares = np.bincount(pair_paper[complete], weights=score[complete] ** 2, minlength=size)
    # Each question's proportion right among the complete students of its paper.
    counted = complete[pair]
    items, item = np.unique(question[counted], return_inverse=True)
    item_paper = np.zeros(len(items), dtype=np.int64)
    item_paper[item] = paper[counted]
    p = np.bincount(item, weights=x[counted], minlength=len(items)) / n[item_paper]
    item_variance = np.bincount(item_paper, weights=p * (1 - p), minlength=size)
    for i, paper_id in enumerate(paper_ids):
        if not n[i]:
            continue
        figures = papers[paper_id]
        figures.n_students = count = int(n[i])
        total, square_sum = int(totals[i]), int(squares[i])
        figures.mean = total / count
        figures.sd = math.sqrt(max(0, count * square_sum - total * total)) / count
        figures.alpha = cronbach_alpha(int(k[i]), count, total, square_sum,
                                       float(item_variance[i]))


def _flags(q: QuestionFigures) -> list[str]:
    """The review flags; below ANALYTICS_MIN_N first attempts only "not_enough_data". Flags
    from the discrimination and the top third also need that many students counted in it."""
    if not q.enough_data:
        return [NOT_ENOUGH_DATA]
    flags = []
    if q.facility is not None and q.facility >= settings.ANALYTICS_TOO_EASY_FACILITY:
        flags.append(TOO_EASY)
    if q.facility is not None and q.facility <= settings.ANALYTICS_TOO_HARD_FACILITY:
        flags.append(TOO_HARD)
    if q.n_discrimination < settings.ANALYTICS_MIN_N:
        return flags
    negative = q.discrimination is not None and q.discrimination < 0
    if negative:
        flags.append(NEGATIVE_DISCRIMINATION)
    elif (q.discrimination is not None
          and q.discrimination < settings.ANALYTICS_WEAK_DISCRIMINATION):
        flags.append(WEAK_DISCRIMINATION)
    keys = [c.upper_count for c in q.choices if c.is_key]
    distractor_preferred = bool(keys) and any(
        c.upper_count > max(keys) for c in q.choices if not c.is_key)
    if negative or distractor_preferred:
        flags.append(POSSIBLE_WRONG_KEY)
    return flags


# --- SQL ------------------------------------------------------------------------------------


def _materialized() -> str:
    # Computed once per statement, not re-run for each use (PostgreSQL 12+, SQLite 3.35+).
    if connection.vendor == "sqlite" and connection.Database.sqlite_version_info < (3, 35):
        return ""
    return "MATERIALIZED"


def _subject_filter(column: str, subject_ids: list[int] | None) -> tuple[str, list]:
    if subject_ids is None:
        return "1 = 1", []
    return f"{column} IN ({', '.join(['%s'] * len(subject_ids))})", list(subject_ids)


def _first_attempts_sql(subject_ids: list[int] | None, min_other: int) -> tuple[str, list]:
    """One row per first attempt at a question of the subjects: question, student, time,
    choice (0: none), outcome (1 right, 0 wrong, 2 skipped), and the rest score: the
    student's right answers on their other first attempts in the subject over their number,
    or −1 with fewer than `min_other` of them (not counted in the discrimination).

    fa: the first attempts (x: 1 right, 0 wrong or skipped); totals: each student's first
    attempts and right answers per subject, joined back to each first attempt. The statement
    takes a shape per database, each measured at 1M attempts (bench/analytics_questions.py):
    SQLite reads the first attempts once into a materialized CTE and reads that twice; there,
    `a CROSS JOIN q` scans the attempts and looks each question up rather than walk them
    question by question through an index (about 8 s instead of under 1 s). PostgreSQL
    aggregates the totals in parallel straight from the table, and joins them to the first
    attempts of a subquery it keeps whole (OFFSET 0): left to itself, its estimates favour
    joining questions to totals first, a detour through millions of rows (twice as slow);
    SQLite's materialized CTE is about 20 % slower there."""
    where, params = _subject_filter("q.subject_id", subject_ids)
    first = f"""
        SELECT a.student_id, a.question_id, q.subject_id, a.choice_id, a.time_taken_ms,
               CASE WHEN a.is_correct THEN 1 ELSE 0 END AS x,
               CASE WHEN a.skipped THEN 2 WHEN a.is_correct THEN 1 ELSE 0 END AS outcome
        FROM core_attempt a CROSS JOIN core_question q
        WHERE q.id = a.question_id AND a.attempt_number = 1 AND {where}"""
    columns = """
        SELECT fa.question_id, fa.student_id, fa.time_taken_ms,
               COALESCE(fa.choice_id, 0) AS choice, fa.outcome,
               CASE WHEN totals.t - 1 >= %s
                    THEN CAST(totals.c - fa.x AS DOUBLE PRECISION) / (totals.t - 1)
                    ELSE -1 END AS rest"""
    joined = """
        CROSS JOIN totals
        WHERE totals.student_id = fa.student_id AND totals.subject_id = fa.subject_id"""
    if connection.vendor == "postgresql":
        sql = f"""
            WITH totals AS (
                SELECT student_id, subject_id, COUNT(*) AS t, SUM(x) AS c
                FROM ({first}) f GROUP BY student_id, subject_id
            )
            {columns}
            FROM ({first} OFFSET 0) fa {joined}"""
        return sql, [*params, min_other, *params]
    sql = f"""
        WITH fa AS {_materialized()} ({first}),
        totals AS (
            SELECT student_id, subject_id, COUNT(*) AS t, SUM(x) AS c
            FROM fa GROUP BY student_id, subject_id
        )
        {columns}
        FROM fa {joined}"""
    return sql, [*params, min_other]


# --- Writing --------------------------------------------------------------------------------

# (column, PostgreSQL type) of each stored table, its key first; computed_at is added.
_QUESTION_COLUMNS = [
    ("question_id", "bigint"), ("n", "integer"), ("n_correct", "integer"),
    ("n_skipped", "integer"), ("facility", "double precision"),
    ("discrimination", "double precision"), ("n_discrimination", "integer"),
    ("mean_time_ms", "double precision"), ("median_time_ms", "double precision"),
    ("skip_rate", "double precision"), ("enough_data", "boolean"), ("flags", "jsonb"),
]
_CHOICE_COLUMNS = [
    ("choice_id", "bigint"), ("question_id", "bigint"), ("count", "integer"),
    ("proportion", "double precision"), ("upper_count", "integer"),
    ("upper_proportion", "double precision"), ("lower_count", "integer"),
    ("lower_proportion", "double precision"),
]
_PAPER_COLUMNS = [
    ("paper_id", "bigint"), ("n_students", "integer"), ("n_questions", "integer"),
    ("alpha", "double precision"), ("mean", "double precision"), ("sd", "double precision"),
]


def _upsert(table: str, key: str, columns: list[tuple[str, str]], rows: list[dict], *,
            now: datetime.datetime) -> None:
    """INSERT … SELECT … ON CONFLICT DO UPDATE of all `rows` in one statement: they travel as
    one JSON parameter, expanded by the database (jsonb_to_recordset / json_each)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    names = [name for name, _ in columns]
    target = ", ".join(quote(name) for name in [*names, "computed_at"])
    updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}"
                        for name in [*names, "computed_at"] if name != key)
    if connection.vendor == "postgresql":
        record = ", ".join(f"{quote(name)} {kind}" for name, kind in columns)
        select = (f"SELECT {', '.join('r.' + quote(name) for name in names)}, %s "
                  f"FROM jsonb_to_recordset(%s::jsonb) AS r({record})")
    else:
        # `WHERE true` stops SQLite reading ON CONFLICT as a join constraint.
        select = ("SELECT " + ", ".join(f"json_extract(value, '$.{name}')" for name in names)
                  + ", %s FROM json_each(%s) WHERE true")
    sql = (f"INSERT INTO {quote(table)} ({target}) {select} "
           f"ON CONFLICT ({quote(key)}) DO UPDATE SET {updates}")
    payload = json.dumps(rows, allow_nan=False, separators=(",", ":"))
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), payload])
