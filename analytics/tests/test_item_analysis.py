"""Question statistics and item analysis (analytics/item_analysis.py), checked against figures
computed independently with numpy over the same first attempts."""

import datetime
import json
import math
import random
from collections import defaultdict

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.item_analysis import item_analysis, question_stats_refresh
from analytics.models import ChoiceStats, PaperStats, QuestionStats
from core import services
from core.models import Attempt, ExamPaper, Question, StudentProfile, Subject, User
from core.tests.factories import make_question

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)
ZONES = ["UTC", "Pacific/Tongatapu", "Pacific/Honolulu", "Europe/London"]


def _students(n, prefix):
    """n students with their profiles, in bulk (student_create, one by one, would dominate the
    run time; nothing here needs what its signal adds)."""
    users = User.objects.bulk_create(
        User(email=f"{prefix}{i}@example.com", password="!") for i in range(n))
    return StudentProfile.objects.bulk_create(
        StudentProfile(user=user, timezone=ZONES[i % len(ZONES)])
        for i, user in enumerate(users))


def _attempt(profile, question, *, correct, choice=None, skipped=False, ms=1000, number=1,
             minutes=0):
    at = START + datetime.timedelta(minutes=minutes)
    return Attempt(student_id=profile.user_id, question=question, choice=choice,
                   is_correct=correct and not skipped, skipped=skipped, time_taken_ms=ms,
                   answered_at=at, local_date=at.astimezone(profile.zone).date(),
                   attempt_number=number)


def _paper(code, number=1):
    return ExamPaper.objects.create(subject=Subject.objects.get(code=code), exam_body="Board",
                                    year=2024, sitting="June", paper_number=number)


def _generated_world(n_students, *, seed=1, prefix="g", paper_number=1):
    """MATH: a paper of 6 multiple-choice questions, 3 loose ones (one numeric, one
    true/false); PHYS: 3 questions the same students also answer (rest scores are per subject).
    Abilities and difficulties on a logistic model, 8 % skips, students answering a random
    subset (some only a few questions, below the discrimination's minimum), and repeat attempts
    that must not count. Returns the questions and the first attempts as plain tuples."""
    rng = random.Random(seed)
    paper = _paper("MATH", paper_number)
    math_questions = [make_question(paper=paper, year=2024, correct="B") for _ in range(6)]
    math_questions += [make_question(correct="C"),
                       make_question(question_type=Question.Type.NUMERIC, answer="42"),
                       make_question(question_type=Question.Type.TRUE_FALSE, labels="TF",
                                     correct="T")]
    phys_questions = [make_question(subject_code="PHYS") for _ in range(3)]
    difficulty = {q.pk: rng.uniform(-1.5, 1.5) for q in math_questions + phys_questions}
    choices = {q.pk: list(q.choices.all()) for q in math_questions + phys_questions}
    rows, first = [], []
    for i, profile in enumerate(_students(n_students, prefix)):
        ability = rng.gauss(0, 1)
        answered = (math_questions if i % 4 == 0 else
                    rng.sample(math_questions, rng.randint(2, len(math_questions))))
        for k, question in enumerate(answered + phys_questions[:rng.randint(0, 3)]):
            correct = rng.random() < 1 / (1 + math.exp(difficulty[question.pk] - ability))
            skipped = rng.random() < 0.08
            choice = None
            if choices[question.pk] and not skipped:
                keyed = [c for c in choices[question.pk] if c.is_correct == correct]
                choice = rng.choice(keyed)
            ms = rng.randint(2_000, 90_000)
            rows.append(_attempt(profile, question, correct=correct, choice=choice,
                                 skipped=skipped, ms=ms, minutes=k))
            first.append((profile.user_id, question, int(correct and not skipped), skipped, ms,
                          choice.pk if choice else None))
            if rng.random() < 0.3:  # a second try, always right: never counted
                rows.append(_attempt(profile, question, correct=True,
                                     choice=next((c for c in choices[question.pk]
                                                  if c.is_correct), None),
                                     ms=1, number=2, minutes=100 + k))
    Attempt.objects.bulk_create(rows)
    return paper, math_questions, phys_questions, first


