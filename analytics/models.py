"""What analytics stores: rollups per student and local day / ISO week, question, choice and
paper statistics, each student's insights, the achievements students have earned, and the
regrades run after an answer key was corrected. Every row is keyed by what it is about and
written with upserts, so a job run twice writes the same rows (docs/analytics.md)."""

from django.conf import settings
from django.db import models


class DailyStudentStats(models.Model):
    """One student's activity on one of their local days (Attempt.local_date)."""

    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="daily_stats")
    date = models.DateField(help_text="The student's local date.")
    attempts = models.PositiveIntegerField()
    correct = models.PositiveIntegerField()
    accuracy = models.FloatField(help_text="correct / attempts, 0–1.")
    time_spent_ms = models.PositiveBigIntegerField()
    distinct_questions = models.PositiveIntegerField()
    first_attempts = models.PositiveIntegerField(
        help_text="Attempts that were the student's first try at the question.")
    sessions = models.PositiveIntegerField(help_text="Distinct practice sessions answered in.")
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "daily student stats"
        ordering = ["-date", "student_id"]
        constraints = [
            models.UniqueConstraint(fields=["student", "date"], name="analytics_daily_unique"),
        ]
        indexes = [models.Index(fields=["date"], name="analytics_daily_date")]

    def __str__(self):
        return f"{self.student_id} on {self.date}"


class DailySubjectStats(models.Model):
    """One student's activity in one subject on one of their local days."""

    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="daily_subject_stats")
    subject = models.ForeignKey("core.Subject", on_delete=models.CASCADE, related_name="+")
    date = models.DateField(help_text="The student's local date.")
    attempts = models.PositiveIntegerField()
    correct = models.PositiveIntegerField()
    accuracy = models.FloatField()
    time_spent_ms = models.PositiveBigIntegerField()
    distinct_questions = models.PositiveIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "daily subject stats"
        ordering = ["-date", "student_id", "subject_id"]
        constraints = [
            models.UniqueConstraint(fields=["student", "subject", "date"],
                                    name="analytics_daily_subject_unique"),
        ]
        indexes = [models.Index(fields=["date"], name="analytics_daily_subject_date")]

    def __str__(self):
        return f"{self.student_id} in {self.subject_id} on {self.date}"


class WeeklyStudentStats(models.Model):
    """One student's activity in one ISO week of their local dates (ISO year, not calendar
    year: 2026-12-31 is in week 53 of 2026 and 2027-01-01 too)."""

    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="weekly_stats")
    iso_year = models.PositiveSmallIntegerField()
    iso_week = models.PositiveSmallIntegerField()
    week_start = models.DateField(help_text="The Monday the week starts on.")
    attempts = models.PositiveIntegerField()
    correct = models.PositiveIntegerField()
    accuracy = models.FloatField()
    time_spent_ms = models.PositiveBigIntegerField()
    distinct_questions = models.PositiveIntegerField()
    sessions = models.PositiveIntegerField()
    active_days = models.PositiveSmallIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "weekly student stats"
        ordering = ["-week_start", "student_id"]
        constraints = [
            models.UniqueConstraint(fields=["student", "iso_year", "iso_week"],
                                    name="analytics_weekly_unique"),
        ]
        indexes = [models.Index(fields=["week_start"], name="analytics_weekly_start")]

    def __str__(self):
        return f"{self.student_id} in {self.iso_year}-W{self.iso_week:02d}"


