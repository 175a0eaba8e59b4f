"""Writes and workflows of the core domain. Commands, admin actions and tasks call these."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from core import catalogue, processing
from core.models import (
    Achievement,
    ApiToken,
    Attempt,
    Choice,
    ExamPaper,
    PracticeSession,
    Question,
    StudentProfile,
    Subject,
    Topic,
)
from core.question_files import QuestionRecord, choice_problems, content_hash
from core.signals import answer_key_changed, student_created

# --- Catalogue ------------------------------------------------------------------------------


@dataclass
class CatalogueResult:
    subjects_created: int = 0
    topics_created: int = 0
    achievements_created: int = 0


@transaction.atomic
def catalogue_load() -> CatalogueResult:
    """Upsert the default subjects, topics and achievements (idempotent)."""
    result = CatalogueResult()
    for spec in catalogue.SUBJECTS:
        subject, created = Subject.objects.update_or_create(
            code=spec["code"], defaults={"name": spec["name"], "description": spec["description"]}
        )
        result.subjects_created += created
        for slug, name in spec["topics"]:
            _, created = Topic.objects.update_or_create(
                subject=subject, slug=slug, defaults={"name": name}
            )
            result.topics_created += created
    for code, title, description, kind, threshold, rule in catalogue.ACHIEVEMENTS:
        _, created = Achievement.objects.update_or_create(
            code=code,
            defaults={"title": title, "description": description, "kind": kind,
                      "threshold": threshold, "min_questions": rule.get("min_questions", 0),
                      "min_topics": rule.get("min_topics", 0),
                      "window_days": rule.get("window_days", 0)},
        )
        result.achievements_created += created
    return result


def catalogue_topics() -> dict[str, set[str]]:
    """Subject code → topic slugs: what question files are validated against."""
    topics: dict[str, set[str]] = {code: set() for code in Subject.objects.values_list("code", flat=True)}
    for code, slug in Topic.objects.values_list("subject__code", "slug"):
        topics[code].add(slug)
    return topics


# --- People ---------------------------------------------------------------------------------


def student_create(
    *, email: str, password: str | None = None, first_name: str = "", last_name: str = "",
    timezone_name: str = "UTC", is_demo: bool = False, **profile_fields,
) -> StudentProfile:
    """The one way to make a student: the user and their StudentProfile, then the
    student_created signal, on which other apps add what they keep per student (the
    notifications app: default preferences), all in one transaction. The admin's "Add user",
    seed_data and every service come here. A password of None makes an account that cannot log
    in (set one later with changepassword)."""
    profile = StudentProfile(timezone=timezone_name, **profile_fields)
    profile.full_clean(exclude=["user"])
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            email=email, password=password, first_name=first_name, last_name=last_name,
            is_demo=is_demo,
        )
        profile.user = user
        profile.save()
        # Inside the transaction on purpose: see core/signals.py.
        student_created.send(sender=StudentProfile, user=user, profile=profile)
    return profile


# --- Questions ------------------------------------------------------------------------------


def question_content_hash(question: Question) -> str:
    return content_hash(
        question.subject.code, question.question_type, question.text,
        question.choices.values_list("text", flat=True) if question.pk else (),
    )


def question_refresh_content_hash(question: Question) -> None:
    """After its choices change (the admin saves them after the question)."""
    new_hash = question_content_hash(question)
    if new_hash != question.content_hash:
        if Question.objects.filter(content_hash=new_hash).exclude(pk=question.pk).exists():
            raise ValidationError("Another question has the same subject, type, text and choices.")
        question.content_hash = new_hash
        question.save(update_fields=["content_hash", "updated_at"])


def question_check_choices(question_type: str, correct_flags: Iterable[bool]) -> None:
    """Raise ValidationError when the choices break the rule (question_files.choice_problems:
    choice questions here are single-answer)."""
    problems = choice_problems(question_type, correct_flags)
    if problems:
        raise ValidationError([problem[0].upper() + problem[1:] + "." for problem in problems])


def questions_retire(questions) -> int:
    """Questions that were answered are retired, never deleted (attempts protect them).
    One UPDATE for the whole queryset; their vectors leave the index after the commit (an
    update sends no signal). Returns how many changed."""
    ids = list(questions.exclude(status=Question.Status.RETIRED).values_list("pk", flat=True))
    retired = Question.objects.filter(pk__in=ids).update(
        status=Question.Status.RETIRED, updated_at=timezone.now())
    processing.questions_remove_vectors(ids)
    return retired


@dataclass
class ImportResult:
    added: int = 0
    unchanged: int = 0
    added_hashes: list[str] = field(default_factory=list)


@transaction.atomic
def questions_import(records: list[QuestionRecord], *, source: str, dry_run: bool = False) -> ImportResult:
    """Create the questions not already present (by content hash), with their papers and
    choices, in one transaction and a constant number of queries per batch."""
    result = ImportResult()
    existing = set(
        Question.objects.filter(content_hash__in=[r.content_hash for r in records])
        .values_list("content_hash", flat=True)
    )
    new_records, seen = [], set(existing)
    for record in records:
        if record.content_hash in seen:
            result.unchanged += 1
        else:
            seen.add(record.content_hash)
            new_records.append(record)
    result.added = len(new_records)
    result.added_hashes = [r.content_hash for r in new_records]
    if dry_run or not new_records:
        return result

    subjects = {s.code: s for s in Subject.objects.filter(code__in={r.subject for r in new_records})}
    topics = {(t.subject.code, t.slug): t for t in Topic.objects.select_related("subject")}
    papers = _papers_for(sorted({r.paper_key for r in new_records if r.paper_key}, key=str),
                         subjects)
    questions = Question.objects.bulk_create([
        Question(
            subject=subjects[r.subject], topic=topics.get((r.subject, r.topic)),
            paper=papers.get(r.paper_key), year=r.year, question_type=r.question_type,
            text=r.text, marks=r.marks, difficulty=r.difficulty, content_hash=r.content_hash,
            answer=r.answer, explanation=r.explanation, source=source[:200],
        )
        for r in new_records
    ], batch_size=500)
    Choice.objects.bulk_create([
        Choice(question=q, label=c.label, text=c.text, is_correct=c.correct)
        for q, r in zip(questions, new_records, strict=True) for c in r.choices
    ], batch_size=1000)
    return result


def _papers_for(keys: list[tuple], subjects: dict[str, Subject]) -> dict[tuple, ExamPaper]:
    """The papers these keys name, creating the missing ones: three queries, whatever the count."""

    def existing() -> dict[tuple, ExamPaper]:
        found = ExamPaper.objects.filter(
            subject__in=subjects.values(), exam_body__in={k[1] for k in keys},
            year__in={k[2] for k in keys},
        ).select_related("subject")
        return {(p.subject.code, p.exam_body, p.year, p.sitting, p.paper_number): p for p in found}

    if not keys:
        return {}
    papers = existing()
    missing = [k for k in keys if k not in papers]
    if missing:
        ExamPaper.objects.bulk_create(
            [ExamPaper(subject=subjects[code], exam_body=body, year=year, sitting=sitting,
                       paper_number=number) for code, body, year, sitting, number in missing],
            ignore_conflicts=True,  # a concurrent import may have created one meanwhile
        )
        papers = existing()
    return papers


# --- Practice -------------------------------------------------------------------------------


def attempt_record(
    *, student, question: Question, choice: Choice | None = None, answer_text: str = "",
    time_taken_ms: int, session: PracticeSession | None = None,
    answered_at: datetime.datetime | None = None, skipped: bool = False,
) -> Attempt:
    """Record one answer (or a skip: `skipped=True` with no choice and no text, marked wrong):
    marks it, stamps the student's local date and the attempt number,
    and adds it to the session's counters, all in one transaction. Safe to call concurrently,
    for one student or many; a closed session (completed or abandoned) refuses the answer with
    a ValidationError, and nothing is written."""
    answered_at = answered_at or timezone.now()
    if time_taken_ms < 0:
        raise ValidationError("time_taken_ms cannot be negative.")
    if skipped:
        if choice is not None or answer_text:
            raise ValidationError("A skipped question has no choice and no answer text.")
        is_correct = False
    elif question.has_choices:
        if choice is None or choice.question_id != question.pk:
            raise ValidationError("Choose one of this question's choices.")
        is_correct = choice.is_correct
    else:
        is_correct = answer_text_matches(question, answer_text)
    if session is not None and session.student_id != student.pk:
        raise ValidationError("This session belongs to another student.")
    with transaction.atomic():
        # Locking the student's profile row serialises this student's answers, and nobody
        # else's: the attempt number read next cannot be taken by a concurrent answer
        # (PostgreSQL; SQLite's IMMEDIATE transactions already admit one writer at a time).
        profile = StudentProfile.objects.select_for_update().filter(user=student).first()
        if profile is None:
            raise ValidationError(f"{student} has no student profile, so cannot answer.")
        last = Attempt.objects.filter(student=student, question=question).aggregate(
            n=Max("attempt_number"))["n"] or 0
        attempt = Attempt.objects.create(
            student=student, question=question, session=session, choice=choice,
            answer_text=answer_text, is_correct=is_correct, skipped=skipped,
            time_taken_ms=time_taken_ms,
            answered_at=answered_at, local_date=answered_at.astimezone(profile.zone).date(),
            attempt_number=last + 1,
        )
        if session is not None:
            _session_count_answer(session, is_correct=is_correct, time_taken_ms=time_taken_ms,
                                  answered_at=answered_at)
    return attempt


def _session_count_answer(
    session: PracticeSession, *, is_correct: bool, time_taken_ms: int,
    answered_at: datetime.datetime,
) -> None:
    """Add one answer to the session's counters in the database, never from the caller's copy
    (which another request may have outdated). Only an open session counts answers: the
    condition is part of the UPDATE, so an answer racing session_complete either lands before
    the completion (and is in its score) or is refused; it never reopens the session."""
    counted = PracticeSession.objects.filter(
        pk=session.pk, status__in=PracticeSession.OPEN_STATUSES,
    ).update(
        question_count=F("question_count") + 1,
        correct_count=F("correct_count") + int(is_correct),
        total_time_ms=F("total_time_ms") + time_taken_ms,
        last_activity_at=Greatest("last_activity_at", Value(answered_at)),
        status=PracticeSession.Status.IN_PROGRESS,
    )
    if not counted:
        status = PracticeSession.objects.filter(pk=session.pk).values_list(
            "status", flat=True).first()
        # Raising rolls back the attempt written in the same transaction.
        raise ValidationError(
            f"This practice session is closed ({status or 'deleted'}): it takes no more answers.")
    session.refresh_from_db(fields=[
        "question_count", "correct_count", "total_time_ms", "last_activity_at", "status"])


def answer_text_matches(question: Question, answer_text: str) -> bool:
    """Whether a typed answer matches the question's key: numbers within a relative tolerance
    of 1e-3, short answers by their words, ignoring case and spacing. attempt_record marks
    answers with it, and the regrade service re-marks them with it."""
    if question.question_type == Question.Type.NUMERIC:
        return _numeric_answer_matches(answer_text, question.answer)
    return bool(answer_text) and (
        " ".join(answer_text.split()).casefold() == " ".join(question.answer.split()).casefold())


def question_answer_key(question: Question) -> dict:
    """The question's answer key as plain data: the labels of its correct choices, or its
    answer text. Compared before and after an edit to tell whether the key changed."""
    if question.has_choices:
        labels = sorted(c.label for c in question.choices.all() if c.is_correct)
        return {"choices": labels}
    return {"answer": question.answer}


def question_key_change_announce(question: Question, *, before: dict, by=None) -> bool:
    """Send `answer_key_changed` if the key differs from `before` (question_answer_key's value
    read before the edit), after the edit commits. Returns whether it changed. Analytics'
    receiver regrades the question's attempts in a job."""
    after = question_answer_key(question)
    if after == before or not question.pk:
        return False
    transaction.on_commit(lambda: answer_key_changed.send(
        sender=Question, question_id=question.pk, before=before, after=after,
        by_id=getattr(by, "pk", None)))
    return True


