"""The domain: people, the catalogue of past papers and questions, and what students do.

Models hold data and simple invariants (constraints, clean()); workflows live in services.py.
"""

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class Difficulty(models.TextChoices):
    EASY = "easy", "Easy"
    MEDIUM = "medium", "Medium"
    HARD = "hard", "Hard"


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/London).")


# --- People ---------------------------------------------------------------------------------


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, email):
        # Log-in by email is case-insensitive, like the uniqueness constraint below.
        return self.get(email__iexact=email)

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who logs in by email: a student, or staff who run the platform."""

    username = None
    email = models.EmailField("email address", unique=True)
    is_demo = models.BooleanField(
        default=False, help_text="Created by seed_data; removed by seed_data --reset."
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="core_user_email_ci_unique"),
        ]

    def __str__(self):
        return self.email

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class StudentProfile(models.Model):
    class Level(models.TextChoices):
        SECONDARY = "secondary", "Secondary school"
        PRE_UNIVERSITY = "pre_university", "Pre-university"
        UNDERGRADUATE = "undergraduate", "Undergraduate"
        POSTGRADUATE = "postgraduate", "Postgraduate"
        OTHER = "other", "Other"

    class PreferredDifficulty(models.TextChoices):
        ADAPTIVE = "adaptive", "Adaptive"
        EASY = "easy", "Easy"
        MEDIUM = "medium", "Medium"
        HARD = "hard", "Hard"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    timezone = models.CharField(
        max_length=64, default="UTC", validators=[validate_timezone],
        help_text="IANA time zone; a student's day, streaks and reminders follow it.",
    )
    institution = models.CharField(max_length=200, blank=True)
    level = models.CharField(max_length=20, choices=Level.choices, default=Level.SECONDARY)
    target_exam = models.CharField(max_length=200, blank=True)
    target_exam_date = models.DateField(null=True, blank=True)
    daily_question_goal = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(500)]
    )
    preferred_difficulty = models.CharField(
        max_length=10, choices=PreferredDifficulty.choices, default=PreferredDifficulty.ADAPTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(daily_question_goal__gte=1),
                name="core_profile_goal_positive",
            ),
        ]

    def __str__(self):
        return f"Profile of {self.user}"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


# --- Catalogue ------------------------------------------------------------------------------


class Subject(models.Model):
    code = models.CharField(
        max_length=12, unique=True,
        validators=[RegexValidator(r"^[A-Z][A-Z0-9]{1,11}$", "Use 2-12 capitals or digits.")],
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    level = models.CharField(
        max_length=20, choices=StudentProfile.Level.choices,
        default=StudentProfile.Level.SECONDARY,
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.code} {self.name}"


class Topic(models.Model):
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="topics")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=120)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["subject__code", "name"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "slug"], name="core_topic_unique_slug"),
        ]

    def __str__(self):
        return f"{self.subject.code} / {self.name}"

    def clean(self):
        if self.parent_id and self.parent.subject_id != self.subject_id:
            raise ValidationError({"parent": "A topic's parent must belong to the same subject."})
        node, seen = self.parent, {self.pk}
        while node is not None:
            if node.pk in seen:
                raise ValidationError({"parent": "A topic cannot be its own ancestor."})
            seen.add(node.pk)
            node = node.parent


class ExamPaper(models.Model):
    """One sitting of one paper of an exam: where past questions come from."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="papers")
    exam_body = models.CharField(max_length=120)
    year = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1900), MaxValueValidator(2100)]
    )
    sitting = models.CharField(max_length=40, help_text="e.g. June, November")
    paper_number = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["subject__code", "-year", "exam_body", "sitting", "paper_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "exam_body", "year", "sitting", "paper_number"],
                name="core_exampaper_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(year__gte=1900, year__lte=2100), name="core_exampaper_year"
            ),
        ]

    def __str__(self):
        return f"{self.exam_body} {self.subject.code} {self.year} {self.sitting} Paper {self.paper_number}"


