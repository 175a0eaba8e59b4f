"""Regrading: when a question's answer key is corrected, re-mark its attempts and recompute
everything derived from them, in one job, recorded in a Regrade row.

Re-marking `Attempt.is_correct` is the one sanctioned change to an attempt (core.models.Attempt
says so). What is derived from attempts follows: the practice sessions' correct counts and
scores, the daily, subject and weekly rollups of the dates the question was answered on, the
statistics of the question's subject, the insights of the students who answered it, and their
achievements (those that no longer hold are withdrawn in the data, never "un-announced";
those that now hold are earned), and their spaced-review cards of the question (replayed).

Two phases, so a worker that dies half-way loses nothing: the re-marking, the sessions and
the plan of what else to recompute (dates, students, subject) commit together in one
transaction; the recomputations read that plan and are idempotent, so a retry of the job
redoes them and changes no attempt twice. docs/analytics.md, "Regrading".
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce, Round
from django.utils import timezone

from analytics import achievements, insights, item_analysis, review, rollups
from analytics.models import Regrade
from core import services
from core.models import Attempt, Choice, PracticeSession, Question

log = logging.getLogger("pastq.analytics")

UPDATE_CHUNK = 500  # ids per UPDATE … WHERE id IN (…) for typed answers


@dataclass
class RegradeOutcome:
    attempts_changed: int = 0
    became_correct: int = 0
    became_wrong: int = 0
    sessions: int = 0
    students: list[int] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    withdrawn: int = 0
    earned: int = 0

    def summary(self) -> dict:
        return {"attempts_changed": self.attempts_changed,
                "became_correct": self.became_correct, "became_wrong": self.became_wrong,
                "sessions": self.sessions, "students": len(self.students),
                "dates": len(self.dates),
                "first_date": min(self.dates) if self.dates else None,
                "last_date": max(self.dates) if self.dates else None,
                "achievements_withdrawn": self.withdrawn, "achievements_earned": self.earned}


class RollbackDryRun(Exception):
    """Raised inside a dry run's transaction to undo it, carrying what it would have done."""

    def __init__(self, outcome: RegradeOutcome):
        super().__init__("dry run")
        self.outcome = outcome


def regrade_request(question_id: int, *, by_id: int | None = None, key_before=None,
                    key_after=None) -> Regrade:
    """Record a regrade to run (the key-change receiver and the command call this)."""
    return Regrade.objects.create(
        question_id=question_id, requested_by_id=by_id, requested_at=timezone.now(),
        key_before=key_before or {}, key_after=key_after or {})


def regrade_run(regrade: Regrade, *, now: datetime.datetime | None = None) -> RegradeOutcome:
    """Run a recorded regrade to the end: re-mark (once), then recompute what derives from it
    (idempotent). Marks the row done; a failure leaves it pending, with the error, for the
    job's retry."""
    now = now or timezone.now()
    question = Question.objects.get(pk=regrade.question_id)
    plan = regrade.summary.get("plan")
    if plan is None:  # phase 1 has not committed yet
        with transaction.atomic():
            outcome = _remark(question)
            plan = {"students": outcome.students, "dates": outcome.dates}
            Regrade.objects.filter(pk=regrade.pk).update(
                attempts_changed=outcome.attempts_changed,
                became_correct=outcome.became_correct, became_wrong=outcome.became_wrong,
                summary={**outcome.summary(), "plan": plan})
    else:
        outcome = RegradeOutcome(
            attempts_changed=regrade.attempts_changed, became_correct=regrade.became_correct,
            became_wrong=regrade.became_wrong, sessions=regrade.summary.get("sessions", 0),
            students=plan["students"], dates=plan["dates"])
    _recompute(question, outcome, now=now)
    regrade.refresh_from_db()
    regrade.status = Regrade.Status.DONE
    regrade.finished_at = timezone.now()
    regrade.error = ""
    regrade.summary = {**outcome.summary(), "plan": plan}
    regrade.save(update_fields=["status", "finished_at", "error", "summary"])
    log.info("regraded question %s: %s", question.pk, outcome.summary())
    return outcome