def _expected(first, min_other=4):
    """Per question, with numpy: n, facility, skip rate, mean and median time, discrimination
    (np.corrcoef over the item and rest-score vectors) and the choice counts by thirds."""
    totals = defaultdict(lambda: [0, 0])
    for student, question, x, *_ in first:
        totals[student, question.subject_id][0] += 1
        totals[student, question.subject_id][1] += x
    by_question = defaultdict(list)
    for row in first:
        by_question[row[1].pk].append(row)
    expected = {}
    for question_id, rows in by_question.items():
        x = np.array([r[2] for r in rows], dtype=float)
        times = np.array([r[4] for r in rows], dtype=float)
        pairs = []
        for student, question, item, *_ in rows:
            t, c = totals[student, question.subject_id]
            if t - 1 >= min_other:
                pairs.append((student, item, (c - item) / (t - 1)))
        discrimination = None
        if len(pairs) >= 2:
            xs, ys = np.array([p[1] for p in pairs]), np.array([p[2] for p in pairs])
            if xs.std() > 0 and ys.std() > 1e-12:
                discrimination = float(np.corrcoef(xs, ys)[0, 1])
        ranked = [p[0] for p in sorted(pairs, key=lambda p: (-p[2], p[0]))]
        upper, _, lower = (set(part) for part in np.array_split(np.array(ranked, dtype=int), 3))
        choice_of = {r[0]: r[5] for r in rows}
        expected[question_id] = {
            "n": len(rows), "facility": x.mean(), "skip_rate": np.mean([r[3] for r in rows]),
            "mean_time_ms": times.mean(), "median_time_ms": float(np.median(times)),
            "discrimination": discrimination, "n_discrimination": len(pairs),
            "choices": {c: sum(1 for r in rows if r[5] == c) for c in {r[5] for r in rows}},
            "upper": {c: sum(1 for s in upper if choice_of[s] == c) for c in set(choice_of.values())},
            "lower": {c: sum(1 for s in lower if choice_of[s] == c) for c in set(choice_of.values())},
            "n_upper": len(upper), "n_lower": len(lower),
        }
    return expected


def _alpha(matrix):
    matrix = np.asarray(matrix, dtype=float)
    k = matrix.shape[1]
    return k / (k - 1) * (1 - matrix.var(axis=0).sum() / matrix.sum(axis=1).var())


def test_figures_match_numpy_on_a_generated_data_set(catalogue):
    paper, math_questions, phys_questions, first = _generated_world(90)
    expected = _expected(first)
    analysis = item_analysis("MATH")
    figures = {q.question_id: q for q in analysis.questions}
    assert set(figures) == {q.pk for q in math_questions}
    for question in math_questions:
        got, want = figures[question.pk], expected[question.pk]
        assert got.n == want["n"]
        assert got.facility == pytest.approx(want["facility"], abs=1e-12)
        assert got.skip_rate == pytest.approx(want["skip_rate"], abs=1e-12)
        assert got.mean_time_ms == pytest.approx(want["mean_time_ms"], rel=1e-12)
        assert got.median_time_ms == want["median_time_ms"]
        assert got.n_discrimination == want["n_discrimination"]
        assert want["discrimination"] is not None
        assert got.discrimination == pytest.approx(want["discrimination"], abs=1e-9)
        if question.question_type in Question.CHOICE_TYPES:
            assert (got.n_upper, got.n_lower) == (want["n_upper"], want["n_lower"])
        else:  # the thirds are for the options' breakdown only
            assert (got.n_upper, got.n_lower, got.choices) == (0, 0, [])
            continue
        assert len(got.choices) == question.choices.count()
        for choice in got.choices:
            assert choice.count == want["choices"].get(choice.choice_id, 0)
            assert choice.proportion == pytest.approx(choice.count / got.n)
            assert choice.upper_count == want["upper"].get(choice.choice_id, 0)
            assert choice.lower_count == want["lower"].get(choice.choice_id, 0)
            assert choice.upper_proportion == pytest.approx(choice.upper_count / got.n_upper)
        # A skipped answer chose nothing: the options and the skips make every attempt.
        assert sum(c.count for c in got.choices) + got.n_skipped == got.n

    # Cronbach's alpha over the students whose first attempts cover the whole paper.
    item = defaultdict(dict)
    for student, question, x, *_ in first:
        if question.paper_id == paper.pk:
            item[student][question.pk] = x
    complete = [[row[q.pk] for q in math_questions[:6]] for row in item.values() if len(row) == 6]
    scores = np.array(complete).sum(axis=1)
    (stats,) = analysis.papers
    assert stats.n_students == len(complete) >= 20
    assert stats.n_questions == 6
    assert stats.alpha == pytest.approx(_alpha(complete), abs=1e-9)
    assert stats.mean == pytest.approx(scores.mean(), abs=1e-12)
    assert stats.sd == pytest.approx(scores.std(), abs=1e-12)