class QuestionStats(models.Model):
    """Classical item statistics of one question, from students' first attempts
    (analytics/item_analysis.py). Figures are null where undefined; below ANALYTICS_MIN_N first
    attempts `enough_data` is false and `flags` holds only "not_enough_data"."""

    question = models.OneToOneField("core.Question", on_delete=models.CASCADE,
                                    primary_key=True, related_name="stats")
    n = models.PositiveIntegerField(help_text="First attempts.")
    n_correct = models.PositiveIntegerField()
    n_skipped = models.PositiveIntegerField()
    facility = models.FloatField(null=True, help_text="Proportion correct, 0–1.")
    discrimination = models.FloatField(
        null=True, help_text="Pearson correlation of the item score with the rest score.")
    n_discrimination = models.PositiveIntegerField(
        default=0, help_text="Students counted in the discrimination.")
    mean_time_ms = models.FloatField(null=True)
    median_time_ms = models.FloatField(null=True)
    skip_rate = models.FloatField(null=True)
    enough_data = models.BooleanField(default=False)
    flags = models.JSONField(default=list, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "question stats"
        ordering = ["question_id"]

    def __str__(self):
        return f"Question {self.question_id}: n={self.n}"


class ChoiceStats(models.Model):
    """How often one option of a choice question was chosen on first attempts, overall and by
    the top and bottom thirds of students (by their rest score)."""

    choice = models.OneToOneField("core.Choice", on_delete=models.CASCADE, primary_key=True,
                                  related_name="stats")
    question = models.ForeignKey("core.Question", on_delete=models.CASCADE,
                                 related_name="choice_stats")
    count = models.PositiveIntegerField()
    proportion = models.FloatField(null=True)
    upper_count = models.PositiveIntegerField(default=0)
    upper_proportion = models.FloatField(null=True)
    lower_count = models.PositiveIntegerField(default=0)
    lower_proportion = models.FloatField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "choice stats"
        ordering = ["question_id", "choice_id"]

    def __str__(self):
        return f"Choice {self.choice_id}: {self.count}"


class PaperStats(models.Model):
    """Reliability of one exam paper over the students who answered every question of it."""

    paper = models.OneToOneField("core.ExamPaper", on_delete=models.CASCADE, primary_key=True,
                                 related_name="stats")
    n_students = models.PositiveIntegerField()
    n_questions = models.PositiveIntegerField()
    alpha = models.FloatField(null=True, help_text="Cronbach's alpha.")
    mean = models.FloatField(null=True, help_text="Mean score (questions right).")
    sd = models.FloatField(null=True, help_text="Population SD of scores.")
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "paper stats"
        ordering = ["paper_id"]

    def __str__(self):
        return f"Paper {self.paper_id}: n={self.n_students}"


class StudentInsight(models.Model):
    """A student's insights as of their last closed local day (`as_of`), computed as that day
    closes in their time zone (analytics/insights.py)."""

    student = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                   primary_key=True, related_name="insight")
    as_of = models.DateField(help_text="The student's last closed local day.")
    computed_at = models.DateTimeField()
    current_streak = models.PositiveIntegerField(default=0)
    longest_streak = models.PositiveIntegerField(default=0)
    active_days_30 = models.PositiveSmallIntegerField(default=0)
    habit_strength = models.FloatField(default=0, help_text="0–100, decays on missed days.")
    consistency = models.FloatField(default=0, help_text="0–100.")
    accuracy_7 = models.FloatField(null=True)
    accuracy_prev_7 = models.FloatField(null=True)
    trend = models.FloatField(
        null=True, help_text="accuracy_7 − accuracy_prev_7, with ≥ 20 attempts in each.")
    slope_per_week = models.FloatField(
        null=True, help_text="Attempt-weighted least-squares slope of daily accuracy, points "
                             "per week.")
    strengths = models.JSONField(default=list, blank=True)
    weaknesses = models.JSONField(default=list, blank=True)
    recommendations = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["student_id"]

    def __str__(self):
        return f"Insights of {self.student_id} as of {self.as_of}"


