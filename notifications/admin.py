from django.contrib import admin
from django.contrib.auth import get_user_model

from core.admin import UserAdmin
from notifications.models import NotificationPreference


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