def test_discrimination_equals_moodles_index_on_a_complete_data_set(catalogue):
    """Every student answered every question: the rest score is (total − item)/(k − 1), a
    linear function of Moodle's rest-of-test score, so the correlation is the same. Five
    questions: each student has the 4 other first attempts the default asks for."""
    rng = random.Random(5)
    questions = [make_question(subject_code="CHEM", correct="A") for _ in range(5)]
    students = _students(45, "m")
    marks = {}
    rows = []
    for profile in students:
        ability = rng.gauss(0, 1)
        for k, question in enumerate(questions):
            mark = int(rng.random() < 1 / (1 + math.exp(k * 0.4 - 1.2 - ability)))
            marks[profile.user_id, question.pk] = mark
            rows.append(_attempt(profile, question, correct=bool(mark), minutes=k,
                                 choice=question.choices.get(label="A" if mark else "C")))
    Attempt.objects.bulk_create(rows)
    figures = {q.question_id: q for q in item_analysis("CHEM").questions}
    for question in questions:
        # Moodle's discrimination index (question/classes/statistics/questions/calculator.php):
        # 100 · cov(item mark, rest of test) / sqrt(var(item mark) · var(rest of test)).
        n = len(students)
        x = [marks[p.user_id, question.pk] for p in students]
        rest = [sum(marks[p.user_id, q.pk] for q in questions) - marks[p.user_id, question.pk]
                for p in students]
        mean_x, mean_rest = sum(x) / n, sum(rest) / n
        covariance = sum((a - mean_x) * (b - mean_rest) for a, b in zip(x, rest, strict=True))
        variance_x = sum((a - mean_x) ** 2 for a in x)
        variance_rest = sum((b - mean_rest) ** 2 for b in rest)
        moodle = 100 * covariance / math.sqrt(variance_x * variance_rest)
        assert figures[question.pk].n_discrimination == n
        assert 100 * figures[question.pk].discrimination == pytest.approx(moodle, abs=1e-9)


def test_below_the_minimum_n_the_figures_show_and_only_the_flags_are_suppressed(
        catalogue, settings):
    easy = make_question(subject_code="CS", correct="A")
    others = [make_question(subject_code="CS", correct="A") for _ in range(4)]
    rows = []
    for i, profile in enumerate(_students(25, "c")):
        rows.append(_attempt(profile, easy, correct=True, choice=easy.choices.get(label="A")))
        for k, question in enumerate(others):
            right = (i + k) % 3 > 0
            rows.append(_attempt(profile, question, correct=right, minutes=k + 1,
                                 choice=question.choices.get(label="A" if right else "B")))
    Attempt.objects.bulk_create(rows)
    (figures,) = [q for q in item_analysis("CS").questions if q.question_id == easy.pk]
    assert (figures.n, figures.facility, figures.enough_data) == (25, 1.0, False)
    assert figures.discrimination is None  # every student right: no item variance
    assert figures.flags == ["not_enough_data"]
    assert figures.as_json()["facility"] == 1.0

    settings.ANALYTICS_MIN_N = 25
    (figures,) = [q for q in item_analysis("CS").questions if q.question_id == easy.pk]
    assert figures.enough_data
    assert figures.flags == ["too_easy"]


