"""The notifications admin: the send ledger (every entry with its rendered email), "Send a test
email", "Resend" (failed or unknown entries, after confirmation), the switch that pauses
student email, undeliverable addresses, and the preferences (also inline on each user)."""

from __future__ import annotations

import base64
import datetime
import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from analytics.models import Report
from analytics.reports import REPORT_CHART_CID
from core.admin import UserAdmin
from notifications import services
from notifications.models import (
    EmailDelivery,
    Notification,
    NotificationPreference,
    UndeliverableAddress,
)
from notifications.preferences import student_email_paused
from notifications.sending import CHART_CID

SEND_PERMISSION = "notifications.send_email"
PAUSE_PERMISSION = "notifications.pause_email"

_CHART_REFERENCE = re.compile(
    rf"""(["'(])cid:(?:{re.escape(CHART_CID)}|{re.escape(REPORT_CHART_CID)})(["')])""")

STATUS_COLOURS = {
    Notification.Status.SENT: "#1e7e34", Notification.Status.QUEUED: "#555555",
    Notification.Status.SENDING: "#0b5cad", Notification.Status.SKIPPED: "#7a6a00",
    Notification.Status.FAILED: "#b00020", Notification.Status.UNKNOWN: "#a34a00",
}


class TestEmailForm(forms.Form):
    to = forms.EmailField(label="Send to", help_text="Any address; the email goes through the "
                          "configured backend and into the ledger like any other.")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["address", "kind", "period", "status_and_reason", "attempts", "when"]
    list_filter = ["status", "kind", "reason"]
    search_fields = ["address", "period", "message_id", "subject"]
    date_hierarchy = "due_at"
    list_select_related = ["user"]
    show_full_result_count = False
    actions = ["resend"]
    # The email itself comes before the timestamps: it is what an entry is opened for.
    fieldsets = [
        (None, {"fields": ["address", "user", "kind", "period", "status_badge", "reason",
                           "detail", "attempts"]}),
        ("Message", {"fields": ["subject", "rendered_html", "rendered_text", "message_id"]}),
        ("When (UTC)", {"fields": ["due_at", "send_after", "expires_at", "retry_at",
                                   "claimed_at", "sent_at", "created_at"]}),
    ]
    change_list_template = "admin/notifications/notification/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The ledger is what keeps email at most once: a deleted row would let the dispatcher
        # plan and send the same email again. Old rows are pruned by maintenance, not by hand.
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f for fields in (s[1]["fields"] for s in self.fieldsets) for f in fields]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return format_html('<strong style="color:{}">{}</strong>',
                           STATUS_COLOURS.get(obj.status, "#333"), obj.get_status_display())

    @admin.display(description="Status", ordering="status")
    def status_and_reason(self, obj):
        """The list's status column: the status, and under it why (skipped, failed)."""
        badge = self.status_badge(obj)
        if not obj.reason:
            return badge
        return format_html('{}<br><span style="color:var(--body-quiet-color)">{}</span>',
                           badge, obj.get_reason_display())

    @admin.display(description="When (UTC)", ordering="due_at")
    def when(self, obj):
        """One narrow column: when it went, or else when it was due."""
        if obj.sent_at:
            return format_html('sent <span style="white-space:nowrap">{}</span>',
                               _moment(obj.sent_at))
        return format_html('due <span style="white-space:nowrap">{}</span>', _moment(obj.due_at))

    @admin.display(description="HTML as sent")
    def rendered_html(self, obj):
        if not obj.html:
            return "— (nothing rendered: skipped before rendering, or pruned)"
        html = obj.html
        chart = self._chart(obj)
        if chart:
            # The inline chart, referenced by its Content-ID, which no browser can resolve: the
            # HTML says cid:chart (analytics' report templates); the sender's attachment is
            # named chart@pastq. Either becomes the image itself.
            uri = "data:image/png;base64," + base64.b64encode(chart).decode("ascii")
            html = _CHART_REFERENCE.sub(lambda found: f"{found[1]}{uri}{found[2]}", html)
        # srcdoc in a sandbox without scripts: the email's HTML cannot touch the admin.
        # The frame cannot be sized to its content (the sandbox hides it from the page's
        # scripts): it is as wide as the emails' layout, and its bottom edge can be dragged.
        return format_html(
            '<div style="width:680px;max-width:100%;height:760px;resize:vertical;'
            'overflow:hidden;border:1px solid var(--border-color);background:#fff">'
            '<iframe sandbox="" srcdoc="{}" title="The email as sent" '
            'style="display:block;width:100%;height:100%;border:0"></iframe></div>', html)

    @admin.display(description="Plain text as sent")
    def rendered_text(self, obj):
        if not obj.text:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;max-width:680px">{}</pre>',
                           obj.text)

    def _chart(self, obj) -> bytes:
        if obj.report_id:
            report = Report.objects.filter(pk=obj.report_id).only("chart_png").first()
        elif obj.kind == Notification.Kind.WEEKLY_REPORT and obj.user_id:
            report = Report.objects.filter(kind=Report.Kind.STUDENT_WEEKLY, student_id=obj.user_id,
                                           label=obj.period).only("chart_png").first()
        else:
            report = None
        return bytes(report.chart_png) if report and report.chart_png else b""

    # --- Resend -------------------------------------------------------------------------------

    @admin.action(description="Resend selected failed or unknown emails…",
                  permissions=["send"])
    def resend(self, request, queryset):
        resendable = queryset.filter(status__in=[Notification.Status.FAILED,
                                                 Notification.Status.UNKNOWN])
        others = queryset.count() - resendable.count()
        if request.POST.get("confirm") == "yes":
            outcome = services.notifications_resend(list(resendable.values_list("pk", flat=True)),
                                                    by=request.user.get_username())
            summary = ", ".join(f"{n} {k}" for k, n in sorted(outcome.counts.items())) or "none"
            self.message_user(request, f"Resent: {summary}.", messages.SUCCESS)
            return None
        return TemplateResponse(request, "admin/notifications/notification/resend_confirm.html", {
            **self.admin_site.each_context(request),
            "title": "Resend these emails?",
            "opts": self.model._meta,
            "entries": list(resendable[:200]),
            "count": resendable.count(),
            "unknown": resendable.filter(status=Notification.Status.UNKNOWN).count(),
            "others": others,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            # "Select all N" chose every entry matching the filters, not only this page's:
            # the confirmation must resend the same set it counted.
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        })

    def has_send_permission(self, request):
        return request.user.has_perm(SEND_PERMISSION)

    # --- Test email and the pause switch ---------------------------------------------------

    def get_urls(self):
        own = [
            path("send-test/", self.admin_site.admin_view(self.send_test_view),
                 name="notifications_notification_send_test"),
            path("pause/", self.admin_site.admin_view(self.pause_view),
                 name="notifications_notification_pause"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        state = EmailDelivery.objects.filter(pk=1).first()
        extra_context = {
            "title": "Email send ledger",
            **(extra_context or {}),
            "student_email_paused": student_email_paused(),
            "paused_by_setting": bool(_paused_by_setting()),
            "delivery_state": state,
            "can_send": request.user.has_perm(SEND_PERMISSION),
            "can_pause": request.user.has_perm(PAUSE_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    def send_test_view(self, request):
        if not request.user.has_perm(SEND_PERMISSION):
            raise PermissionDenied
        form = TestEmailForm(request.POST or None, initial={"to": request.user.email})
        if request.method == "POST" and form.is_valid():
            row = services.test_email_send(to=form.cleaned_data["to"],
                                           sent_by=request.user.get_username())
            level = messages.SUCCESS if row.status == Notification.Status.SENT else messages.ERROR
            detail = f": {row.detail}" if row.detail else ""
            self.message_user(request, f"Test email to {row.address}: "
                                       f"{row.get_status_display().lower()}{detail}", level)
            return redirect(reverse("admin:notifications_notification_change", args=[row.pk]))
        return TemplateResponse(request, "admin/notifications/notification/send_test.html", {
            **self.admin_site.each_context(request), "title": "Send a test email",
            "opts": self.model._meta, "form": form, "backend": settings.EMAIL_BACKEND,
            "backend_target": _backend_target(),
        })

    def pause_view(self, request):
        if request.method != "POST" or not request.user.has_perm(PAUSE_PERMISSION):
            raise PermissionDenied
        if request.POST.get("paused") == "1":
            services.student_email_pause(by=request.user, note=request.POST.get("note", ""))
            self.message_user(request, "Student email is paused: nothing goes to students until "
                                       "it is resumed. Staff email still goes.", messages.WARNING)
        else:
            skipped = services.student_email_resume(by=request.user)
            self.message_user(request, "Student email resumed: what is still inside its send "
                                       f"window goes out now; {skipped} past it skipped "
                                       "(paused).", messages.SUCCESS)
        return redirect(reverse("admin:notifications_notification_changelist"))


def _moment(value) -> str:
    """A compact time in UTC for the list's narrow columns."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _backend_target() -> str:
    """Where the configured backend puts mail, in words (never a password)."""
    backend = settings.EMAIL_BACKEND
    if backend == "django.core.mail.backends.smtp.EmailBackend":
        return f"the SMTP server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    if backend == "django.core.mail.backends.filebased.EmailBackend":
        return f"files in {settings.EMAIL_FILE_PATH} (nothing leaves this machine)"
    if backend == "django.core.mail.backends.locmem.EmailBackend":
        return "kept in memory (tests; nothing leaves this process)"
    return ""


def _paused_by_setting() -> bool:
    return settings.NOTIFICATIONS_PAUSED


@admin.register(UndeliverableAddress)
class UndeliverableAddressAdmin(admin.ModelAdmin):
    """Addresses nothing is sent to. Delete one to send to it again (after the student fixed
    their mailbox)."""

    list_display = ["address", "reason", "recorded_at", "message_id"]
    list_filter = ["reason"]
    search_fields = ["address"]
    readonly_fields = ["address", "reason", "description", "message_id", "recorded_at"]

    def has_add_permission(self, request):
        return False


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "email_enabled", "daily_summary", "study_reminder", "weekly_report",
                    "achievements", "reminder_time", "quiet_hours_start", "quiet_hours_end"]
    list_filter = ["email_enabled", "daily_summary", "study_reminder", "weekly_report",
                   "achievements"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


class NotificationPreferenceInline(admin.StackedInline):
    model = NotificationPreference
    can_delete = False
    extra = 0


class UserWithPreferencesAdmin(UserAdmin):
    """Core's user admin, plus the student's notification preferences on the same page. Core
    cannot show them itself: it never imports the notifications app."""

    inlines = [*UserAdmin.inlines, NotificationPreferenceInline]


# core's admin.py has registered the user model already (core comes first in INSTALLED_APPS).
admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserWithPreferencesAdmin)
