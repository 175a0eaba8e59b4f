"""Spaced review of the questions a student got wrong, scheduled by FSRS (the `fsrs` package).
docs/analytics.md, "Spaced review".

A card (analytics.models.ReviewCard) is made the first time a student answers a question
wrongly: that answer is its first review, rated Again, at its `answered_at`. After that, only
the student's first attempt at the question on each later local day (`Attempt.local_date`) is
a review: rated Again when wrong or skipped, Good when right, at that attempt's `answered_at`.
Other attempts of a day already applied are ignored; right answers before the first wrong one
make nothing. FSRS runs without minute-level steps (no learning or relearning steps), so every
reviewed card is in the Review state and due a whole number of days after its last review.

The high-water mark of a card is the local date of the last attempt applied to it
(`applied_local_date`, with that attempt's id in `applied_attempt_id`): an attempt on that date
or before is already reflected in the card, so applying the same dates again changes nothing.
A regrade that changes an attempt below the mark replays the card from the student's whole
history of the question (`reviews_replay`).

Set-based: the students concerned are split into chunks of about CHUNK_ATTEMPTS attempts (one
counting query), and each chunk is one read (the attempts above their card's mark, joined to
the card, ordered by student, question and time) and at most two writes (one `INSERT … SELECT`
for new cards and one `UPDATE … FROM` for changed ones, each taking the rows as one JSON
parameter). The FSRS arithmetic runs in Python. The number of queries depends on the number of
attempts (one chunk per CHUNK_ATTEMPTS), never on the number of students.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from fsrs import Card, Rating, Scheduler, State

from analytics.models import ReviewCard
from core.models import Attempt

UTC = datetime.UTC

# FSRS: 90 % desired retention, default weights, no minute-level steps. Fuzzing spreads the
# due dates of cards reviewed together (a few percent of intervals of 3 days and more); tests
# switch it off (the `fuzzing` argument, or this constant) to compare with fsrs directly.
DESIRED_RETENTION = 0.9
FUZZING = True
# Attempts read per chunk (a chunk is a range of whole students); bounds the memory of a run.
CHUNK_ATTEMPTS = 200_000
# Rows fetched from the database cursor at a time within a chunk.
_FETCH = 5_000


def scheduler(*, fuzzing: bool | None = None) -> Scheduler:
    """The FSRS scheduler every card uses."""
    return Scheduler(desired_retention=DESIRED_RETENTION, learning_steps=(),
                     relearning_steps=(),
                     enable_fuzzing=FUZZING if fuzzing is None else fuzzing)


def card_id(student_id: int, question_id: int) -> int:
    """The FSRS card id: deterministic, student_id · 2³² + question_id (FSRS only copies it
    into its review logs; it does not affect the schedule)."""
    return (student_id << 32) + question_id


@dataclass
class ReviewResult:
    cards_created: int = 0
    cards_updated: int = 0
    attempts_applied: int = 0
    chunks: int = 0

    def __str__(self):
        return (f"Spaced review: {self.cards_created} cards created, {self.cards_updated} "
                f"updated, {self.attempts_applied} attempts applied.")


# --- SQL helpers ----------------------------------------------------------------------------


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _tables() -> dict[str, str]:
    return {"attempt": _q(Attempt._meta.db_table), "card": _q(ReviewCard._meta.db_table)}


def _ids_in(column: str, ids: list[int]) -> tuple[str, object]:
    """`column` among `ids`, as SQL with one parameter (any number of ids)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", ids
    return f"{column} IN (SELECT value FROM json_each(%s))", json.dumps(ids)


def _date_spans(dates: Iterable[datetime.date]) -> list[tuple[datetime.date, datetime.date]]:
    spans: list[list[datetime.date]] = []
    for day in sorted(set(dates)):
        if spans and day - spans[-1][1] == datetime.timedelta(days=1):
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return [(first, last) for first, last in spans]


def _dates_in(column: str, dates: list[datetime.date]) -> tuple[str, list]:
    """`column` on one of `dates`: one BETWEEN per run of consecutive dates."""
    adapt = connection.ops.adapt_datefield_value
    spans = _date_spans(dates)
    sql = " OR ".join(f"{column} BETWEEN %s AND %s" for _ in spans)
    return f"({sql})", [adapt(d) for span in spans for d in span]


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """A datetime from the cursor as FSRS wants it: aware, in datetime.UTC (SQLite gives
    naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _dt_out(value: datetime.datetime | None, pg: bool):
    """A datetime for the JSON rows: PostgreSQL (pg) casts ISO text to timestamptz; SQLite
    stores Django's own text form (naive UTC, 'YYYY-MM-DD HH:MM:SS[.ffffff]')."""
    if value is None:
        return None
    if pg:
        return value.isoformat()
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ")


