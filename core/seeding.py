"""The demo world seed_data builds: the seed question bank, demo students and their activity.

Activity comes from a latent-ability model, so analytics later find real signal: each student
has an ability θ that grows slowly with practice, each question a difficulty b, and an answer is
correct with probability 1 / (1 + e^-(θ - b)). Time taken grows with difficulty. Students keep
habits (daily, weekdays only, irregular, lapsed) in their own time zones.

Reproducible: every random draw comes from a generator seeded by (seed, part, student), and
every query that feeds a generator is ordered by a stable key (emails, content hashes), so the
same seed and end date give the same rows on SQLite and on PostgreSQL. The world stands at 00:00
UTC of the day it is seeded: nothing after that moment is generated, so nothing is in the
future, and the same flags give the same world at any hour of that day.

The demo students cannot log in (there is nothing for a student to log in to yet): their
activity is what analytics, the emails and the read API work on.
"""

from __future__ import annotations

import datetime
import math
import random
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.models import (
    Attempt,
    Choice,
    Difficulty,
    ExamPaper,
    PracticeSession,
    Question,
    SeedRecord,
    StudentProfile,
)
from core.question_files import read_json
from core.services import catalogue_topics, questions_import, student_create

SEED_BANK_DIR = Path(__file__).resolve().parent / "seed" / "questions"
SEED_SOURCE_PREFIX = "seed bank: "
DEMO_DOMAIN = "example.com"

NAMED_STUDENTS = [
    # email, first, last, time zone, habit, ability
    ("amara.okafor", "Amara", "Okafor", "Africa/Lagos", "daily", 0.6),
    ("kenji.watanabe", "Kenji", "Watanabe", "Pacific/Auckland", "weekdays", 1.1),
    ("leilani.kahale", "Leilani", "Kahale", "Pacific/Honolulu", "irregular", -0.4),
]
TIME_ZONES = [
    "Pacific/Kiritimati", "Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Africa/Nairobi",
    "Europe/London", "America/Sao_Paulo", "America/New_York", "America/Los_Angeles",
    "Pacific/Honolulu", "Pacific/Pago_Pago",
]
FIRST_NAMES = ["Ada", "Bola", "Chen", "Dara", "Emeka", "Fatima", "Gabriel", "Hana", "Ivan",
               "Jia", "Kwame", "Lina", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa",
               "Sipho", "Tariq", "Uma", "Viktor", "Wen", "Yusuf", "Zara"]
LAST_NAMES = ["Adeyemi", "Brown", "Costa", "Dlamini", "Evans", "Fischer", "Garcia", "Haddad",
              "Ito", "Jensen", "Kim", "Lopez", "Mensah", "Novak", "Osei", "Patel", "Rossi",
              "Sato", "Tanaka", "Usman", "Varga", "Wang", "Xu", "Yilmaz", "Zhou"]
HABITS = ["daily", "weekdays", "irregular", "lapsed"]
LEVELS = [choice for choice, _ in StudentProfile.Level.choices if choice != "other"]
DIFFICULTY_CENTRE = {Difficulty.EASY: -1.2, Difficulty.MEDIUM: 0.0, Difficulty.HARD: 1.2}


class SeedDataError(Exception):
    """The seed bank is malformed, or the request cannot be carried out; says why."""


@dataclass
class SeedParameters:
    users: int
    days: int
    end_date: datetime.date
    seed: int

    def for_part(self, part: str) -> dict:
        if part == SeedRecord.Part.USERS:
            return {"users": self.users, "seed": self.seed}
        if part == SeedRecord.Part.ACTIVITY:
            return {"users": self.users, "days": self.days,
                    "end_date": self.end_date.isoformat(), "seed": self.seed}
        return {}  # questions: importing the bank is idempotent by content hash


@dataclass
class Conflict:
    part: str
    recorded: dict
    requested: dict

    def __str__(self):
        changed = ", ".join(
            f"{key} {self.recorded.get(key)} → {value}"
            for key, value in self.requested.items() if self.recorded.get(key) != value
        )
        return f"the {self.part} part was seeded with other parameters ({changed})"


@dataclass
class SeedReport:
    questions_added: int = 0
    questions_unchanged: int = 0
    students_created: int = 0
    sessions_created: int = 0
    attempts_created: int = 0
    skipped_parts: list[str] = field(default_factory=list)
    named_students_created: list[str] = field(default_factory=list)


# --- Bookkeeping ----------------------------------------------------------------------------


def seed_recorded_end_date() -> datetime.date | None:
    record = SeedRecord.objects.filter(part=SeedRecord.Part.ACTIVITY).first()
    return datetime.date.fromisoformat(record.parameters["end_date"]) if record else None