def test_a_skip_counts_as_wrong_and_in_the_skip_rate(catalogue):
    question = make_question(subject_code="PHYS", correct="A")
    others = [make_question(subject_code="PHYS", correct="A") for _ in range(4)]
    rows = []
    students = _students(6, "k")
    for i, profile in enumerate(students):
        for k, other in enumerate(others):
            rows.append(_attempt(profile, other, correct=i >= 3, minutes=k,
                                 choice=other.choices.get(label="A" if i >= 3 else "B")))
        # The three strong students skip it; the three weak ones get it right.
        if i >= 3:
            rows.append(_attempt(profile, question, correct=False, skipped=True, minutes=9))
        else:
            rows.append(_attempt(profile, question, correct=True, minutes=9,
                                 choice=question.choices.get(label="A")))
    Attempt.objects.bulk_create(rows)
    (figures,) = [q for q in item_analysis("PHYS").questions if q.question_id == question.pk]
    assert (figures.n, figures.n_correct, figures.n_skipped) == (6, 3, 3)
    assert figures.facility == 0.5 and figures.skip_rate == 0.5
    # Skipped = 0 for the strong students, right = 1 for the weak: a perfect negative relation.
    assert figures.discrimination == pytest.approx(-1.0)
    by_label = {c.label: c for c in figures.choices}
    assert by_label["A"].count == 3 and by_label["A"].proportion == 0.5
    assert sum(c.proportion for c in figures.choices) == pytest.approx(1 - figures.skip_rate)
    assert by_label["A"].upper_count == 0 and by_label["A"].lower_count == 2


def test_no_discrimination_when_every_rest_score_is_the_same(catalogue):
    question = make_question(subject_code="CHEM", correct="A")
    others = [make_question(subject_code="CHEM", correct="A") for _ in range(4)]
    rows = []
    for i, profile in enumerate(_students(8, "e")):
        for k, other in enumerate(others):  # everyone right on the others: rest score 1
            rows.append(_attempt(profile, other, correct=True, minutes=k,
                                 choice=other.choices.get(label="A")))
        rows.append(_attempt(profile, question, correct=i % 2 == 0, minutes=9,
                             choice=question.choices.get(label="A" if i % 2 == 0 else "B")))
    Attempt.objects.bulk_create(rows)
    (figures,) = [q for q in item_analysis("CHEM").questions if q.question_id == question.pk]
    assert (figures.n_discrimination, figures.facility) == (8, 0.5)
    assert figures.discrimination is None
    assert figures.as_json()["discrimination"] is None


def _crafted_key_world():
    """BIO, 60 students ranked by ability: 8 ordinary questions (the stronger, the more
    right), `wrong` keyed A while the strong choose C (really right), and `tempting` keyed B
    where the top third prefer the distractor D, yet the weak never get it: positive
    discrimination, still a possible wrong key."""
    ordinary = [make_question(subject_code="BIO", correct="A") for _ in range(8)]
    wrong = make_question(subject_code="BIO", correct="A")
    tempting = make_question(subject_code="BIO", correct="B")
    rows = []
    for i, profile in enumerate(_students(60, "w")):
        strength = i / 59  # student ids rise with i: the strongest are the last
        for k, question in enumerate(ordinary):
            right = strength > (k + 1) / 10
            rows.append(_attempt(profile, question, correct=right, minutes=k,
                                 choice=question.choices.get(label="A" if right else "B")))
        label = "C" if strength > 0.5 else ("A" if i % 2 else "D")
        rows.append(_attempt(profile, wrong, correct=label == "A", minutes=20,
                             choice=wrong.choices.get(label=label)))
        label = ("D" if i % 5 < 3 else "B") if strength > 2 / 3 else (
            "B" if strength > 1 / 3 and i % 3 == 0 else "A")
        rows.append(_attempt(profile, tempting, correct=label == "B", minutes=21,
                             choice=tempting.choices.get(label=label)))
    Attempt.objects.bulk_create(rows)
    return ordinary, wrong, tempting


