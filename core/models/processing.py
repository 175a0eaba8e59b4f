"""The AI pipeline's records: each question's steps, and the similar pairs it finds."""

from django.conf import settings
from django.db import models


class QuestionStep(models.Model):
    """One step of a question's AI processing (core/processing.py): its status, what it ran on,
    and its lease while a worker runs it."""

    class Step(models.TextChoices):
        EMBEDDING = "embedding", "Embedding"
        EXPLANATION = "explanation", "Explanation"
        METADATA = "metadata", "Metadata"
        SIMILAR = "similar", "Similar questions"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Reason(models.TextChoices):
        NONE = "", "—"
        NO_GENERATOR = "no_generator", "No generator configured"
        RETIRED = "retired", "Question retired"
        PROVIDER_ERROR = "provider_error", "The provider refused it"
        INVALID_OUTPUT = "invalid_output", "The answer stayed invalid"
        QUOTA = "quota", "Daily cap reached"
        UNAVAILABLE = "unavailable", "Provider unavailable"

    question = models.ForeignKey("core.Question", on_delete=models.CASCADE, related_name="steps")
    step = models.CharField(max_length=12, choices=Step.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    raw_output = models.TextField(blank=True, help_text="The provider's answer, when invalid.")
    model = models.CharField(max_length=120, blank=True, help_text="What produced the result.")
    input_hash = models.CharField(
        max_length=64, blank=True,
        help_text="SHA-256 of what the step ran on: an edit that changes it makes it pending.")
    processed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["question_id", "step"]
        constraints = [
            models.UniqueConstraint(fields=["question", "step"], name="core_step_unique"),
        ]
        indexes = [
            models.Index(fields=["step", "status"], name="core_step_queue"),
            models.Index(fields=["lease_token"], name="core_step_lease_token"),
        ]

    def __str__(self):
        return f"{self.question_id} {self.step}: {self.status}"


class SimilarQuestion(models.Model):
    """Two questions whose embeddings are closer than the embedder's duplicate threshold: a
    possible duplicate for a person to review. One row per unordered pair (a < b)."""

    class Review(models.TextChoices):
        UNREVIEWED = "unreviewed", "Not reviewed"
        DUPLICATE = "duplicate", "Duplicate"
        NOT_DUPLICATE = "not_duplicate", "Not a duplicate"

    question_a = models.ForeignKey("core.Question", on_delete=models.CASCADE, related_name="+")
    question_b = models.ForeignKey("core.Question", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="Cosine similarity of their embeddings.")
    model = models.CharField(max_length=120, help_text="The embedder that found them.")
    review = models.CharField(max_length=14, choices=Review.choices, default=Review.UNREVIEWED)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    found_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-score"]
        constraints = [
            models.UniqueConstraint(fields=["question_a", "question_b"], name="core_similar_pair"),
            models.CheckConstraint(condition=models.Q(question_a__lt=models.F("question_b")),
                                   name="core_similar_ordered"),
        ]
        indexes = [models.Index(fields=["review", "-score"], name="core_similar_review")]

    def __str__(self):
        return f"{self.question_a_id} ~ {self.question_b_id} ({self.score:.3f})"
