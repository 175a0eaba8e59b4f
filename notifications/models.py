"""What each student agreed to receive, and when."""

import datetime

from django.conf import settings
from django.db import models


class NotificationPreference(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email_enabled = models.BooleanField(
        default=True, help_text="Master switch: off means no email of any kind."
    )
    daily_summary = models.BooleanField(default=True)
    study_reminder = models.BooleanField(default=True)
    weekly_report = models.BooleanField(default=True)
    achievements = models.BooleanField(default=True)
    reminder_time = models.TimeField(
        default=datetime.time(18, 0), help_text="Local time of the study reminder."
    )
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="Local time from which nothing is sent."
    )
    quiet_hours_end = models.TimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                    | models.Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False)
                ),
                name="notifications_pref_quiet_hours_pair",
            ),
        ]

    def __str__(self):
        return f"Notification preferences of {self.user}"

    def is_quiet_at(self, local_time: datetime.time) -> bool:
        """Quiet hours may wrap midnight (22:00-07:00)."""
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if start is None or end is None or start == end:
            return False
        if start < end:
            return start <= local_time < end
        return local_time >= start or local_time < end