class Question(models.Model):
    class Type(models.TextChoices):
        MULTIPLE_CHOICE = "multiple_choice", "Multiple choice"
        TRUE_FALSE = "true_false", "True / false"
        NUMERIC = "numeric", "Numeric"
        SHORT_ANSWER = "short_answer", "Short answer"
        ESSAY = "essay", "Essay"

    CHOICE_TYPES = (Type.MULTIPLE_CHOICE, Type.TRUE_FALSE)

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="questions")
    topic = models.ForeignKey(
        Topic, null=True, blank=True, on_delete=models.PROTECT, related_name="questions"
    )
    paper = models.ForeignKey(
        ExamPaper, null=True, blank=True, on_delete=models.PROTECT, related_name="questions"
    )
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    question_type = models.CharField(max_length=20, choices=Type.choices)
    text = models.TextField()
    marks = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    difficulty = models.CharField(
        max_length=10, choices=Difficulty.choices, blank=True,
        help_text="Declared by the author; blank when the author said nothing. See "
                  "effective_difficulty for the difficulty the app uses.",
    )
    priority = models.SmallIntegerField(
        default=0, help_text="Higher is processed and served first."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    content_hash = models.CharField(
        max_length=64, unique=True, editable=False,
        help_text="SHA-256 of subject, type, text and choices, normalised: imports are idempotent.",
    )
    answer = models.TextField(
        blank=True, help_text="Model answer for numeric, short-answer and essay questions."
    )
    explanation = models.TextField(blank=True, help_text="Written by a person.")
    source = models.CharField(
        max_length=200, blank=True, help_text="Where it came from: seed bank, import file, admin."
    )

    # Written by the AI pipeline (core/processing.py); each step's status is a QuestionStep.
    ai_explanation = models.TextField(
        blank=True, help_text="Written by the AI; never replaces the explanation a person wrote.")
    ai_explanation_conclusion = models.CharField(
        max_length=200, blank=True,
        help_text="The option (or answer) the AI explanation concludes, checked against the key.")
    ai_key_disagreement = models.BooleanField(
        "AI explanation disagrees with the key", default=False, db_index=True,
        help_text="The AI explanation concludes another option than the key: a possible wrong "
                  "key or a bad explanation, for review.")
    ai_metadata = models.JSONField(default=dict, blank=True)
    ai_difficulty = models.CharField(
        max_length=10, choices=Difficulty.choices, blank=True,
        help_text="Estimated by the AI (metadata step).")
    measured_difficulty = models.CharField(
        max_length=10, choices=Difficulty.choices, blank=True,
        help_text="Measured from students' answers (analytics), when there is enough data.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["subject__code", "id"]
        indexes = [
            models.Index(fields=["status", "subject"], name="core_q_status_subject"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(marks__gte=1), name="core_question_marks"),
        ]

    def __str__(self):
        text = " ".join(self.text.split())
        return f"{self.subject.code} #{self.pk}: {text[:60]}{'…' if len(text) > 60 else ''}"

    @property
    def has_choices(self) -> bool:
        return self.question_type in self.CHOICE_TYPES

    @property
    def effective_difficulty(self) -> tuple[str, str]:
        """(difficulty, source): measured from answers when analytics had enough data, else
        declared by the author, else estimated by the AI; ("", "none") when nobody knows."""
        for value, source in ((self.measured_difficulty, "measured"),
                              (self.difficulty, "declared"), (self.ai_difficulty, "ai")):
            if value:
                return value, source
        return "", "none"

    def clean(self):
        if self.topic_id and self.topic.subject_id != self.subject_id:
            raise ValidationError({"topic": "The topic belongs to another subject."})
        if self.paper_id:
            if self.paper.subject_id != self.subject_id:
                raise ValidationError({"paper": "The paper belongs to another subject."})
            if self.year and self.year != self.paper.year:
                raise ValidationError({"year": "The year differs from the paper's year."})


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="choices")
    label = models.CharField(max_length=4)
    text = models.TextField()
    is_correct = models.BooleanField(default=False)

    class Meta:
        ordering = ["question_id", "label"]
        constraints = [
            models.UniqueConstraint(fields=["question", "label"], name="core_choice_unique_label"),
        ]

    def __str__(self):
        return f"{self.label}) {self.text[:60]}"


# --- Practice -------------------------------------------------------------------------------


class PracticeSession(models.Model):
    class Mode(models.TextChoices):
        PRACTICE = "practice", "Practice"
        TIMED = "timed", "Timed"
        MOCK_EXAM = "mock_exam", "Mock exam"
        REVIEW = "review", "Review"

    class Status(models.TextChoices):
        STARTED = "started", "Started"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        ABANDONED = "abandoned", "Abandoned"

    # A session takes answers until it is completed or abandoned.
    OPEN_STATUSES = (Status.STARTED, Status.IN_PROGRESS)

    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="practice_sessions"
    )
    subject = models.ForeignKey(
        Subject, null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.PRACTICE)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STARTED)
    started_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    question_count = models.PositiveIntegerField(default=0)
    correct_count = models.PositiveIntegerField(default=0)
    total_time_ms = models.PositiveBigIntegerField(default=0)
    score = models.FloatField(
        null=True, blank=True, help_text="Percentage correct when the session ended."
    )

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["status", "last_activity_at"], name="core_session_activity"),
            models.Index(fields=["student", "-started_at"], name="core_session_student"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(correct_count__lte=models.F("question_count")),
                name="core_session_correct_le_count",
            ),
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | models.Q(score__gte=0, score__lte=100),
                name="core_session_score_range",
            ),
        ]

    def __str__(self):
        return f"{self.student} {self.get_mode_display()} {self.started_at:%Y-%m-%d %H:%M}"