def test_a_possible_wrong_key_is_flagged(catalogue):
    ordinary, wrong, tempting = _crafted_key_world()
    figures = {q.question_id: q for q in item_analysis("BIO").questions}
    flagged = figures[wrong.pk]
    assert flagged.discrimination < 0
    assert "negative_discrimination" in flagged.flags
    assert "possible_wrong_key" in flagged.flags
    by_label = {c.label: c for c in flagged.choices}
    assert by_label["C"].upper_proportion == 1.0 and by_label["A"].upper_proportion == 0.0
    assert by_label["A"].lower_proportion > 0.4

    tempted = figures[tempting.pk]
    assert tempted.discrimination > 0.15
    assert tempted.flags == ["possible_wrong_key"]
    by_label = {c.label: c for c in tempted.choices}
    assert by_label["D"].upper_count > by_label["B"].upper_count
    assert by_label["B"].lower_count == 0
    for question in ordinary[2:6]:
        assert "possible_wrong_key" not in figures[question.pk].flags
        assert figures[question.pk].discrimination > 0.3


def test_refresh_stores_what_the_live_analysis_shows_and_is_idempotent(catalogue):
    paper, math_questions, phys_questions, _ = _generated_world(40, seed=3)
    untouched = make_question(subject_code="MATH")  # nobody answered it
    written = question_stats_refresh()
    # Every question of every subject: here, those made above.
    assert written == QuestionStats.objects.count() == len(math_questions) + 4
    live = {q.question_id: q for q in item_analysis("MATH").questions}
    for row in QuestionStats.objects.filter(question__subject__code="MATH"):
        figures = live[row.question_id]
        for name in ("n", "n_correct", "n_skipped", "facility", "discrimination",
                     "n_discrimination", "mean_time_ms", "median_time_ms", "skip_rate",
                     "enough_data", "flags"):
            assert getattr(row, name) == pytest.approx(getattr(figures, name)), name
    assert QuestionStats.objects.get(question=untouched).n == 0
    assert QuestionStats.objects.get(question=untouched).facility is None
    for row in ChoiceStats.objects.filter(question__subject__code="MATH"):
        (figures,) = [c for c in live[row.question_id].choices if c.choice_id == row.choice_id]
        assert (row.count, row.upper_count, row.lower_count) == (
            figures.count, figures.upper_count, figures.lower_count)
        assert row.proportion == pytest.approx(figures.proportion)
    stored = PaperStats.objects.get(paper=paper)
    (figures,) = item_analysis("MATH", paper=paper).papers
    assert (stored.n_students, stored.n_questions) == (figures.n_students, 6)
    assert stored.alpha == pytest.approx(figures.alpha)

    counts = (QuestionStats.objects.count(), ChoiceStats.objects.count(),
              PaperStats.objects.count())
    later = START + datetime.timedelta(days=1)
    assert question_stats_refresh(now=later) == written
    assert counts == (QuestionStats.objects.count(), ChoiceStats.objects.count(),
                      PaperStats.objects.count())
    assert set(QuestionStats.objects.values_list("computed_at", flat=True)) == {later}