def _plan(scope_sql: str, params: list) -> list[tuple[int, int]]:
    """One query: the students with attempts in scope, cut into ranges of whole students of
    about CHUNK_ATTEMPTS attempts each."""
    sql = (f"SELECT a.student_id, COUNT(*) FROM {_tables()['attempt']} AS a WHERE {scope_sql} "
           "GROUP BY a.student_id ORDER BY a.student_id")
    ranges: list[tuple[int, int]] = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        first = last = None
        size = 0
        for student_id, count in cursor.fetchall():
            if first is not None and size + count > CHUNK_ATTEMPTS:
                ranges.append((first, last))
                first, size = None, 0
            if first is None:
                first = student_id
            last = student_id
            size += count
        if first is not None:
            ranges.append((first, last))
    return ranges


def _rows(sql: str, params: list) -> Iterator[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(_FETCH):
            yield from batch


# --- Building cards -------------------------------------------------------------------------

# Columns of a card as this module carries it, in the order of the JSON rows written.
_CARD_FIELDS = ("state", "step", "stability", "difficulty", "due", "last_review", "reviews",
                "lapses", "applied_attempt_id", "applied_local_date")


@dataclass
class _Built:
    student_id: int
    question_id: int
    pk: int | None  # the stored card's id (None: a new card)
    mark: datetime.date | None  # the stored card's applied_local_date (None: a new card)
    card: Card
    reviews: int
    lapses: int
    applied_attempt_id: int
    applied_local_date: datetime.date

    def values(self, pg: bool) -> list:
        card = self.card
        return [int(card.state), card.step, card.stability, card.difficulty,
                _dt_out(card.due, pg), _dt_out(card.last_review, pg), self.reviews, self.lapses,
                self.applied_attempt_id, self.applied_local_date.isoformat()]


def _build(rows: Iterator[tuple], fsrs: Scheduler) -> Iterator[tuple[_Built, int]]:
    """Cards from attempt rows ordered by student, question, answered_at, id. Each row:
    (student_id, question_id, attempt id, answered_at, local_date, is_correct) followed by the
    stored card's (id, state, step, stability, difficulty, due, last_review, reviews, lapses,
    applied_attempt_id, applied_local_date), all None when there is none. Yields each card
    that at least one attempt changed, with the number of attempts applied to it."""
    for (student_id, question_id), group in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
        built = None
        applied = 0
        for row in group:
            if built is None:
                if row[6] is not None:  # a stored card: start from it
                    built = _Built(
                        student_id, question_id, row[6], row[16],
                        Card(card_id=card_id(student_id, question_id), state=State(row[7]),
                             step=row[8], stability=row[9], difficulty=row[10],
                             due=_utc(row[11]), last_review=_utc(row[12])),
                        row[13], row[14], row[15], row[16])
                elif row[5]:  # right before any wrong answer: nothing to review
                    continue
            if built is None:  # the first wrong answer makes the card
                answered_at = _utc(row[3])
                built = _Built(student_id, question_id, None, None,
                               Card(card_id=card_id(student_id, question_id), due=answered_at),
                               0, 0, row[2], row[4])
            elif row[4] <= built.applied_local_date:
                # A day already applied (or the day the card was made): only its first
                # attempt counts.
                continue
            else:
                answered_at = _utc(row[3])
            rating = Rating.Good if row[5] else Rating.Again
            built.card, _ = fsrs.review_card(built.card, rating, answered_at)
            built.reviews += 1
            built.lapses += rating == Rating.Again
            built.applied_attempt_id = row[2]
            built.applied_local_date = row[4]
            applied += 1
        if applied:
            yield built, applied


# --- Writing cards --------------------------------------------------------------------------


def _json_columns(names: Iterable[str], casts: dict[str, str]) -> tuple[str, str]:
    """SELECT list and FROM clause that unpack JSON array rows (one parameter) into columns."""
    if connection.vendor == "postgresql":
        select = ", ".join(f"(x->>{n})::{casts[name]} AS {name}" for n, name in enumerate(names))
        return select, "jsonb_array_elements(%s::jsonb) AS x"
    select = ", ".join(f"value->>{n} AS {name}" for n, name in enumerate(names))
    return select, "json_each(%s)"


_CASTS = {"id": "bigint", "mark": "date", "student_id": "bigint", "question_id": "bigint",
          "state": "smallint", "step": "smallint", "stability": "double precision",
          "difficulty": "double precision", "due": "timestamptz", "last_review": "timestamptz",
          "reviews": "integer", "lapses": "integer", "applied_attempt_id": "bigint",
          "applied_local_date": "date"}


def _insert(cards: list[_Built], now: datetime.datetime, *, overwrite: bool) -> int:
    """One INSERT … SELECT for these cards. overwrite=False: a card that exists meanwhile is
    left alone (another run made it); True (replay): it is replaced, created_at kept."""
    if not cards:
        return 0
    names = ("student_id", "question_id", *_CARD_FIELDS)
    select, source = _json_columns(names, _CASTS)
    columns = ", ".join(_q(n) for n in names)
    if overwrite:
        conflict = "DO UPDATE SET " + ", ".join(
            f"{_q(n)} = excluded.{_q(n)}" for n in (*_CARD_FIELDS, "updated_at"))
    else:
        conflict = "DO NOTHING"
    # WHERE true: SQLite would otherwise read ON CONFLICT as a join constraint.
    sql = (f"INSERT INTO {_tables()['card']} ({columns}, created_at, updated_at) "
           f"SELECT {', '.join(names)}, %s, %s FROM (SELECT {select} FROM {source}) AS v "
           f"WHERE true ON CONFLICT (student_id, question_id) {conflict}")
    pg = connection.vendor == "postgresql"
    rows = json.dumps([[c.student_id, c.question_id, *c.values(pg)] for c in cards],
                      separators=(",", ":"))
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [stamp, stamp, rows])
        return cursor.rowcount


