"""Spaced review (analytics/review.py): cards made at first wrong answers, one review per later
local day, the schedule against fsrs.Scheduler called directly on the same sequence (fuzzing
off), idempotence and the high-water mark, replay after a regrade, due counts, and a query
count that does not grow with the number of students."""

import datetime
import random
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fsrs import Card, Rating, Scheduler, State

from analytics import review
from analytics.models import ReviewCard
from core.models import Attempt
from core.services import student_create
from core.tests.factories import make_question

UTC = datetime.UTC
D = datetime.date
ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London", "America/New_York",
         "Asia/Kolkata", "UTC"]


@pytest.fixture(autouse=True)
def no_fuzz(monkeypatch):
    monkeypatch.setattr(review, "FUZZING", False)


def at(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


def direct_scheduler() -> Scheduler:
    """FSRS as the issue specifies it, built here independently of analytics.review."""
    return Scheduler(desired_retention=0.9, learning_steps=(), relearning_steps=(),
                     enable_fuzzing=False)


def answer(student, question, answered_at, correct, *, skipped=False) -> Attempt:
    """One attempt stamped as attempt_record stamps it (local date in the student's zone, the
    next attempt number)."""
    number = Attempt.objects.filter(student=student, question=question).count() + 1
    return Attempt.objects.create(
        student=student, question=question, is_correct=correct and not skipped,
        skipped=skipped, time_taken_ms=5_000, answered_at=answered_at,
        local_date=answered_at.astimezone(student.profile.zone).date(),
        attempt_number=number)


def make_students(n, *, offset=0):
    return [student_create(email=f"r{offset + i}@example.com",
                           timezone_name=ZONES[(offset + i) % len(ZONES)]).user
            for i in range(n)]


def random_world(rng, students, questions, *, first_day, days, per_day):
    """Random attempts: each student answers `per_day` times on each of `days` days (random
    instants of the UTC day, so local dates straddle), a question picked from the list; 40 %
    wrong, a tenth of those skipped. Bulk-created with local dates and attempt numbers."""
    numbers = defaultdict(int)
    rows = []
    for student in students:
        zone = student.profile.zone
        instants = sorted(
            datetime.datetime.combine(first_day + datetime.timedelta(days=d), datetime.time(),
                                      UTC) + datetime.timedelta(seconds=rng.randrange(86_400))
            for d in range(days) for _ in range(per_day))
        for answered_at in instants:
            question = rng.choice(questions)
            numbers[student.pk, question.pk] += 1
            wrong = rng.random() < 0.4
            skipped = wrong and rng.random() < 0.1
            rows.append(Attempt(
                student=student, question=question, is_correct=not wrong, skipped=skipped,
                time_taken_ms=rng.randrange(1_000, 60_000), answered_at=answered_at,
                local_date=answered_at.astimezone(zone).date(),
                attempt_number=numbers[student.pk, question.pk]))
    Attempt.objects.bulk_create(rows, batch_size=500)


def records(**filters) -> list[dict]:
    return list(Attempt.objects.filter(**filters).values(
        "id", "student_id", "question_id", "answered_at", "local_date", "is_correct"))


def expected_cards(rows) -> dict:
    """The cards, computed in plain Python from the attempt records with fsrs directly: per
    (student, question) in time order, the first wrong answer (Again), then the first attempt
    of every later local date (Again when wrong, Good when right)."""
    fsrs = direct_scheduler()
    pairs = defaultdict(list)
    for r in rows:
        pairs[r["student_id"], r["question_id"]].append(r)
    cards = {}
    for key, history in pairs.items():
        history.sort(key=lambda r: (r["answered_at"], r["id"]))
        first_wrong = next((i for i, r in enumerate(history) if not r["is_correct"]), None)
        if first_wrong is None:
            continue
        reviews = [history[first_wrong]]
        for r in history[first_wrong + 1:]:
            if r["local_date"] > reviews[-1]["local_date"]:
                reviews.append(r)
        card = Card(card_id=1, due=reviews[0]["answered_at"])
        ratings = [Rating.Good if r["is_correct"] else Rating.Again for r in reviews]
        for r, rating in zip(reviews, ratings, strict=True):
            card, _ = fsrs.review_card(card, rating, r["answered_at"].astimezone(UTC))
        cards[key] = dict(state=int(card.state), step=card.step, stability=card.stability,
                          difficulty=card.difficulty, due=card.due,
                          last_review=card.last_review, reviews=len(reviews),
                          lapses=ratings.count(Rating.Again),
                          applied_attempt_id=reviews[-1]["id"],
                          applied_local_date=reviews[-1]["local_date"])
    return cards


FIELDS = ("state", "step", "stability", "difficulty", "due", "last_review", "reviews", "lapses",
          "applied_attempt_id", "applied_local_date")


def stored_cards(**filters) -> dict:
    return {(c["student_id"], c["question_id"]): {f: c[f] for f in FIELDS}
            for c in ReviewCard.objects.filter(**filters).values("student_id", "question_id",
                                                                 *FIELDS)}


def assert_same(stored: dict, expected: dict):
    assert stored.keys() == expected.keys()
    for key, want in expected.items():
        got = stored[key]
        for name in FIELDS:
            if name in ("stability", "difficulty"):
                assert got[name] == pytest.approx(want[name], rel=1e-12), (key, name)
            else:
                assert got[name] == want[name], (key, name, got[name], want[name])


def snapshot() -> list[dict]:
    return list(ReviewCard.objects.order_by("id").values())


# --- Creation and days ----------------------------------------------------------------------


def test_a_card_is_made_only_at_a_wrong_answer(student):
    always_right, wrong_first, right_then_wrong, skipped = (make_question() for _ in range(4))
    answer(student, always_right, at(2026, 1, 5, 9), True)
    answer(student, always_right, at(2026, 1, 6, 9), True)
    answer(student, wrong_first, at(2026, 1, 5, 9, 30), False)
    answer(student, right_then_wrong, at(2026, 1, 5, 9), True)
    late = answer(student, right_then_wrong, at(2026, 1, 5, 17), False)
    answer(student, skipped, at(2026, 1, 5, 10), False, skipped=True)

    result = review.reviews_apply(dates=[D(2026, 1, 5), D(2026, 1, 6)])

    cards = {c.question_id: c for c in ReviewCard.objects.all()}
    assert set(cards) == {wrong_first.pk, right_then_wrong.pk, skipped.pk}
    assert (result.cards_created, result.cards_updated, result.attempts_applied) == (3, 0, 3)
    # Made by the wrong answer of 17:00, not the right one of 09:00; due a day after it.
    card = cards[right_then_wrong.pk]
    assert (card.applied_attempt_id, card.last_review, card.reviews, card.lapses) == (
        late.pk, at(2026, 1, 5, 17), 1, 1)
    assert card.due == at(2026, 1, 6, 17)
    assert card.state == ReviewCard.State.REVIEW and card.step is None
    assert str(result) == "Spaced review: 3 cards created, 0 updated, 3 attempts applied."


def test_one_review_per_later_local_day_in_the_students_zone(catalogue):
    # New York is UTC−5 in January: 15:00 UTC on the 5th and 01:00 UTC on the 6th are both the
    # local 5th; 14:00 UTC on the 6th is the local 6th.
    student = student_create(email="ny@example.com", timezone_name="America/New_York").user
    question = make_question()
    first = answer(student, question, at(2026, 1, 5, 15), False)
    answer(student, question, at(2026, 1, 6, 1), True)  # same local day: ignored
    next_day = answer(student, question, at(2026, 1, 6, 14), True)
    answer(student, question, at(2026, 1, 6, 20), False)  # second of the local 6th: ignored
    local = {r["id"]: r["local_date"] for r in records()}
    assert sorted(local.values()) == [D(2026, 1, 5)] * 2 + [D(2026, 1, 6)] * 2
    assert local[first.pk] == D(2026, 1, 5) and local[next_day.pk] == D(2026, 1, 6)

    result = review.reviews_apply(dates=[D(2026, 1, 5), D(2026, 1, 6)])

    assert result.attempts_applied == 2
    card = ReviewCard.objects.get()
    fsrs = direct_scheduler()
    want, _ = fsrs.review_card(Card(card_id=7, due=first.answered_at), Rating.Again,
                               at(2026, 1, 5, 15))
    want, _ = fsrs.review_card(want, Rating.Good, at(2026, 1, 6, 14))
    assert (card.reviews, card.lapses, card.applied_attempt_id, card.applied_local_date) == (
        2, 1, next_day.pk, D(2026, 1, 6))
    assert card.due == want.due and card.stability == pytest.approx(want.stability, rel=1e-12)
    assert card.difficulty == pytest.approx(want.difficulty, rel=1e-12)


def test_ratings_and_schedule_match_fsrs_called_directly(student):
    question = make_question()
    plan = [(at(2026, 1, 5, 8), False), (at(2026, 1, 5, 9), True),  # same day: ignored
            (at(2026, 1, 6, 8), False), (at(2026, 1, 7, 12), True),
            (at(2026, 1, 15, 7), True), (at(2026, 2, 20, 18), True),
            (at(2026, 4, 1, 9), False)]
    attempts = [answer(student, question, when, correct) for when, correct in plan]
    review.reviews_apply(dates=None)

    fsrs = direct_scheduler()
    card = Card(card_id=1, due=plan[0][0])
    applied = [0, 2, 3, 4, 5, 6]
    ratings = [Rating.Again, Rating.Again, Rating.Good, Rating.Good, Rating.Good, Rating.Again]
    assert ratings == [Rating.Good if plan[i][1] else Rating.Again for i in applied]
    for i, rating in zip(applied, ratings, strict=True):
        card, _ = fsrs.review_card(card, rating, plan[i][0])
    stored = ReviewCard.objects.get()
    assert stored.state == int(card.state) == State.Review
    assert stored.step is card.step is None
    assert stored.stability == pytest.approx(card.stability, rel=1e-12)
    assert stored.difficulty == pytest.approx(card.difficulty, rel=1e-12)
    assert (stored.due, stored.last_review) == (card.due, card.last_review)
    assert (stored.reviews, stored.lapses, stored.applied_attempt_id) == (6, 3, attempts[6].pk)
    # A figure to read: stability after the whole sequence, and the interval it gives.
    assert stored.due - stored.last_review == datetime.timedelta(
        days=fsrs._next_interval(stability=card.stability))


# --- Whole worlds ---------------------------------------------------------------------------


def test_day_by_day_equals_plain_python_and_is_idempotent(catalogue):
    rng = random.Random(7)
    students = make_students(8)
    questions = [make_question(subject_code=c) for c in ["MATH"] * 4 + ["PHYS"] * 3 + ["CS"] * 3]
    random_world(rng, students, questions, first_day=D(2026, 3, 1), days=9, per_day=6)
    dates = sorted({r["local_date"] for r in records()})
    assert len(dates) >= 10  # the zones straddle UTC days

    totals = review.ReviewResult()
    for day in dates:
        step = review.reviews_apply(dates=[day], now=at(2026, 4, 1))
        totals.cards_created += step.cards_created
        totals.cards_updated += step.cards_updated
        totals.attempts_applied += step.attempts_applied
    expected = expected_cards(records())
    assert_same(stored_cards(), expected)
    assert totals.cards_created == len(expected)
    assert totals.attempts_applied == sum(c["reviews"] for c in expected.values())
    assert totals.cards_updated > 0

    before = snapshot()
    again = review.reviews_apply(dates=dates, now=at(2026, 5, 1))
    everything = review.reviews_apply(dates=None, now=at(2026, 5, 1))
    assert (again.cards_created, again.cards_updated, again.attempts_applied) == (0, 0, 0)
    assert (everything.cards_created, everything.cards_updated) == (0, 0)
    assert snapshot() == before  # updated_at included: nothing was written


def test_all_at_once_and_in_chunks_give_the_same_cards(catalogue, monkeypatch):
    rng = random.Random(11)
    students = make_students(6)
    questions = [make_question() for _ in range(6)]
    random_world(rng, students, questions, first_day=D(2026, 3, 1), days=5, per_day=5)
    expected = expected_cards(records())

    monkeypatch.setattr(review, "CHUNK_ATTEMPTS", 40)  # several students per chunk, 5 chunks
    result = review.reviews_apply(dates=None)
    assert result.chunks >= 3
    assert_same(stored_cards(), expected)


def test_only_the_given_students(catalogue):
    rng = random.Random(3)
    students = make_students(4)
    questions = [make_question() for _ in range(4)]
    random_world(rng, students, questions, first_day=D(2026, 3, 1), days=3, per_day=6)
    chosen = [students[0].pk, students[2].pk]
    review.reviews_apply(student_ids=chosen)
    assert_same(stored_cards(), expected_cards(records(student_id__in=chosen)))


# --- The high-water mark --------------------------------------------------------------------


def test_the_mark_day_one_then_day_two_then_day_one_again(student):
    q1, q2 = make_question(), make_question()
    answer(student, q1, at(2026, 1, 5, 9), False)
    answer(student, q2, at(2026, 1, 5, 10), True)
    answer(student, q1, at(2026, 1, 6, 9), True)
    answer(student, q2, at(2026, 1, 6, 10), False)
    day1, day2 = D(2026, 1, 5), D(2026, 1, 6)

    first = review.reviews_apply(dates=[day1], now=at(2026, 1, 5, 23))
    assert (first.cards_created, first.cards_updated) == (1, 0)
    assert ReviewCard.objects.get().applied_local_date == day1
    second = review.reviews_apply(dates=[day2], now=at(2026, 1, 6, 23))
    assert (second.cards_created, second.cards_updated, second.attempts_applied) == (1, 1, 2)
    before = snapshot()
    third = review.reviews_apply(dates=[day1], now=at(2026, 1, 7, 23))
    assert (third.cards_created, third.cards_updated, third.attempts_applied) == (0, 0, 0)
    assert snapshot() == before
    assert_same(stored_cards(), expected_cards(records()))


def test_a_stale_mark_is_not_overwritten(student):
    """Two runs that read the same card: the second one's write finds the mark moved and
    changes nothing (no attempt applied twice)."""
    question = make_question()
    answer(student, question, at(2026, 1, 5, 9), False)
    answer(student, question, at(2026, 1, 6, 9), False)
    review.reviews_apply(dates=[D(2026, 1, 5)])
    ReviewCard.objects.update(applied_local_date=D(2026, 1, 6))  # as if another run moved it
    before = snapshot()
    result = review.reviews_apply(dates=[D(2026, 1, 6)])
    assert (result.cards_updated, snapshot()) == (0, before)


# --- Replay ---------------------------------------------------------------------------------


def test_replay_after_a_regrade_below_the_mark_equals_building_from_scratch(catalogue):
    rng = random.Random(5)
    students = make_students(6)
    questions = [make_question() for _ in range(3)]
    random_world(rng, students, questions, first_day=D(2026, 3, 1), days=6, per_day=4)
    target = questions[0]
    # Two more students with a history of the target made to show a card appearing (always
    # right, the first becomes wrong) and vanishing (the only wrong answer becomes right).
    appears, vanishes = make_students(2, offset=6)
    answer(appears, target, at(2026, 3, 1, 12), True)
    answer(appears, target, at(2026, 3, 3, 12), True)
    answer(vanishes, target, at(2026, 3, 1, 12), False)
    answer(vanishes, target, at(2026, 3, 4, 12), True)
    review.reviews_apply(dates=None)
    before = stored_cards(question=target)
    before_other = stored_cards(question__in=questions[1:])

    # The regrade: flip every student's first attempt at the target, below every mark.
    firsts = {}
    for pk, student_id, correct in (Attempt.objects.filter(question=target)
                                    .order_by("answered_at", "id")
                                    .values_list("id", "student_id", "is_correct")):
        firsts.setdefault(student_id, (pk, correct))
    for pk, correct in firsts.values():
        Attempt.objects.filter(pk=pk).update(is_correct=not correct, skipped=False)

    rebuilt = review.reviews_replay(target.pk, list(firsts))

    expected = expected_cards(records(question=target))
    after = stored_cards(question=target)
    assert_same(after, expected)
    assert stored_cards(question__in=questions[1:]) == before_other
    assert set(expected) - set(before) == {(appears.pk, target.pk)}
    assert set(before) - set(expected) == {(vanishes.pk, target.pk)}
    assert any(after[k] != before[k] for k in set(after) & set(before))
    assert rebuilt == len(expected) + 1  # written, and the one deleted
    # Applying afterwards changes nothing: the marks are where a from-scratch run leaves them.
    result = review.reviews_apply(dates=None)
    assert (result.cards_created, result.cards_updated) == (0, 0)


def test_replay_removes_a_card_that_no_longer_has_a_wrong_answer(student):
    question = make_question()
    wrong = answer(student, question, at(2026, 1, 5, 9), False)
    answer(student, question, at(2026, 1, 6, 9), True)
    review.reviews_apply()
    assert ReviewCard.objects.count() == 1
    Attempt.objects.filter(pk=wrong.pk).update(is_correct=True)
    assert review.reviews_replay(question.pk) == 1
    assert not ReviewCard.objects.exists()


def test_replay_of_only_some_students_leaves_the_others(catalogue):
    question = make_question()
    one, two = make_students(2)
    a = answer(one, question, at(2026, 1, 5, 9), False)
    b = answer(two, question, at(2026, 1, 5, 9), False)
    review.reviews_apply()
    Attempt.objects.filter(pk__in=[a.pk, b.pk]).update(is_correct=True)
    review.reviews_replay(question.pk, [one.pk])
    assert list(ReviewCard.objects.values_list("student_id", flat=True)) == [two.pk]


# --- Due ------------------------------------------------------------------------------------


def test_due_counts_and_the_due_list(catalogue, django_assert_num_queries):
    rng = random.Random(9)
    students = make_students(5)
    questions = [make_question() for _ in range(5)]
    random_world(rng, students, questions, first_day=D(2026, 3, 1), days=4, per_day=5)
    review.reviews_apply()
    now = at(2026, 3, 7, 12)
    cards = list(ReviewCard.objects.values("student_id", "due", "id", "question_id"))
    expected = {s.pk: sum(c["student_id"] == s.pk and c["due"] <= now for c in cards)
                for s in students}
    assert sum(expected.values()) > 0 and 0 < sum(expected.values()) < len(cards)

    with django_assert_num_queries(1):
        counts = review.reviews_due_counts([s.pk for s in students], at=now)
    assert counts == expected
    assert review.reviews_due_counts(None, at=now) == {k: v for k, v in expected.items() if v}

    student = max(students, key=lambda s: expected[s.pk])
    with django_assert_num_queries(1):
        due = list(review.reviews_due(student, at=now))
        questions_seen = [c.question.pk for c in due]
    mine = sorted((c for c in cards if c["student_id"] == student.pk and c["due"] <= now),
                  key=lambda c: (c["due"], c["id"]))
    assert questions_seen == [c["question_id"] for c in mine]
    assert [c.pk for c in review.reviews_due(student, at=now, limit=2)] == [
        c["id"] for c in mine[:2]]


# --- Cost -----------------------------------------------------------------------------------


def test_query_count_does_not_grow_with_students(catalogue):
    questions = [make_question() for _ in range(6)]
    small, large = make_students(2), make_students(20, offset=2)
    for group in (small, large):
        random_world(random.Random(1), group, questions, first_day=D(2026, 3, 1), days=2,
                     per_day=6)
    counts = {}
    for name, group in (("small", small), ("large", large)):
        ids = [s.pk for s in group]
        for label, dates in (("create", [D(2026, 3, 1)]), ("update", [D(2026, 3, 2)])):
            with CaptureQueriesContext(connection) as queries:
                result = review.reviews_apply(dates=dates, student_ids=ids)
            counts[name, label] = len(queries.captured_queries)
            assert result.chunks == 1
    # Plan, read, insert: 3; plan, read, insert, update: 4.
    assert counts["small", "create"] == counts["large", "create"] == 3
    assert counts["small", "update"] <= counts["large", "update"] == 4
    # Only these two local dates were applied (a student west of UTC also has the 28th).
    assert_same(stored_cards(), expected_cards(
        [r for r in records() if D(2026, 3, 1) <= r["local_date"] <= D(2026, 3, 2)]))


def test_query_count_at_two_sizes_with_the_fixture(catalogue, django_assert_max_num_queries):
    questions = [make_question() for _ in range(4)]
    for n, offset in ((3, 0), (30, 3)):
        group = make_students(n, offset=offset)
        random_world(random.Random(2), group, questions, first_day=D(2026, 3, 1), days=3,
                     per_day=4)
        with django_assert_max_num_queries(4):  # plan, read, insert, update
            review.reviews_apply(student_ids=[s.pk for s in group])
        with django_assert_max_num_queries(2):  # plan, read, nothing to write
            review.reviews_apply(student_ids=[s.pk for s in group])
        # plan, read, then insert and delete in a transaction (a savepoint and its release)
        with django_assert_max_num_queries(6):
            review.reviews_replay(questions[0].pk, [s.pk for s in group])


def test_nothing_to_do_costs_nothing(django_assert_num_queries, db):
    with django_assert_num_queries(0):
        assert review.reviews_apply(dates=[]).chunks == 0
        assert review.reviews_apply(student_ids=[]).attempts_applied == 0
        assert review.reviews_replay(1, []) == 0
        assert review.reviews_due_counts([]) == {}


def test_fuzzing_keeps_the_interval_within_its_range(student, monkeypatch):
    """With fuzzing on (production), a long interval moves by a few percent at most."""
    monkeypatch.setattr(review, "FUZZING", True)
    question = make_question()
    plan = [(at(2026, 1, 5, 8), False), (at(2026, 1, 6, 8), True), (at(2026, 1, 20, 8), True),
            (at(2026, 3, 20, 8), True)]
    for when, correct in plan:
        answer(student, question, when, correct)
    review.reviews_apply()
    unfuzzed = expected_cards(records())[student.pk, question.pk]
    stored = ReviewCard.objects.get()
    base = (unfuzzed["due"] - unfuzzed["last_review"]).days
    got = (stored.due - stored.last_review).days
    # fsrs's fuzz range for an interval over 20 days, plus one for its rounding.
    spread = 1 + 0.15 * (7 - 2.5) + 0.1 * (20 - 7) + 0.05 * (base - 20)
    assert base > 20 and abs(got - base) <= spread + 1
    # Fuzz moves the due date only: the memory state is the unfuzzed one.
    assert stored.stability == pytest.approx(unfuzzed["stability"], rel=1e-12)
    assert stored.last_review == unfuzzed["last_review"]