def seed_conflicts(parts: list[str], params: SeedParameters) -> list[Conflict]:
    recorded = {r.part: r.parameters for r in SeedRecord.objects.filter(part__in=parts)}
    return [
        Conflict(part, recorded[part], params.for_part(part))
        for part in parts
        if part in recorded and recorded[part] != params.for_part(part)
    ]


def seed_already_done(part: str, params: SeedParameters) -> bool:
    if part == SeedRecord.Part.QUESTIONS:
        return False
    return SeedRecord.objects.filter(part=part, parameters=params.for_part(part)).exists()


def seed_world_stands_at(today: datetime.date) -> datetime.datetime:
    """The moment the demo world stands at when seeded on `today` (UTC): the day's start. A day
    that has begun is not generated, so the world never depends on the hour it is seeded."""
    return datetime.datetime.combine(today, datetime.time(), tzinfo=datetime.UTC)


def seed_default_end_date(today: datetime.date) -> datetime.date:
    """Yesterday (UTC): the last day before the moment the world stands at."""
    return today - datetime.timedelta(days=1)


# --- Questions ------------------------------------------------------------------------------


def seed_bank_read() -> list:
    """All records of the seed bank, validated; raises SeedDataError listing every problem."""
    catalogue = catalogue_topics()
    if not catalogue:
        raise SeedDataError("The catalogue is empty: run `manage.py init_db` first.")
    files = sorted(SEED_BANK_DIR.glob("*.json"))
    if not files:
        raise SeedDataError(f"No question files in {SEED_BANK_DIR}.")
    records, problems = [], []
    for path in files:
        report = read_json(path, catalogue)
        problems += report.problems
        records += [(path.name, record) for record in report.records]
    if problems:
        raise SeedDataError(
            "The seed question bank has problems:\n" + "\n".join(f"  {p}" for p in problems))
    return records


def seed_questions(report: SeedReport) -> None:
    by_file: dict[str, list] = defaultdict(list)
    for name, record in seed_bank_read():
        by_file[name].append(record)
    for name, records in by_file.items():
        result = questions_import(records, source=SEED_SOURCE_PREFIX + name)
        report.questions_added += result.added
        report.questions_unchanged += result.unchanged
    SeedRecord.objects.update_or_create(
        part=SeedRecord.Part.QUESTIONS,
        defaults={"parameters": {}, "counts": {"questions": Question.objects.filter(
            source__startswith=SEED_SOURCE_PREFIX).count()}},
    )


# --- Students -------------------------------------------------------------------------------


def seed_users(params: SeedParameters, report: SeedReport) -> None:
    User = get_user_model()
    rng = random.Random(f"{params.seed}:users")
    specs = [
        dict(email=f"{local}@{DEMO_DOMAIN}", first_name=first, last_name=last,
             timezone_name=tz, named=True)
        for local, first, last, tz, _, _ in NAMED_STUDENTS
    ]
    for number in range(1, params.users + 1):
        specs.append(dict(
            email=f"student{number:04d}@{DEMO_DOMAIN}", first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES), timezone_name=TIME_ZONES[number % len(TIME_ZONES)],
            named=False,
        ))
    existing = set(User.objects.filter(email__in=[s["email"] for s in specs])
                   .values_list("email", flat=True))
    with transaction.atomic():
        for spec in specs:
            profile_rng = random.Random(f"{params.seed}:profile:{spec['email']}")
            level = profile_rng.choice(LEVELS)
            goal = profile_rng.choice([5, 10, 10, 15, 20])
            if spec["email"] in existing:
                continue
            if spec.pop("named"):
                report.named_students_created.append(spec["email"])
            # No password: no demo student can log in (nothing for students to log in to yet).
            student_create(
                password=None, is_demo=True, level=level, daily_question_goal=goal,
                institution="Demo Academy", **spec,
            )
            report.students_created += 1
        SeedRecord.objects.update_or_create(
            part=SeedRecord.Part.USERS,
            defaults={"parameters": params.for_part(SeedRecord.Part.USERS),
                      "counts": {"students": User.objects.filter(is_demo=True).count()}},
        )


# --- Activity -------------------------------------------------------------------------------


@dataclass
class _QuestionFacts:
    pk: int
    subject_id: int
    difficulty: float
    correct_choice_id: int | None
    wrong_choice_ids: list[int]


