"""The admin for operating the system: job run records, cluster presences, alerts, and
django-q's own pages made safe.

django-q2's Schedule admin lets anyone with its change permission type any importable callable
into `func` (or `hook`) and have a worker run it. Here a schedule's task must be a declared job,
hooks are refused, and changing schedules, queued tasks or resubmitting results also needs
`maintenance.run_job`.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django_q import admin as django_q_admin
from django_q.models import Failure, OrmQ, Schedule, Success

from core.jobs import enqueue, job_spec, queues
from core.jobs.models import ClusterPresence, JobRun
from maintenance import health_admin, operations, system_report_admin  # noqa: F401  (register)
from maintenance.backups import admin as backups_admin  # noqa: F401  (registers its admin)
from maintenance.models import OpsAlert
from maintenance.records_admin import ReadOnlyAdmin
from maintenance.views import RUN_PERMISSION


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ["job", "queue", "attempt", "outcome", "started_at", "duration_ms",
                    "retry_delay_s", "host"]
    list_filter = ["outcome", "queue", "job"]
    search_fields = ["job", "chain", "task_id", "identity"]
    date_hierarchy = "started_at"
    show_full_result_count = False


@admin.register(ClusterPresence)
class ClusterPresenceAdmin(ReadOnlyAdmin):
    list_display = ["name", "host", "pid", "status", "started_at", "last_seen_at", "workers",
                    "busy_workers", "reincarnations", "recoveries"]
    list_filter = ["status", "name", "host"]


@admin.register(OpsAlert)
class OpsAlertAdmin(ReadOnlyAdmin):
    list_display = ["summary", "key", "opened_at", "acknowledged_by", "resolved_at", "is_open"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter),
                   ("acknowledged_at", admin.EmptyFieldListFilter)]
    search_fields = ["key", "summary"]
    date_hierarchy = "opened_at"

    @admin.display(boolean=True, description="Open", ordering="resolved_at")
    def is_open(self, obj):
        return obj.resolved_at is None


# --- django-q's pages -----------------------------------------------------------------------


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ["name", "func", "hook", "args", "kwargs", "schedule_type", "minutes",
                  "repeats", "next_run", "cron", "cluster", "intended_date_kwarg"]

    def clean_func(self):
        func = self.cleaned_data["func"]
        try:
            job_spec(func)
        except ValueError as exc:
            raise ValidationError(f"Only declared jobs can be scheduled: {exc}") from None
        return func

    def clean_hook(self):
        if self.cleaned_data.get("hook"):
            raise ValidationError("Hooks are not used here: a hook runs any callable it names.")
        return None

    def clean(self):
        cleaned = super().clean()
        probe = Schedule(args=cleaned.get("args"), kwargs=cleaned.get("kwargs"))
        try:
            operations.schedule_call(probe)
        except ValueError as exc:
            raise ValidationError(f"The arguments cannot be read: {exc}.") from None
        return cleaned


def _may_operate(request) -> bool:
    return request.user.has_perm(RUN_PERMISSION)


class ScheduleAdmin(django_q_admin.ScheduleAdmin):
    form = ScheduleForm

    def has_add_permission(self, request):
        return super().has_add_permission(request) and _may_operate(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and _may_operate(request)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and _may_operate(request)

    def save_model(self, request, obj, form, change):
        if not obj.cluster:
            # With routing on, a schedule naming no cluster would run nowhere.
            obj.cluster = queues.schedule_cluster(job_spec(obj.func).queue)
        super().save_model(request, obj, form, change)


@admin.action(description="Run the selected tasks again (declared jobs only; a resubmitted failure leaves this list)")
def resubmit_jobs(modeladmin, request, queryset):
    if not _may_operate(request):
        modeladmin.message_user(request, f"Running jobs needs {RUN_PERMISSION}.", messages.ERROR)
        return
    sent, refused = 0, []
    for task in queryset:
        try:
            # The same group: a scheduled run's failure, run again, is the schedule's job (its
            # success resolves the schedule's alert).
            enqueue(task.func, args=list(task.args or ()), kwargs=dict(task.kwargs or {}),
                    group=task.group or None)
        except ValueError as exc:
            refused.append(f"{task.name}: {exc}")
            continue
        sent += 1
        if isinstance(modeladmin, FailureAdmin):
            task.delete()  # as django-q's own resubmit does: a failure is resubmitted once
    modeladmin.message_user(request, f"{sent} tasks queued again.")
    for line in refused:
        modeladmin.message_user(request, f"Not queued: {line}", messages.WARNING)


class SuccessAdmin(django_q_admin.TaskAdmin):
    actions = [resubmit_jobs]


class FailureAdmin(django_q_admin.FailAdmin):
    actions = [resubmit_jobs]


class QueuedTaskAdmin(django_q_admin.QueueAdmin):
    """Queued tasks: editing one (its queue, its lock) is for superusers; deleting one cancels
    it and needs maintenance.run_job."""

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and _may_operate(request)


for model, model_admin in ((Schedule, ScheduleAdmin), (Success, SuccessAdmin),
                           (Failure, FailureAdmin), (OrmQ, QueuedTaskAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
