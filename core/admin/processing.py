"""The admin's view of the AI pipeline: step statuses on questions, the actions that run it,
and the review of similar pairs."""

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core import processing
from core.ai.types import ProviderUnavailable
from core.jobs import enqueue
from core.models import QuestionStep, SimilarQuestion

STEP_SHORT = {"embedding": "E", "metadata": "M", "explanation": "X", "similar": "S"}
STATUS_MARK = {"done": "✓", "failed": "✗", "skipped": "–", "pending": "…", "running": "⟳"}
SIMILAR_SHOWN = 5


def step_summary(question) -> str:
    """E✓ M✓ X– S✓ (embedding, metadata, explanation, similar), from the prefetched steps (no
    query per row); the tooltip says the status and why."""
    steps = {s.step: s for s in question.steps.all()}
    return format_html_join(
        " ", '<span title="{}: {}{}" class="ai-step ai-{}">{}{}</span>',
        ((step, row.get_status_display(), f" ({row.get_reason_display()})" if row.reason else "",
          row.status, STEP_SHORT[step], STATUS_MARK[row.status])
         for step in processing.STEP_ORDER if (row := steps.get(step))))


def step_filter(step: str):
    """A list filter on one step's status."""

    class StepStatusFilter(admin.SimpleListFilter):
        title = f"{QuestionStep.Step(step).label.lower()} step"
        parameter_name = f"ai_{step}"

        def lookups(self, request, model_admin):
            return QuestionStep.Status.choices

        def queryset(self, request, queryset):
            if self.value():
                return queryset.filter(steps__step=step, steps__status=self.value())
            return queryset

    return StepStatusFilter


class QuestionStepInline(admin.TabularInline):
    model = QuestionStep
    extra = 0
    can_delete = False
    fields = ["step", "status", "reason", "attempts", "model", "processed_at", "last_error",
              "raw_output"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class QuestionProcessingActions:
    """Actions of the Question admin that run the pipeline."""

    @admin.action(description="Process with AI now (the pending steps of the selected)")
    def process_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        processing.question_steps_refresh(ids)
        enqueue("core.tasks.process_question_batch", args=[ids])
        self.message_user(request, f"Queued the pending AI steps of {len(ids)} questions "
                                   "(queue question_processing).")

    @admin.action(description="Reprocess with AI (every step again)")
    def reprocess(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        processing.question_steps_refresh(ids)
        for step in processing.STEP_ORDER:
            processing.steps_force(step, question_ids=ids)
        enqueue("core.tasks.process_question_batch", args=[ids])
        self.message_user(request, f"Every AI step of {len(ids)} questions will run again.")

    @admin.action(description="Find similar questions")
    def find_similar(self, request, queryset):
        results = []
        for question in queryset.select_related("subject", "topic")[:SIMILAR_SHOWN]:
            try:
                hits = processing.question_similar(question=question, k=5)
            except ProviderUnavailable as exc:
                self.message_user(request, f"The index cannot be searched now: {exc}",
                                  messages.ERROR)
                return None
            results.append((question, hits))
        context = {**self.admin_site.each_context(request), "title": "Similar questions",
                   "results": results, "opts": self.model._meta,
                   "more": queryset.count() > SIMILAR_SHOWN, "shown": SIMILAR_SHOWN}
        return TemplateResponse(request, "admin/core/question/similar.html", context)


@admin.register(SimilarQuestion)
class SimilarQuestionAdmin(admin.ModelAdmin):
    """Pairs the pipeline found close: a person says whether they are duplicates."""

    list_display = ["pair", "score_shown", "model", "review", "reviewed_by", "found_at"]
    list_filter = ["review", "model", "question_a__subject"]
    list_select_related = ["question_a__subject", "question_b__subject", "reviewed_by"]
    search_fields = ["question_a__text", "question_b__text"]
    readonly_fields = ["question_a", "question_b", "score", "model", "review", "reviewed_by",
                       "reviewed_at", "found_at"]
    actions = ["mark_duplicate", "mark_not_duplicate"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Questions")
    def pair(self, obj):
        return format_html("{}<br>{}", str(obj.question_a), str(obj.question_b))

    @admin.display(description="Similarity", ordering="score")
    def score_shown(self, obj):
        return f"{obj.score:.3f}"

    def _review(self, request, queryset, review):
        updated = queryset.update(review=review, reviewed_by=request.user,
                                  reviewed_at=timezone.now())
        self.message_user(request, f"{updated} pairs marked “{review.label}”.")

    @admin.action(description="Mark as duplicates")
    def mark_duplicate(self, request, queryset):
        self._review(request, queryset, SimilarQuestion.Review.DUPLICATE)

    @admin.action(description="Mark as not duplicates")
    def mark_not_duplicate(self, request, queryset):
        self._review(request, queryset, SimilarQuestion.Review.NOT_DUPLICATE)