def _numeric_answer_matches(given: str, expected: str) -> bool:
    try:
        given_value, expected_value = float(given), float(expected)
    except ValueError:
        return False
    return abs(given_value - expected_value) <= 1e-9 + 1e-3 * abs(expected_value)


def session_complete(session: PracticeSession, *, at: datetime.datetime | None = None) -> None:
    """Close the session and score it from its counters as they are in the database: the row is
    locked, so an answer being recorded either finishes first and is counted, or is refused."""
    with transaction.atomic():
        locked = PracticeSession.objects.select_for_update().get(pk=session.pk)
        if locked.status not in PracticeSession.OPEN_STATUSES:
            raise ValidationError(f"This practice session is already {locked.status}.")
        locked.status = PracticeSession.Status.COMPLETED
        locked.completed_at = at or timezone.now()
        locked.score = (
            round(100 * locked.correct_count / locked.question_count, 2)
            if locked.question_count else None
        )
        locked.save(update_fields=["status", "completed_at", "score"])
    for name in ("status", "completed_at", "score", "question_count", "correct_count",
                 "total_time_ms", "last_activity_at"):
        setattr(session, name, getattr(locked, name))


# --- API tokens -----------------------------------------------------------------------------

TOKEN_PREFIX = "pq_"


def _token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_issue(
    *, user, name: str, expires_at: datetime.datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns it with the raw secret, which is never stored and never shown again."""
    if not name.strip():
        raise ValidationError("A token needs a name.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry must be in the future.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip(), prefix=raw[: len(TOKEN_PREFIX) + 8],
        digest=_token_digest(raw), expires_at=expires_at,
    )
    return token, raw


def api_token_verify(raw: str) -> ApiToken | None:
    """The active token for a raw secret, or None. Marks it used (at most once a minute, so a
    busy client does not turn every read into a write)."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    digest = _token_digest(raw)
    token = ApiToken.objects.select_related("user").filter(digest=digest).first()
    if token is None or not hmac.compare_digest(token.digest, digest) or not token.is_active:
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    stale = now - datetime.timedelta(minutes=1)
    if token.last_used_at is None or token.last_used_at < stale:
        # Conditional: of concurrent requests in the same minute, one writes.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)).update(last_used_at=now)
        token.last_used_at = now
    return token


def api_token_revoke(token: ApiToken) -> bool:
    """Revoke; returns False when it was already revoked."""
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return bool(updated)