def _question_facts(seed: int) -> dict[int, list[_QuestionFacts]]:
    """Active questions by subject, ordered by content hash (stable on every database)."""
    choices: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for question_id, choice_id, is_correct in Choice.objects.order_by(
            "question_id", "label").values_list("question_id", "id", "is_correct"):
        choices[question_id].append((choice_id, is_correct))
    by_subject: dict[int, list[_QuestionFacts]] = defaultdict(list)
    for pk, subject_id, declared, digest in Question.objects.filter(
            status=Question.Status.ACTIVE, question_type__in=Question.CHOICE_TYPES,
    ).order_by("content_hash").values_list("pk", "subject_id", "difficulty", "content_hash"):
        noise = random.Random(f"{seed}:question:{digest}").gauss(0, 0.35)
        own = choices[pk]
        by_subject[subject_id].append(_QuestionFacts(
            pk=pk, subject_id=subject_id, difficulty=DIFFICULTY_CENTRE.get(declared, 0.0) + noise,
            correct_choice_id=next((c for c, ok in own if ok), None),
            wrong_choice_ids=[c for c, ok in own if not ok],
        ))
    return by_subject


def _is_active_day(habit: str, day: datetime.date, index: int, total: int, rng) -> bool:
    if habit == "daily":
        return rng.random() < 0.9
    if habit == "weekdays":
        return rng.random() < (0.85 if day.weekday() < 5 else 0.08)
    if habit == "lapsed":  # keen at first, then stops
        return index < total * 0.55 and rng.random() < 0.8
    return rng.random() < 0.4  # irregular


def seed_activity(
    params: SeedParameters, report: SeedReport,
    progress: Callable[[int, int, int], None] | None = None,
) -> None:
    User = get_user_model()
    students = list(
        User.objects.filter(is_demo=True).select_related("profile").order_by("email"))
    if not students:
        raise SeedDataError("There are no demo students: seed users first (--only users).")
    questions = _question_facts(params.seed)
    subject_ids = sorted(questions)
    if not subject_ids:
        raise SeedDataError("There are no active choice questions: seed questions first.")
    named = {f"{n[0]}@{DEMO_DOMAIN}": n for n in NAMED_STUDENTS}
    start = params.end_date - datetime.timedelta(days=params.days - 1)
    # Not timezone.now(): a world cut at the present moment would differ by the hour.
    stands_at = seed_world_stands_at(timezone.now().date())
    attempt_numbers: dict[tuple[int, int], int] = defaultdict(int)
    for student_id, question_id, last in Attempt.objects.filter(
            student__is_demo=True).values("student_id", "question_id").annotate(
            last=Max("attempt_number")).values_list("student_id", "question_id", "last"):
        attempt_numbers[(student_id, question_id)] = last

    for done, student in enumerate(students, start=1):
        rng = random.Random(f"{params.seed}:activity:{student.email}")
        if student.email in named:
            habit, ability = named[student.email][4], named[student.email][5]
        else:
            habit, ability = rng.choice(HABITS), rng.gauss(0, 1)
        zone = zoneinfo.ZoneInfo(student.profile.timezone)
        favourites = rng.sample(subject_ids, k=min(len(subject_ids), rng.randint(1, 3)))
        usual_hour = rng.choice([7, 12, 16, 18, 19, 20, 21])
        goal = student.profile.daily_question_goal
        sessions: list[PracticeSession] = []
        attempts: list[Attempt] = []
        for index in range(params.days):
            day = start + datetime.timedelta(days=index)
            if not _is_active_day(habit, day, index, params.days, rng):
                continue
            theta = ability + 0.012 * index  # practice helps, slowly
            for _ in range(1 if rng.random() < 0.8 else 2):
                subject_id = rng.choice(favourites)
                pool = questions[subject_id]
                count = min(len(pool), max(3, int(rng.gauss(goal, goal / 3))))
                local_start = datetime.datetime.combine(
                    day, datetime.time(usual_hour, 0), tzinfo=zone,
                ) + datetime.timedelta(minutes=rng.randint(-90, 120))
                clock = local_start.astimezone(datetime.UTC)
                session = PracticeSession(
                    student=student, subject_id=subject_id, started_at=clock,
                    last_activity_at=clock, mode=rng.choice(
                        [PracticeSession.Mode.PRACTICE] * 3 + [PracticeSession.Mode.TIMED]),
                )
                session_attempts = []
                for question in rng.sample(pool, count):
                    correct = rng.random() < 1 / (1 + math.exp(-(theta - question.difficulty)))
                    taken = int(22_000 * math.exp(0.35 * question.difficulty + 0.3 * rng.gauss(0, 1))
                                * (1.0 if correct else 1.25))
                    taken = max(2_000, min(taken, 600_000))
                    clock += datetime.timedelta(milliseconds=taken)
                    if clock >= stands_at:
                        break  # never after the moment the world stands at
                    key = (student.pk, question.pk)
                    attempt_numbers[key] += 1
                    session_attempts.append(Attempt(
                        student=student, question_id=question.pk, session=session,
                        choice_id=(question.correct_choice_id if correct
                                   else rng.choice(question.wrong_choice_ids)),
                        is_correct=correct, time_taken_ms=taken, answered_at=clock,
                        local_date=clock.astimezone(zone).date(),
                        attempt_number=attempt_numbers[key],
                    ))
                if not session_attempts:
                    continue
                session.question_count = len(session_attempts)
                session.correct_count = sum(a.is_correct for a in session_attempts)
                session.total_time_ms = sum(a.time_taken_ms for a in session_attempts)
                session.last_activity_at = clock
                if rng.random() < 0.88:
                    session.status = PracticeSession.Status.COMPLETED
                    session.completed_at = clock
                    session.score = round(100 * session.correct_count / session.question_count, 2)
                else:
                    session.status = PracticeSession.Status.ABANDONED
                sessions.append(session)
                attempts += session_attempts
        with transaction.atomic():
            PracticeSession.objects.bulk_create(sessions, batch_size=1000)
            Attempt.objects.bulk_create(attempts, batch_size=2000)
        report.sessions_created += len(sessions)
        report.attempts_created += len(attempts)
        if progress:
            progress(done, len(students), report.attempts_created)
    SeedRecord.objects.update_or_create(
        part=SeedRecord.Part.ACTIVITY,
        defaults={"parameters": params.for_part(SeedRecord.Part.ACTIVITY),
                  "counts": {"sessions": report.sessions_created,
                             "attempts": report.attempts_created}},
    )