def test_refresh_narrows_to_the_subjects_asked_for(catalogue):
    _, math_questions, phys_questions, _ = _generated_world(12, seed=4)
    assert question_stats_refresh(question_ids=[phys_questions[0].pk]) == 3
    assert set(QuestionStats.objects.values_list("question_id", flat=True)) == {
        q.pk for q in phys_questions}
    assert question_stats_refresh(subject_ids=[]) == 0
    phys = Subject.objects.get(code="PHYS").pk
    assert question_stats_refresh(subject_ids=[phys]) == 3


def test_the_number_of_queries_does_not_grow_with_the_data(catalogue):
    _generated_world(8, seed=6, prefix="small")
    with CaptureQueriesContext(connection) as small:
        question_stats_refresh()
    with CaptureQueriesContext(connection) as small_live:
        item_analysis("MATH")
    _generated_world(70, seed=7, prefix="large", paper_number=2)
    for code in ("CHEM", "BIO"):  # more subjects and papers too
        _paper(code)
        make_question(subject_code=code)
    with CaptureQueriesContext(connection) as large:
        question_stats_refresh()
    with CaptureQueriesContext(connection) as large_live:
        item_analysis("MATH")
    assert QuestionStats.objects.count() == 26
    # Four reads, three upserts, and the savepoint around them (inside the test's transaction);
    # the live analysis: the subject, then the four reads.
    assert len(large) == len(small) <= 9
    assert len(large_live) == len(small_live) <= 5


def test_the_command_prints_json_for_scripts(run_command, catalogue):
    paper, math_questions, _, _ = _generated_world(30, seed=8)
    code, out, err = run_command("item_analysis", "--subject", "MATH", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["subject"] == "MATH"
    assert {"subject", "questions", "papers"} <= set(data)
    assert [q["id"] for q in data["questions"]] == sorted(q.pk for q in math_questions)
    for question in data["questions"]:
        assert {"id", "n", "facility", "discrimination", "mean_time_ms", "median_time_ms",
                "skip_rate", "choices", "flags"} <= set(question)
        if question["n"] < 30:
            assert question["flags"] == ["not_enough_data"]
        for choice in question["choices"]:
            assert {"label", "is_key", "count", "proportion", "upper_proportion",
                    "lower_proportion"} <= set(choice)
            assert 0 <= choice["proportion"] <= 1
    numeric = next(q for q in data["questions"] if q["id"] == math_questions[7].pk)
    assert numeric["choices"] == []
    (paper_json,) = data["papers"]
    assert {"id", "n_students", "alpha", "mean", "sd"} <= set(paper_json)
    assert paper_json["id"] == paper.pk

    code, out, err = run_command("item_analysis", "--subject", "MATH", "--paper",
                                 str(paper.pk), "--json")
    assert code == 0, err
    assert [q["id"] for q in json.loads(out)["questions"]] == [q.pk for q in math_questions[:6]]


def test_the_command_computes_live_and_prints_a_table(run_command, catalogue, student):
    question = make_question(subject_code="CS", correct="A")
    paper = _paper("CS")
    services.attempt_record(student=student, question=question,
                            choice=question.choices.get(label="A"), time_taken_ms=4200)
    code, out, err = run_command("item_analysis", "--subject", "CS")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.split()[:1] == [str(question.pk)])
    assert line.split()[1:4] == ["1", "1.00", "—"]  # n, facility, no discrimination
    assert "4.2" in line and "not_enough_data" in line
    assert "Cronbach" in out and str(paper.pk) in out
    assert not QuestionStats.objects.exists()  # computed, not read from the stored rows


def test_the_command_refuses_bad_input(run_command, catalogue):
    other = _paper("PHYS")
    code, out, err = run_command("item_analysis", "--subject", "NOPE")
    assert code == 2 and "No subject with the code 'NOPE'" in err
    code, out, err = run_command("item_analysis", "--subject", "MATH", "--paper", str(other.pk))
    assert code == 2 and "not a paper of MATH" in err
    code, out, err = run_command("item_analysis", "--subject", "MATH", "--paper", "999999")
    assert code == 2 and "No paper with id 999999" in err