class Attempt(models.Model):
    """One answer to one question. Immutable once written, with one sanctioned exception: when a
    question's answer key is corrected, analytics' regrade service recomputes `is_correct` for
    that question's attempts (and everything derived from them), and records that it did.
    Statistics are derived from these."""

    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attempts"
    )
    # PROTECT: a question that has been answered is retired, never deleted, so history stays true.
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="attempts")
    session = models.ForeignKey(
        PracticeSession, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    choice = models.ForeignKey(
        Choice, null=True, blank=True, on_delete=models.PROTECT, related_name="attempts"
    )
    answer_text = models.TextField(blank=True)
    is_correct = models.BooleanField()
    skipped = models.BooleanField(
        default=False,
        help_text="The student moved on without answering; counts as wrong in statistics.",
    )
    time_taken_ms = models.PositiveIntegerField()
    answered_at = models.DateTimeField(default=timezone.now)
    local_date = models.DateField(
        help_text="The student's local date when they answered: rollups group by it."
    )
    attempt_number = models.PositiveIntegerField(
        help_text="1 for this student's first try at this question, then 2, 3, ..."
    )

    class Meta:
        ordering = ["-answered_at"]
        indexes = [
            models.Index(fields=["student", "local_date"], name="core_attempt_student_day"),
            models.Index(fields=["local_date"], name="core_attempt_day"),
            models.Index(fields=["question", "answered_at"], name="core_attempt_question"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["student", "question", "attempt_number"], name="core_attempt_unique_number"
            ),
            models.CheckConstraint(
                condition=models.Q(attempt_number__gte=1), name="core_attempt_number_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(skipped=False) | models.Q(is_correct=False, choice__isnull=True),
                name="core_attempt_skipped_is_wrong",
            ),
        ]

    def __str__(self):
        return f"{self.student} → {self.question_id} ({'✓' if self.is_correct else '✗'})"


# --- Access tokens --------------------------------------------------------------------------


class ApiToken(models.Model):
    """A bearer token for the app's API. Only its SHA-256 digest is stored; the raw token is
    shown once, when it is issued."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], name="core_token_expiry")]

    def __str__(self):
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


# --- Achievements ---------------------------------------------------------------------------


class Achievement(models.Model):
    """An achievement's definition. Analytics detects who has earned it after each rollup
    (analytics/achievements.py) and stores it once per student (per subject for mastery)."""

    class Kind(models.TextChoices):
        STREAK = "streak", "Local days in a row"
        QUESTIONS = "questions", "Distinct questions answered"
        ACCURACY = "accuracy", "Accuracy on first attempts (%) over distinct questions"
        MASTERY = "mastery", "A subject mastered"

    code = models.SlugField(max_length=60, unique=True)
    title = models.CharField(max_length=120)
    description = models.TextField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    threshold = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text="Days (streak), distinct questions (questions), or percent correct "
                  "(accuracy, mastery).",
    )
    min_questions = models.PositiveIntegerField(
        default=0, help_text="Accuracy and mastery: at least this many distinct questions.")
    min_topics = models.PositiveSmallIntegerField(
        default=0, help_text="Mastery: covering at least this many of the subject's topics.")
    window_days = models.PositiveSmallIntegerField(
        default=0, help_text="Mastery: counting first attempts of the last N local days "
                             "(0: all time).")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "threshold"], name="core_achievement_unique_rule"),
        ]

    def __str__(self):
        return self.title

    @property
    def per_subject(self) -> bool:
        return self.kind == self.Kind.MASTERY


# --- Demo data bookkeeping ------------------------------------------------------------------


class SeedRecord(models.Model):
    """What seed_data created, per part, so a second run with the same flags changes nothing."""

    class Part(models.TextChoices):
        QUESTIONS = "questions", "Questions"
        USERS = "users", "Users"
        ACTIVITY = "activity", "Activity"

    part = models.CharField(max_length=12, choices=Part.choices, unique=True)
    parameters = models.JSONField()
    counts = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.part}: {self.parameters}"