# --- The whole world ------------------------------------------------------------------------


def seed_world(
    params: SeedParameters, parts: list[str], *,
    progress: Callable[[int, int, int], None] | None = None,
) -> SeedReport:
    """Seed the parts asked for, in order, skipping those already seeded with these
    parameters. Activity needs the students seeded with the same parameters."""
    report = SeedReport()
    for part in parts:
        if seed_already_done(part, params):
            report.skipped_parts.append(str(part))
            continue
        if part == SeedRecord.Part.QUESTIONS:
            seed_questions(report)
        elif part == SeedRecord.Part.USERS:
            seed_users(params, report)
        else:
            if not seed_already_done(SeedRecord.Part.USERS, params):
                raise SeedDataError(
                    "Activity needs the demo students seeded with the same --users and --seed: "
                    "seed them first (--only users).")
            seed_activity(params, report, progress=progress)
    return report


# --- Reset ----------------------------------------------------------------------------------


@dataclass
class ResetReport:
    students: int = 0
    sessions: int = 0
    attempts: int = 0
    questions: int = 0
    questions_kept: int = 0
    papers: int = 0


def seed_reset(*, dry_run: bool) -> ResetReport:
    """Delete the demo world: demo students (and with them their sessions, attempts, tokens and
    preferences), seed-bank questions no real student has answered, papers left empty, and the
    seed records. Questions real students answered are kept (their history stays true)."""
    User = get_user_model()
    demo_users = User.objects.filter(is_demo=True)
    seeded = Question.objects.filter(source__startswith=SEED_SOURCE_PREFIX)
    answered_by_others = seeded.filter(attempts__student__is_demo=False).distinct()
    report = ResetReport(
        students=demo_users.count(),
        sessions=PracticeSession.objects.filter(student__is_demo=True).count(),
        attempts=Attempt.objects.filter(student__is_demo=True).count(),
        questions_kept=answered_by_others.count(),
    )
    report.questions = seeded.count() - report.questions_kept
    paper_ids = set(seeded.exclude(pk__in=answered_by_others).exclude(paper=None)
                    .values_list("paper_id", flat=True))
    if dry_run:
        report.papers = _papers_emptied_by(paper_ids, seeded.exclude(pk__in=answered_by_others))
        return report
    with transaction.atomic():
        demo_users.delete()
        seeded.exclude(pk__in=answered_by_others).delete()
        report.papers, _ = ExamPaper.objects.filter(pk__in=paper_ids, questions=None).delete()
        SeedRecord.objects.all().delete()
    return report


def _papers_emptied_by(paper_ids: set[int], deleted_questions) -> int:
    """How many of these papers would hold no question once `deleted_questions` are gone."""
    remaining = (Question.objects.filter(paper_id__in=paper_ids)
                 .exclude(pk__in=deleted_questions.values("pk"))
                 .values_list("paper_id", flat=True).distinct())
    return len(paper_ids - set(remaining))