class StudentAchievement(models.Model):
    """An achievement a student earned: once per student and achievement (and subject, for
    mastery). Withdrawn (never deleted) when a regrade shows it no longer holds; announced by
    the notifications app, which sets announced_at."""

    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="achievements")
    achievement = models.ForeignKey("core.Achievement", on_delete=models.CASCADE,
                                    related_name="earned")
    subject = models.ForeignKey("core.Subject", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    earned_at = models.DateTimeField()
    earned_on = models.DateField(help_text="The student's local date it was earned on.")
    value = models.FloatField(null=True, help_text="The figure that earned it.")
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    announced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-earned_at"]
        constraints = [
            # Two partial unique indexes: one row per student and achievement, or per student,
            # achievement and subject for the per-subject kinds (NULLs are distinct in a plain
            # unique constraint on both databases).
            models.UniqueConstraint(fields=["student", "achievement"],
                                    condition=models.Q(subject__isnull=True),
                                    name="analytics_earned_once"),
            models.UniqueConstraint(fields=["student", "achievement", "subject"],
                                    condition=models.Q(subject__isnull=False),
                                    name="analytics_earned_once_per_subject"),
        ]
        indexes = [models.Index(fields=["earned_at"], name="analytics_earned_at")]

    def __str__(self):
        return f"{self.student_id}: {self.achievement_id}"


class Regrade(models.Model):
    """One regrade of a question's attempts after its answer key was corrected: who asked,
    when, and what changed (analytics/regrading.py)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    question = models.ForeignKey("core.Question", on_delete=models.CASCADE,
                                 related_name="regrades")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField()
    key_before = models.JSONField(default=dict, blank=True)
    key_after = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts_changed = models.PositiveIntegerField(default=0)
    became_correct = models.PositiveIntegerField(default=0)
    became_wrong = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self):
        return f"Regrade of question {self.question_id} ({self.status})"


class ReviewCard(models.Model):
    """A question a student got wrong, scheduled for review by FSRS (analytics/review.py).
    Created at the first wrong answer; each later local day's first attempt at the question is a
    review (wrong = Again, right = Good). `applied_attempt_id` is the high-water mark of the
    attempts already applied, so applying twice changes nothing; a regrade below the mark
    replays the card from the student's attempts."""

    class State(models.IntegerChoices):
        LEARNING = 1, "Learning"
        REVIEW = 2, "Review"
        RELEARNING = 3, "Relearning"

    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="review_cards")
    question = models.ForeignKey("core.Question", on_delete=models.CASCADE,
                                 related_name="review_cards")
    state = models.PositiveSmallIntegerField(choices=State.choices, default=State.LEARNING)
    step = models.PositiveSmallIntegerField(null=True, blank=True)
    stability = models.FloatField(null=True, blank=True)
    difficulty = models.FloatField(null=True, blank=True)
    due = models.DateTimeField()
    last_review = models.DateTimeField(null=True, blank=True)
    reviews = models.PositiveIntegerField(default=0, help_text="Reviews applied (the first "
                                          "wrong answer included).")
    lapses = models.PositiveIntegerField(default=0, help_text="Reviews rated Again.")
    applied_attempt_id = models.BigIntegerField(
        help_text="High-water mark: the last attempt applied to this card.")
    applied_local_date = models.DateField(help_text="The local date of that attempt.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["due"]
        constraints = [
            models.UniqueConstraint(fields=["student", "question"], name="analytics_card_unique"),
        ]
        indexes = [models.Index(fields=["student", "due"], name="analytics_card_due")]

    def __str__(self):
        return f"{self.student_id}: question {self.question_id} due {self.due:%Y-%m-%d}"


class Report(models.Model):
    """A stored report: its figures (data), its rendered HTML, and its chart as a PNG (which the
    HTML shows inline, and an email attaches with a Content-ID). One per kind, period and
    student (student reports) or per kind and period (admin reports)."""

    class Kind(models.TextChoices):
        STUDENT_WEEKLY = "student_weekly", "Student's weekly report"
        ADMIN_DAILY = "admin_daily", "Daily admin report"
        ADMIN_WEEKLY = "admin_weekly", "Weekly admin report"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    student = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                on_delete=models.CASCADE, related_name="reports")
    period_start = models.DateField()
    period_end = models.DateField(help_text="Inclusive.")
    label = models.CharField(max_length=40, help_text="e.g. 2026-W49 or 2026-12-03")
    data = models.JSONField(default=dict)
    html = models.TextField()
    chart_png = models.BinaryField(blank=True, default=b"")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "student", "period_start"],
                                    condition=models.Q(student__isnull=False),
                                    name="analytics_report_once_per_student"),
            models.UniqueConstraint(fields=["kind", "period_start"],
                                    condition=models.Q(student__isnull=True),
                                    name="analytics_report_once"),
        ]
        indexes = [models.Index(fields=["kind", "period_start"], name="analytics_report_period")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.label}"


class StudentDataAccess(models.Model):
    """No table: it holds the read API's permission to read any student's data (the app's own
    server, acting for its students). A student's own token reads only its own student."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("read_any_student", "Can read any student's data through the API"),
        ]

    def __str__(self):
        return "student data access"