def regrade_preview(question: Question, *, now: datetime.datetime | None = None) -> RegradeOutcome:
    """What a regrade of this question would change, with the key as it is now: the whole
    regrade runs inside a transaction that is rolled back, so the figures (achievements
    included) are exactly what a real run would write."""
    try:
        with transaction.atomic():
            outcome = _remark(question)
            _recompute(question, outcome, now=now or timezone.now())
            raise RollbackDryRun(outcome)
    except RollbackDryRun as done:
        return done.outcome


def _remark(question: Question) -> RegradeOutcome:
    """Re-mark the question's attempts against its key and update the sessions they belong to.
    Skipped attempts stay wrong. Returns who and which dates were touched."""
    outcome = RegradeOutcome()
    answered = Attempt.objects.filter(question=question, skipped=False)
    if question.has_choices:
        changed = answered.filter(choice__isnull=False).exclude(
            is_correct=F("choice__is_correct"))
        rows = list(changed.values_list("id", "student_id", "local_date", "session_id",
                                        "choice__is_correct"))
        ids = [row[0] for row in rows]
        if ids:
            key = Choice.objects.filter(pk=OuterRef("choice_id")).values("is_correct")[:1]
            Attempt.objects.filter(pk__in=ids).update(is_correct=Subquery(key))
    else:
        rows = []
        for pk, student_id, local_date, session_id, text, was in answered.values_list(
                "id", "student_id", "local_date", "session_id", "answer_text", "is_correct"
        ).iterator(chunk_size=2000):
            now_correct = services.answer_text_matches(question, text)
            if now_correct != was:
                rows.append((pk, student_id, local_date, session_id, now_correct))
        for value in (True, False):
            ids = [row[0] for row in rows if row[4] is value]
            for start in range(0, len(ids), UPDATE_CHUNK):
                Attempt.objects.filter(pk__in=ids[start:start + UPDATE_CHUNK]).update(
                    is_correct=value)
    outcome.attempts_changed = len(rows)
    outcome.became_correct = sum(1 for row in rows if row[4])
    outcome.became_wrong = outcome.attempts_changed - outcome.became_correct
    outcome.students = sorted({row[1] for row in rows})
    outcome.dates = sorted({row[2].isoformat() for row in rows})
    sessions = sorted({row[3] for row in rows if row[3] is not None})
    outcome.sessions = _sessions_recount(sessions)
    return outcome


def _sessions_recount(session_ids: list[int]) -> int:
    """Recount the sessions' correct answers from their attempts, and rescore the completed
    ones (score = 100 · correct / questions, as session_complete scores them)."""
    if not session_ids:
        return 0
    correct = (Attempt.objects.filter(session=OuterRef("pk"), is_correct=True)
               .order_by().values("session").annotate(n=Count("pk")).values("n")[:1])
    sessions = PracticeSession.objects.filter(pk__in=session_ids)
    sessions.update(correct_count=Coalesce(Subquery(correct), 0))
    sessions.filter(status=PracticeSession.Status.COMPLETED, question_count__gt=0).update(
        score=Round(100.0 * F("correct_count") / F("question_count"), 2))
    return len(session_ids)


def _recompute(question: Question, outcome: RegradeOutcome, *, now: datetime.datetime) -> None:
    """Everything derived from the re-marked attempts; each step is idempotent."""
    dates = [datetime.date.fromisoformat(d) for d in outcome.dates]
    if dates:
        rollups.rollups_for_dates(dates, now=now)
    item_analysis.question_stats_refresh(subject_ids=[question.subject_id], now=now)
    if outcome.students:
        # Cards are replayed from each student's whole history of the question: a re-marked
        # attempt below a card's high-water mark changes what came after it.
        review.reviews_replay(question.pk, outcome.students, now=now)
        insights.insights_compute(outcome.students, now=now)
        outcome.withdrawn = achievements.achievements_withdraw_invalid(outcome.students, now=now)
        outcome.earned = achievements.achievements_detect(outcome.students, now=now)
