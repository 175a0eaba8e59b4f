"""Analytics in the admin: read-only views of what the jobs computed (they are recomputed, so
an edit here would be overwritten), and the regrades with their outcome."""

import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from analytics.models import (
    ChoiceStats,
    DailyStudentStats,
    DailySubjectStats,
    PaperStats,
    QuestionStats,
    Regrade,
    Report,
    ReviewCard,
    StudentAchievement,
    StudentInsight,
    WeeklyStudentStats,
)
from analytics.reports import report_html


def _fraction(value) -> str:
    return "—" if value is None else f"{value:.0%}"


def _decimal(value, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def _seconds(ms) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


class Figures:
    """Display columns shared by the rollup and statistics admins: proportions as percents,
    correlations to two places, milliseconds as seconds."""

    @admin.display(description="Accuracy", ordering="accuracy")
    def accuracy_shown(self, obj):
        return _fraction(obj.accuracy)

    @admin.display(description="Time", ordering="time_spent_ms")
    def time_shown(self, obj):
        minutes = obj.time_spent_ms / 60000
        return f"{minutes:.0f} min"


class ComputedAdmin(admin.ModelAdmin):
    """Rows the analytics jobs write: viewable, never edited by hand."""

    show_full_result_count = False  # no COUNT(*) over a large table on every page

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DailyStudentStats)
class DailyStudentStatsAdmin(Figures, ComputedAdmin):
    list_display = ["date", "student", "attempts", "correct", "accuracy_shown", "time_shown",
                    "distinct_questions", "sessions", "updated_at"]
    list_select_related = ["student"]
    search_fields = ["student__email"]
    date_hierarchy = "date"


@admin.register(DailySubjectStats)
class DailySubjectStatsAdmin(Figures, ComputedAdmin):
    list_display = ["date", "student", "subject", "attempts", "correct", "accuracy_shown",
                    "time_shown", "distinct_questions", "updated_at"]
    list_select_related = ["student", "subject"]
    list_filter = ["subject"]
    search_fields = ["student__email"]
    date_hierarchy = "date"


@admin.register(WeeklyStudentStats)
class WeeklyStudentStatsAdmin(Figures, ComputedAdmin):
    list_display = ["week", "week_start", "student", "attempts", "correct", "accuracy_shown",
                    "time_shown", "active_days", "distinct_questions", "sessions"]
    list_select_related = ["student"]
    search_fields = ["student__email"]
    date_hierarchy = "week_start"

    @admin.display(description="ISO week", ordering="week_start")
    def week(self, obj):
        return f"{obj.iso_year}-W{obj.iso_week:02d}"


@admin.register(QuestionStats)
class QuestionStatsAdmin(ComputedAdmin):
    list_display = ["question_id", "subject", "n", "facility_shown", "discrimination_shown",
                    "skip_shown", "median_time_shown", "flag_list", "computed_at"]
    list_select_related = ["question__subject"]
    list_filter = ["enough_data", "question__subject"]
    search_fields = ["question__text"]
    ordering = ["question_id"]
    fields = ["question", "n", "n_correct", "n_skipped", "facility_shown", "discrimination_shown",
              "n_discrimination", "mean_time_shown", "median_time_shown", "skip_shown",
              "flag_list", "choice_breakdown", "computed_at"]
    readonly_fields = ["facility_shown", "discrimination_shown", "mean_time_shown",
                       "median_time_shown", "skip_shown", "flag_list", "choice_breakdown"]

    @admin.display(description="Subject", ordering="question__subject__code")
    def subject(self, obj):
        return obj.question.subject.code

    @admin.display(description="Facility (proportion right)", ordering="facility")
    def facility_shown(self, obj):
        return _fraction(obj.facility)

    @admin.display(description="Discrimination", ordering="discrimination")
    def discrimination_shown(self, obj):
        return _decimal(obj.discrimination)

    @admin.display(description="Skipped", ordering="skip_rate")
    def skip_shown(self, obj):
        return _fraction(obj.skip_rate)

    @admin.display(description="Mean time", ordering="mean_time_ms")
    def mean_time_shown(self, obj):
        return _seconds(obj.mean_time_ms)

    @admin.display(description="Median time", ordering="median_time_ms")
    def median_time_shown(self, obj):
        return _seconds(obj.median_time_ms)

    @admin.display(description="Flags")
    def flag_list(self, obj):
        return ", ".join(obj.flags) or "—"

    @admin.display(description="Choices (overall, top third, bottom third)")
    def choice_breakdown(self, obj):
        rows = ChoiceStats.objects.filter(question_id=obj.question_id).select_related(
            "choice").order_by("choice__label")
        return format_html_join(
            "", "<div>{}{}: {} chosen ({}; top {}; bottom {})</div>",
            ((row.choice.label, " (key)" if row.choice.is_correct else "", row.count,
              _fraction(row.proportion), _fraction(row.upper_proportion),
              _fraction(row.lower_proportion)) for row in rows),
        ) or "—"


