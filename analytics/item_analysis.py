"""Question statistics and item analysis (classical test theory) from students' first attempts:
per question its facility, discrimination, times and skip rate, per option how often it was
chosen overall and by the top and bottom thirds of students, review flags, and per exam paper
Cronbach's alpha. Definitions, settings and the command: docs/analytics.md, "Question
statistics and item analysis".

The heavy work (grouping every first attempt of a subject) is three SQL statements computed in
the database; what is left per question (a square root, the flags) is arithmetic over one row
per question and option, done here, so the live analysis (`item_analysis`, what the command
prints) and the stored one (`question_stats_refresh`, the schedule's) are the same code. The
stored rows are written with one `INSERT … SELECT … ON CONFLICT DO UPDATE` per table, whose
rows arrive as a single JSON parameter: the number of queries is fixed whatever the number of
students, questions or subjects.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.models import ExamPaper, Question, Subject

# Flags, as stored in QuestionStats.flags and printed by the command.
TOO_EASY = "too_easy"
TOO_HARD = "too_hard"
WEAK_DISCRIMINATION = "weak_discrimination"
NEGATIVE_DISCRIMINATION = "negative_discrimination"
POSSIBLE_WRONG_KEY = "possible_wrong_key"
NOT_ENOUGH_DATA = "not_enough_data"

# A variance this small relative to the sum of squares it came from is rounding noise: the rest
# scores are all equal (Σy² and (Σy)²/m differ only in their last bits).
_RELATIVE_EPSILON = 1e-12


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


def pearson(m: int, sx: float, sy: float, sxx: float, syy: float, sxy: float) -> float | None:
    """Pearson's r from the sums over m pairs; None when either variance is 0 (or m < 2)."""
    if m < 2:
        return None
    vx, vy = m * sxx - sx * sx, m * syy - sy * sy
    if vx <= _RELATIVE_EPSILON * m * sxx or vy <= _RELATIVE_EPSILON * m * syy:
        return None
    r = (m * sxy - sx * sy) / math.sqrt(vx * vy)
    return max(-1.0, min(1.0, r))


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
    min_other = settings.ANALYTICS_MIN_OTHER_ATTEMPTS
    questions: dict[int, QuestionFigures] = {}
    with connection.cursor() as cursor:
        sql, params = _question_sql(subject_ids, min_other)
        cursor.execute(sql, params)
        for (question_id, subject_id, paper_id, question_type, n, n_correct, n_skipped,
             time_sum, median_time, m, sx, sy, syy, sxy) in cursor.fetchall():
            q = QuestionFigures(question_id=question_id, subject_id=subject_id,
                                paper_id=paper_id, question_type=question_type)
            questions[question_id] = q
            if not n:
                continue
            q.n, q.n_correct, q.n_skipped = n, n_correct, n_skipped
            q.facility, q.skip_rate = n_correct / n, n_skipped / n
            q.mean_time_ms, q.median_time_ms = time_sum / n, float(median_time)
            q.n_discrimination = m
            # The item score is 0 or 1, so Σx² = Σx.
            q.discrimination = pearson(m, sx or 0, sy or 0.0, sx or 0, syy or 0.0, sxy or 0.0)

        sql, params = _choice_sql(subject_ids, min_other)
        cursor.execute(sql, params)
        for (question_id, choice_id, label, is_key, count, upper, lower) in cursor.fetchall():
            q = questions.get(question_id)
            if q is None:  # a question added between the two statements
                continue
            # Rows without a choice are the skipped attempts: in the group sizes only.
            q.n_upper += upper
            q.n_lower += lower
            if choice_id is not None:
                q.choices.append(ChoiceFigures(
                    choice_id=choice_id, question_id=question_id, label=label,
                    is_key=bool(is_key), count=count, upper_count=upper, lower_count=lower))

        sql, params = _paper_sql(subject_ids)
        cursor.execute(sql, params)
        papers = [_paper(*row) for row in cursor.fetchall()]

    for q in questions.values():
        for c in q.choices:
            c.proportion = c.count / q.n if q.n else None
            c.upper_proportion = c.upper_count / q.n_upper if q.n_upper else None
            c.lower_proportion = c.lower_count / q.n_lower if q.n_lower else None
        q.choices.sort(key=lambda c: (c.label, c.choice_id))
        q.enough_data = q.n >= settings.ANALYTICS_MIN_N
        q.flags = _flags(q)
    return list(questions.values()), papers


def _paper(paper_id, subject_id, k, n, score_sum, score_squares, item_variance_sum):
    paper = PaperFigures(paper_id=paper_id, subject_id=subject_id, n_questions=k, n_students=n)
    if n:
        paper.mean = score_sum / n
        paper.sd = math.sqrt(max(0, n * score_squares - score_sum * score_sum)) / n
        paper.alpha = cronbach_alpha(k, n, score_sum, score_squares, item_variance_sum or 0.0)
    return paper


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


