from django.contrib import admin

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