def _update(cards: list[_Built], now: datetime.datetime) -> int:
    """One UPDATE … FROM for these stored cards, each only if its mark is still the one it was
    read with (a concurrent run that moved it wins; nothing is applied twice)."""
    if not cards:
        return 0
    names = ("id", "mark", *_CARD_FIELDS)
    select, source = _json_columns(names, _CASTS)
    table = _tables()["card"]
    sets = ", ".join(f"{_q(n)} = v.{n}" for n in _CARD_FIELDS)
    sql = (f"UPDATE {table} SET {sets}, updated_at = %s "
           f"FROM (SELECT {select} FROM {source}) AS v "
           f"WHERE {table}.id = v.id AND {table}.applied_local_date = v.mark")
    pg = connection.vendor == "postgresql"
    rows = json.dumps([[c.pk, c.mark.isoformat(), *c.values(pg)] for c in cards],
                      separators=(",", ":"))
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), rows])
        return cursor.rowcount


# --- Public API -----------------------------------------------------------------------------


_ATTEMPT_COLUMNS = "a.student_id, a.question_id, a.id, a.answered_at, a.local_date, a.is_correct"
_CARD_COLUMNS = ("c.id, c.state, c.step, c.stability, c.difficulty, c.due, c.last_review, "
                 "c.reviews, c.lapses, c.applied_attempt_id, c.applied_local_date")
_ORDER = "ORDER BY a.student_id, a.question_id, a.answered_at, a.id"


def reviews_apply(*, dates: Iterable[datetime.date] | None = None,
                  student_ids: Iterable[int] | None = None,
                  now: datetime.datetime | None = None,
                  fuzzing: bool | None = None) -> ReviewResult:
    """Apply the attempts on these local dates (None: every date) that are above their card's
    mark, creating cards at first wrong answers; only these students when given. Idempotent.
    Dates are meant to be applied in order (the hourly run does): an attempt on a date at or
    below its card's mark is never applied afterwards, so a date missed earlier needs
    `reviews_replay`, and a question never applied before should be backfilled from its first
    date (or with dates=None)."""
    now = now or timezone.now()
    result = ReviewResult()
    scope, params = ["true"], []
    if dates is not None:
        dates = sorted(set(dates))
        if not dates:
            return result
        sql, more = _dates_in("a.local_date", dates)
        scope.append(sql)
        params += more
    if student_ids is not None:
        student_ids = sorted({int(pk) for pk in student_ids})
        if not student_ids:
            return result
        sql, more = _ids_in("a.student_id", student_ids)
        scope.append(sql)
        params.append(more)
    scope_sql = " AND ".join(scope)
    t = _tables()
    read = (f"SELECT {_ATTEMPT_COLUMNS}, {_CARD_COLUMNS} FROM {t['attempt']} AS a "
            f"LEFT JOIN {t['card']} AS c "
            "ON c.student_id = a.student_id AND c.question_id = a.question_id "
            f"WHERE a.student_id BETWEEN %s AND %s AND {scope_sql} "
            f"AND (c.id IS NULL OR a.local_date > c.applied_local_date) {_ORDER}")
    fsrs = scheduler(fuzzing=fuzzing)
    for first, last in _plan(scope_sql, params):
        result.chunks += 1
        new, changed = [], []
        for built, applied in _build(_rows(read, [first, last, *params]), fsrs):
            (changed if built.pk else new).append(built)
            result.attempts_applied += applied
        # No transaction needed: each statement is atomic and guarded on its own (an insert
        # skips a card made meanwhile, an update one whose mark moved), so a run that stops
        # between them leaves the rest to the next run.
        result.cards_created += _insert(new, now, overwrite=False)
        result.cards_updated += _update(changed, now)
    return result


