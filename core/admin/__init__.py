from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html

from core import services
from core.admin.processing import (
    QuestionProcessingActions,
    QuestionStepInline,
    step_filter,
    step_summary,
)
from core.models import (
    Achievement,
    ApiToken,
    Attempt,
    Choice,
    ExamPaper,
    PracticeSession,
    Question,
    SeedRecord,
    StudentProfile,
    Subject,
    Topic,
    User,
)

# Not `from core import processing`: importing the submodule core.admin.processing (above)
# rebinds the name `processing` in this package to that submodule.
from core.processing import question_steps_refresh

# The relations each model's __str__ reads (keep in step with core/models/domain.py). A <select>
# of them loads these in the same query; otherwise every option's label costs a query.
LABEL_RELATIONS = {
    Topic: ("subject",),
    ExamPaper: ("subject",),
    Question: ("subject",),
    PracticeSession: ("student",),
}


class OneQueryPerSelect:
    """For ModelAdmins and inlines: each foreign-key <select> costs one query, whatever the
    number of options. In an inline every row offers the same options, so they are loaded once
    for the page and shared by the rows, instead of once per row; and the rows come with what
    their own labels read (a tabular inline shows each row's label)."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        relations = LABEL_RELATIONS.get(self.model)
        # Inlines only: a changelist applies list_select_related only to a queryset that has no
        # select_related yet. And never select_related() without names: that follows every key.
        if relations and isinstance(self, admin.options.InlineModelAdmin):
            queryset = queryset.select_related(*relations)
        return queryset

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        relations = LABEL_RELATIONS.get(db_field.related_model)
        if relations and "queryset" not in kwargs:
            queryset = self.get_field_queryset(kwargs.get("using"), db_field, request)
            if queryset is None:
                queryset = db_field.related_model._default_manager.using(kwargs.get("using"))
            kwargs["queryset"] = queryset.select_related(*relations)
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if (isinstance(self, admin.options.InlineModelAdmin) and formfield is not None
                and isinstance(formfield.widget, forms.Select)
                and db_field.name not in self.get_autocomplete_fields(request)):
            # A list, once set, is what every row's copy of the field renders (Django's
            # ModelChoiceField only queries when no choices were set). Not for an autocomplete,
            # which renders only the chosen option.
            formfield.choices = list(formfield.choices)
        return formfield


class StudentProfileInline(admin.StackedInline):
    model = StudentProfile
    can_delete = False
    extra = 0


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "timezone", "is_staff", "is_demo",
                    "last_login", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "is_demo", "profile__level"]
    search_fields = ["email", "first_name", "last_name"]
    list_select_related = ["profile"]
    readonly_fields = ["last_login", "date_joined"]
    # Other apps add their per-student inlines (notifications: the preferences) in their own
    # admin.py, since core does not import them.
    inlines = [StudentProfileInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "is_demo")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups",
                                    "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",),
                             "fields": ("email", "password1", "password2")}),)

    @admin.display(description="Time zone", ordering="profile__timezone")
    def timezone(self, obj):
        profile = getattr(obj, "profile", None)
        return profile.timezone if profile else "—"

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # "Add user" makes a whole student through the one service that does, instead of a
        # bare user without the profile and preferences every student has.
        usable = form.cleaned_data.get("set_usable_password", True)
        password = form.cleaned_data["password1"] if usable else None
        user = services.student_create(email=obj.email, password=password).user
        obj.pk = user.pk
        obj.refresh_from_db()


class TopicInline(OneQueryPerSelect, admin.TabularInline):
    model = Topic
    extra = 0
    fields = ["name", "slug", "parent"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Subject)
class SubjectAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "level", "is_active", "question_count"]
    list_filter = ["level", "is_active"]
    search_fields = ["code", "name"]
    inlines = [TopicInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(question_count=Count("questions"))

    @admin.display(description="Questions", ordering="question_count")
    def question_count(self, obj):
        return obj.question_count


@admin.register(Topic)
class TopicAdmin(OneQueryPerSelect, admin.ModelAdmin):
    list_display = ["name", "subject", "slug", "parent"]
    list_filter = ["subject"]
    search_fields = ["name", "slug"]
    list_select_related = ["subject", "parent__subject"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(ExamPaper)
class ExamPaperAdmin(OneQueryPerSelect, admin.ModelAdmin):
    list_display = ["__str__", "exam_body", "subject", "year", "sitting", "paper_number"]
    list_filter = ["exam_body", "subject", "year", "sitting"]
    search_fields = ["exam_body"]
    list_select_related = ["subject"]


class ChoiceInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        flags = [
            form.cleaned_data.get("is_correct", False)
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        question_type = getattr(self.instance, "question_type", None)
        try:
            services.question_check_choices(question_type, flags)
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None


class ChoiceInline(admin.TabularInline):
    model = Choice
    formset = ChoiceInlineFormSet
    extra = 0
    fields = ["label", "text", "is_correct"]
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2,
                                                                           "cols": 70})},
                           models.CharField: {"widget": forms.TextInput(attrs={"size": 4})}}


@admin.register(Question)
class QuestionAdmin(QuestionProcessingActions, OneQueryPerSelect, admin.ModelAdmin):
    list_display = ["id", "short_text", "subject_code", "topic_name", "difficulty_shown",
                    "status", "ai_steps", "key_check"]
    list_filter = ["status", "subject", "question_type", "difficulty", "ai_key_disagreement",
                   *(step_filter(step) for step in ("embedding", "metadata", "explanation",
                                                    "similar"))]
    search_fields = ["text", "content_hash"]
    list_select_related = ["subject", "topic__subject"]
    autocomplete_fields = ["paper"]
    inlines = [ChoiceInline, QuestionStepInline]
    readonly_fields = ["content_hash", "source", "ai_explanation", "ai_explanation_conclusion",
                       "ai_key_disagreement", "ai_metadata", "ai_difficulty",
                       "measured_difficulty", "created_at", "updated_at"]
    fieldsets = (
        (None, {"fields": ("subject", "topic", "paper", "year", "question_type", "text", "marks",
                           "difficulty", "priority", "status", "answer", "explanation")}),
        ("Provenance", {"fields": ("source", "content_hash", "created_at", "updated_at")}),
        ("AI processing", {"fields": ("ai_explanation", "ai_explanation_conclusion",
                                      "ai_key_disagreement", "ai_metadata", "ai_difficulty",
                                      "measured_difficulty")}),
    )
    actions = ["retire", "process_now", "reprocess", "find_similar"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps")

    @admin.display(description="AI steps")
    def ai_steps(self, obj):
        return step_summary(obj)

    @admin.display(description="Key check", ordering="ai_key_disagreement")
    def key_check(self, obj):
        return "⚠ disagrees" if obj.ai_key_disagreement else ""

    @admin.display(description="Subject", ordering="subject__code")
    def subject_code(self, obj):
        return obj.subject.code

    @admin.display(description="Topic", ordering="topic__name")
    def topic_name(self, obj):
        return obj.topic.name if obj.topic_id else "—"

    @admin.display(description="Difficulty")
    def difficulty_shown(self, obj):
        value, source = obj.effective_difficulty
        return f"{value} ({source})" if value else "—"

    @admin.display(description="Text")
    def short_text(self, obj):
        text = " ".join(obj.text.split())
        return text[:70] + ("…" if len(text) > 70 else "")

    def save_model(self, request, obj, form, change):
        if not obj.content_hash:
            obj.content_hash = services.question_content_hash(obj)
        # The key as it is in the database, before this edit and its choice inlines land.
        obj._key_before = (
            services.question_answer_key(Question.objects.get(pk=obj.pk)) if change else None)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        before = getattr(form.instance, "_key_before", None)
        if before is not None and services.question_key_change_announce(
                form.instance, before=before, by=request.user):
            self.message_user(
                request, "The answer key changed: the question's attempts will be regraded "
                         "(see Analytics › Regrades).", messages.INFO)
        try:
            services.question_refresh_content_hash(form.instance)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.WARNING)
        # An edit that changes what a step ran on makes that step pending again.
        question_steps_refresh([form.instance.pk])

    @admin.action(description="Retire selected questions (keeps their history)")
    def retire(self, request, queryset):
        retired = services.questions_retire(queryset)
        self.message_user(request, f"{retired} questions retired.")


@admin.register(PracticeSession)
class PracticeSessionAdmin(OneQueryPerSelect, admin.ModelAdmin):
    list_display = ["id", "student", "subject", "mode", "status", "started_at", "question_count",
                    "correct_count", "score"]
    list_filter = ["status", "mode", "subject"]
    search_fields = ["student__email"]
    list_select_related = ["student", "subject"]
    raw_id_fields = ["student"]
    date_hierarchy = "started_at"
    readonly_fields = ["question_count", "correct_count", "total_time_ms", "score"]


@admin.register(Attempt)
class AttemptAdmin(OneQueryPerSelect, admin.ModelAdmin):
    """Attempts are a record of what happened: read-only here."""

    list_display = ["id", "student", "question_id", "is_correct", "time_taken_ms", "answered_at",
                    "local_date", "attempt_number"]
    list_filter = ["is_correct", "question__subject"]
    search_fields = ["student__email"]
    list_select_related = ["student"]
    date_hierarchy = "local_date"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name", "expires_at"]

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(OneQueryPerSelect, admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created_at", "expires_at", "last_used_at",
                    "revoked_at", "active"]
    list_filter = ["revoked_at"]
    search_fields = ["user__email", "name", "prefix"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at",
                       "revoked_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return ["user", "name", "expires_at"] if obj is None else self.readonly_fields

    @admin.display(boolean=True)
    def active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, raw = services.api_token_issue(
            user=obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk = token.pk
        self.message_user(
            request,
            format_html("Token issued. Copy it now, it is not shown again: <code>{}</code>", raw),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        revoked = sum(services.api_token_revoke(token) for token in queryset)
        self.message_user(request, f"{revoked} tokens revoked.")


@admin.register(Achievement)
class AchievementAdmin(admin.ModelAdmin):
    list_display = ["code", "title", "kind", "threshold", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "title"]


@admin.register(SeedRecord)
class SeedRecordAdmin(admin.ModelAdmin):
    list_display = ["part", "parameters", "counts", "created_at"]
    readonly_fields = ["part", "parameters", "counts", "created_at"]

    def has_add_permission(self, request):
        return False