def _first_attempts_cte(subject_ids: list[int] | None, min_other: int) -> tuple[str, list]:
    """qs: the subjects' questions; fa: their first attempts (x: 1 right, 0 wrong or skipped);
    totals: each student's first attempts and right answers per subject; scored: each first
    attempt with its rest score y (right answers on the student's other first attempts in the
    subject over their number), NULL unless there are at least `min_other` of them."""
    where, params = _subject_filter("q.subject_id", subject_ids)
    materialized = _materialized()
    sql = f"""
        WITH qs AS {materialized} (
            SELECT q.id, q.subject_id, q.paper_id, q.question_type
            FROM core_question q WHERE {where}
        ),
        fa AS {materialized} (
            SELECT a.student_id, a.question_id, qs.subject_id, a.choice_id, a.time_taken_ms,
                   CASE WHEN a.is_correct THEN 1 ELSE 0 END AS x,
                   CASE WHEN a.skipped THEN 1 ELSE 0 END AS skipped
            FROM core_attempt a CROSS JOIN qs
            WHERE qs.id = a.question_id AND a.attempt_number = 1
        ),
        totals AS {materialized} (
            SELECT student_id, subject_id, COUNT(*) AS t, SUM(x) AS c
            FROM fa GROUP BY student_id, subject_id
        ),
        scored AS (
            SELECT fa.student_id, fa.question_id, fa.choice_id, fa.time_taken_ms, fa.x,
                   fa.skipped,
                   CASE WHEN totals.t - 1 >= %s
                        THEN CAST(totals.c - fa.x AS DOUBLE PRECISION) / (totals.t - 1)
                   END AS y
            FROM fa CROSS JOIN totals
            WHERE totals.student_id = fa.student_id AND totals.subject_id = fa.subject_id
        )"""
    return sql, [*params, min_other]


def _question_sql(subject_ids: list[int] | None, min_other: int) -> tuple[str, list]:
    """One row per question of the subjects (none answered: zeros and NULLs): id, subject,
    paper, type, n, right, skipped, Σtime, median time, then over the students counted in the
    discrimination: m, Σx, Σy, Σy², Σxy."""
    cte, params = _first_attempts_cte(subject_ids, min_other)
    sums = """COUNT(*) AS n, SUM(x) AS n_correct, SUM(skipped) AS n_skipped,
              SUM(time_taken_ms) AS time_sum, COUNT(y) AS m,
              SUM(CASE WHEN y IS NOT NULL THEN x ELSE 0 END) AS sx, SUM(y) AS sy,
              SUM(y * y) AS syy, SUM(x * y) AS sxy"""
    if connection.vendor == "postgresql":
        median = "percentile_cont(0.5) WITHIN GROUP (ORDER BY time_taken_ms) AS median_time"
        sql = f"""{cte},
            agg AS (SELECT question_id, {sums}, {median} FROM scored GROUP BY question_id)
            SELECT qs.id, qs.subject_id, qs.paper_id, qs.question_type, agg.n, agg.n_correct,
                   agg.n_skipped, agg.time_sum, agg.median_time, agg.m, agg.sx, agg.sy,
                   agg.syy, agg.sxy
            FROM qs LEFT JOIN agg ON agg.question_id = qs.id ORDER BY qs.id"""
    else:
        # No percentile aggregate in SQLite: the middle one or two times of each question, by
        # their row number in time order.
        sql = f"""{cte},
            agg AS {_materialized()} (
                SELECT question_id, {sums} FROM scored GROUP BY question_id
            ),
            ordered AS (
                SELECT question_id, time_taken_ms,
                       ROW_NUMBER() OVER (PARTITION BY question_id ORDER BY time_taken_ms) AS r
                FROM fa
            ),
            med AS (
                SELECT o.question_id,
                       AVG(CAST(o.time_taken_ms AS DOUBLE PRECISION)) AS median_time
                FROM ordered o CROSS JOIN agg
                WHERE agg.question_id = o.question_id
                  AND o.r IN ((agg.n + 1) / 2, (agg.n + 2) / 2)
                GROUP BY o.question_id
            )
            SELECT qs.id, qs.subject_id, qs.paper_id, qs.question_type, agg.n, agg.n_correct,
                   agg.n_skipped, agg.time_sum, med.median_time, agg.m, agg.sx, agg.sy,
                   agg.syy, agg.sxy
            FROM qs LEFT JOIN agg ON agg.question_id = qs.id
                    LEFT JOIN med ON med.question_id = qs.id
            ORDER BY qs.id"""
    return sql, params