@admin.register(PaperStats)
class PaperStatsAdmin(ComputedAdmin):
    list_display = ["paper", "n_students", "n_questions", "alpha_shown", "mean_shown",
                    "sd_shown", "computed_at"]
    list_select_related = ["paper__subject"]

    @admin.display(description="Cronbach's alpha", ordering="alpha")
    def alpha_shown(self, obj):
        return _decimal(obj.alpha, 3)

    @admin.display(description="Mean score", ordering="mean")
    def mean_shown(self, obj):
        return _decimal(obj.mean)

    @admin.display(description="SD", ordering="sd")
    def sd_shown(self, obj):
        return _decimal(obj.sd)


@admin.register(StudentInsight)
class StudentInsightAdmin(ComputedAdmin):
    list_display = ["student", "as_of", "current_streak", "longest_streak", "active_days_30",
                    "habit_shown", "consistency_shown", "trend_shown", "computed_at"]
    list_select_related = ["student"]
    search_fields = ["student__email"]

    @admin.display(description="Habit strength", ordering="habit_strength")
    def habit_shown(self, obj):
        return _decimal(obj.habit_strength, 0)

    @admin.display(description="Consistency", ordering="consistency")
    def consistency_shown(self, obj):
        return _decimal(obj.consistency, 0)

    @admin.display(description="Trend (7 days)", ordering="trend")
    def trend_shown(self, obj):
        if obj.trend is None:
            return "—"
        points = round(obj.trend * 100)
        return f"{points:+d} points" if points else "0 points"


@admin.register(StudentAchievement)
class StudentAchievementAdmin(ComputedAdmin):
    list_display = ["student", "achievement", "subject", "earned_on", "earned_at",
                    "withdrawn_at", "announced_at"]
    list_select_related = ["student", "achievement", "subject"]
    list_filter = ["achievement", ("withdrawn_at", admin.EmptyFieldListFilter),
                   ("announced_at", admin.EmptyFieldListFilter)]
    search_fields = ["student__email"]
    date_hierarchy = "earned_at"


@admin.register(Regrade)
class RegradeAdmin(ComputedAdmin):
    list_display = ["question", "status", "requested_by", "requested_at", "finished_at",
                    "attempts_changed", "became_correct", "became_wrong"]
    list_select_related = ["question", "requested_by"]
    list_filter = ["status"]
    readonly_fields = ["question", "requested_by", "requested_at", "key_before", "key_after",
                       "status", "finished_at", "attempts_changed", "became_correct",
                       "became_wrong", "summary", "error"]


@admin.register(Report)
class ReportAdmin(ComputedAdmin):
    """Stored reports: the list by kind and period; a report's page shows it as rendered, chart
    included, in a sandboxed frame (its HTML is the email's, escaped when it was built)."""

    list_display = ["label", "kind", "student", "period_start", "period_end", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["label", "student__email"]
    list_select_related = ["student"]
    date_hierarchy = "period_start"
    fields = ["kind", "label", "student", "period_start", "period_end", "created_at",
              "updated_at", "rendered", "data_shown"]
    readonly_fields = ["rendered", "data_shown"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # The list needs neither the HTML nor the chart.
        url_name = getattr(request.resolver_match, "url_name", "") or ""
        return queryset.defer("html", "chart_png") if url_name.endswith("changelist") else queryset

    @admin.display(description="Report")
    def rendered(self, obj):
        return format_html('<iframe sandbox srcdoc="{}" title="{}" style="width:680px;'
                           'height:1250px;border:1px solid #ddd"></iframe>',
                           report_html(obj), obj.label)

    @admin.display(description="Data (JSON)")
    def data_shown(self, obj):
        return format_html('<pre style="max-height:30em;overflow:auto">{}</pre>',
                           json.dumps(obj.data, indent=2, ensure_ascii=False))


@admin.register(ReviewCard)
class ReviewCardAdmin(ComputedAdmin):
    """Spaced-review cards (FSRS): which questions each student will see again, and when."""

    list_display = ["student", "question_id", "state", "due", "stability_shown", "reviews",
                    "lapses", "last_review", "applied_local_date"]
    list_select_related = ["student"]
    list_filter = ["state"]
    search_fields = ["student__email"]
    date_hierarchy = "due"
    raw_id_fields = ["student", "question"]

    @admin.display(description="Stability (days)", ordering="stability")
    def stability_shown(self, obj):
        return _decimal(obj.stability, 1)