def reviews_replay(question_id: int, student_ids: Iterable[int] | None = None, *,
                   now: datetime.datetime | None = None, fuzzing: bool | None = None) -> int:
    """Rebuild the cards of this question (of these students; None: every student who answered
    it) from the students' whole history of it, as if applied from scratch: after a regrade a
    card may appear, change, or disappear (the student never got it wrong). Returns the cards
    rebuilt: written plus deleted."""
    now = now or timezone.now()
    scope, params = ["a.question_id = %s"], [question_id]
    if student_ids is not None:
        student_ids = sorted({int(pk) for pk in student_ids})
        if not student_ids:
            return 0
        sql, more = _ids_in("a.student_id", student_ids)
        scope.append(sql)
        params.append(more)
    scope_sql = " AND ".join(scope)
    nulls = ", ".join(["NULL"] * 11)
    read = (f"SELECT {_ATTEMPT_COLUMNS}, {nulls} FROM {_tables()['attempt']} AS a "
            f"WHERE a.student_id BETWEEN %s AND %s AND {scope_sql} {_ORDER}")
    fsrs = scheduler(fuzzing=fuzzing)
    rebuilt = 0
    for first, last in _plan(scope_sql, params):
        cards = [built for built, _ in _build(_rows(read, [first, last, *params]), fsrs)]
        keep, keep_param = _ids_in("student_id", [c.student_id for c in cards])
        delete = (f"DELETE FROM {_tables()['card']} WHERE question_id = %s "
                  f"AND student_id BETWEEN %s AND %s AND NOT ({keep})")
        delete_params = [question_id, first, last, keep_param]
        if student_ids is not None:
            only, only_param = _ids_in("student_id", student_ids)
            delete += f" AND {only}"
            delete_params.append(only_param)
        with transaction.atomic() if cards else contextlib.nullcontext():
            rebuilt += _insert(cards, now, overwrite=True)
            with connection.cursor() as cursor:
                cursor.execute(delete, delete_params)
                rebuilt += cursor.rowcount
    return rebuilt


def reviews_due_counts(student_ids: Iterable[int] | None, *,
                       at: datetime.datetime | None = None) -> dict[int, int]:
    """Cards due at `at` (due ≤ at; default now) per student, in one query: every given student
    (0 when none is due), or with None only the students who have cards due."""
    at = at or timezone.now()
    where, params = ["due <= %s"], [connection.ops.adapt_datetimefield_value(at)]
    counts: dict[int, int] = {}
    if student_ids is not None:
        student_ids = sorted({int(pk) for pk in student_ids})
        if not student_ids:
            return {}
        sql, more = _ids_in("student_id", student_ids)
        where.append(sql)
        params.append(more)
        counts = dict.fromkeys(student_ids, 0)
    sql = (f"SELECT student_id, COUNT(*) FROM {_tables()['card']} WHERE {' AND '.join(where)} "
           "GROUP BY student_id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        counts.update(cursor.fetchall())
    return counts


def reviews_due(student, *, at: datetime.datetime | None = None,
                limit: int | None = None) -> QuerySet[ReviewCard]:
    """The student's cards due at `at` (default now), most overdue first, with the question."""
    at = at or timezone.now()
    cards = (ReviewCard.objects.filter(student=student, due__lte=at)
             .select_related("question").order_by("due", "id"))
    return cards[:limit] if limit is not None else cards