def _choice_sql(subject_ids: list[int] | None, min_other: int) -> tuple[str, list]:
    """Per choice question and option (and one row with a NULL choice for the skips): label,
    key, first attempts that chose it, and of them those by students in the top and bottom
    thirds. Thirds: the students counted in the discrimination, ranked by rest score (highest
    first; ties by student id, lowest first), cut by NTILE(3): sizes differ by at most one,
    the extra students going to the top third, then the middle. Options nobody chose come
    from the right join, with zeros."""
    cte, params = _first_attempts_cte(subject_ids, min_other)
    types = [kind.value for kind in Question.CHOICE_TYPES]
    sql = f"""{cte},
        ranked AS (
            SELECT s.question_id, s.choice_id,
                   CASE WHEN s.y IS NOT NULL THEN NTILE(3) OVER (
                       PARTITION BY s.question_id, CASE WHEN s.y IS NULL THEN 0 ELSE 1 END
                       ORDER BY s.y DESC, s.student_id) END AS third
            FROM scored s JOIN qs ON qs.id = s.question_id
            WHERE qs.question_type IN ({', '.join(['%s'] * len(types))})
        ),
        counts AS (
            SELECT question_id, choice_id, COUNT(*) AS n,
                   SUM(CASE WHEN third = 1 THEN 1 ELSE 0 END) AS upper_n,
                   SUM(CASE WHEN third = 3 THEN 1 ELSE 0 END) AS lower_n
            FROM ranked GROUP BY question_id, choice_id
        )
        SELECT ch.question_id, ch.id, ch.label, ch.is_correct, COALESCE(counts.n, 0),
               COALESCE(counts.upper_n, 0), COALESCE(counts.lower_n, 0)
        FROM core_choice ch JOIN qs ON qs.id = ch.question_id
             LEFT JOIN counts ON counts.choice_id = ch.id
        WHERE qs.question_type IN ({', '.join(['%s'] * len(types))})
        UNION ALL
        SELECT question_id, NULL, NULL, NULL, n, upper_n, lower_n
        FROM counts WHERE choice_id IS NULL"""
    return sql, [*params, *types, *types]


def _paper_sql(subject_ids: list[int] | None) -> tuple[str, list]:
    """One row per paper of the subjects: id, subject, k (its questions that are not drafts),
    then over the students whose first attempts cover all k: n, Σscore, Σscore², and
    Σ p(1−p) over its questions (p: the proportion of those students right)."""
    question_where, question_params = _subject_filter("q.subject_id", subject_ids)
    paper_where, paper_params = _subject_filter("p.subject_id", subject_ids)
    materialized = _materialized()
    sql = f"""
        WITH pq AS {materialized} (
            SELECT q.id AS question_id, q.paper_id FROM core_question q
            WHERE q.paper_id IS NOT NULL AND q.status <> %s AND {question_where}
        ),
        k AS (SELECT paper_id, COUNT(*) AS k FROM pq GROUP BY paper_id),
        pa AS {materialized} (
            SELECT a.student_id, pq.paper_id, pq.question_id,
                   CASE WHEN a.is_correct THEN 1 ELSE 0 END AS x
            FROM core_attempt a CROSS JOIN pq
            WHERE pq.question_id = a.question_id AND a.attempt_number = 1
        ),
        complete AS {materialized} (
            SELECT sp.student_id, sp.paper_id, sp.score
            FROM (SELECT student_id, paper_id, COUNT(*) AS answered, SUM(x) AS score
                  FROM pa GROUP BY student_id, paper_id) sp
            JOIN k ON k.paper_id = sp.paper_id
            WHERE sp.answered = k.k
        ),
        item AS (
            SELECT pa.paper_id, pa.question_id, AVG(CAST(pa.x AS DOUBLE PRECISION)) AS p
            FROM pa JOIN complete c
              ON c.student_id = pa.student_id AND c.paper_id = pa.paper_id
            GROUP BY pa.paper_id, pa.question_id
        ),
        item_variance AS (SELECT paper_id, SUM(p * (1 - p)) AS v FROM item GROUP BY paper_id),
        scores AS (
            SELECT paper_id, COUNT(*) AS n, CAST(SUM(score) AS BIGINT) AS s,
                   CAST(SUM(score * score) AS BIGINT) AS ss
            FROM complete GROUP BY paper_id
        )
        SELECT p.id, p.subject_id, COALESCE(k.k, 0), COALESCE(scores.n, 0), scores.s,
               scores.ss, item_variance.v
        FROM core_exampaper p
             LEFT JOIN k ON k.paper_id = p.id
             LEFT JOIN scores ON scores.paper_id = p.id
             LEFT JOIN item_variance ON item_variance.paper_id = p.id
        WHERE {paper_where}
        ORDER BY p.id"""
    return sql, [Question.Status.DRAFT.value, *question_params, *paper_params]


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
