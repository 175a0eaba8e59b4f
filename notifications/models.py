"""What each student agreed to receive, and when."""

import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


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


class Notification(models.Model):
    """The send ledger: one row per recipient, kind and period (a local date, an ISO week, an
    achievement, a report), written before anything is sent. Its row is committed as `sending`
    before the message is handed over, so a retry or a second worker never sends it twice:
    email is at most once (docs/notifications.md)."""

    class Kind(models.TextChoices):
        DAILY_SUMMARY = "daily_summary", "Daily summary"
        STUDY_REMINDER = "study_reminder", "Study reminder"
        ACHIEVEMENT = "achievement", "Achievement"
        WEEKLY_REPORT = "weekly_report", "Weekly report"
        ADMIN_REPORT = "admin_report", "Admin report"
        SYSTEM_REPORT = "system_report", "System report"
        TEST = "test", "Test email"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        UNKNOWN = "unknown", "Unknown (may have been sent)"

    class Reason(models.TextChoices):
        OPTED_OUT = "opted_out", "Opted out"
        QUIET_HOURS = "quiet_hours", "Quiet hours last past the send window"
        OUTSIDE_WINDOW = "outside_window", "Outside the send window"
        NOTHING_TO_SAY = "nothing_to_say", "Nothing to say"
        GOAL_MET = "goal_met", "Today's goal is met"
        UNDELIVERABLE = "undeliverable", "Undeliverable address"
        NO_ADDRESS = "no_address", "No email address"
        PAUSED = "paused", "Student email paused"
        # Failures
        CONNECTION = "connection", "Could not reach the mail server"
        TEMPORARY = "temporary", "Temporary refusal (will retry)"
        REJECTED = "rejected", "Rejected by the provider"
        TIMEOUT = "timeout", "Timed out after hand-over"
        INTERRUPTED = "interrupted", "Sender stopped during the send"
        ERROR = "error", "Error"

    STUDENT_KINDS = (Kind.DAILY_SUMMARY, Kind.STUDY_REMINDER, Kind.ACHIEVEMENT,
                     Kind.WEEKLY_REPORT)
    STAFF_KINDS = (Kind.ADMIN_REPORT, Kind.SYSTEM_REPORT, Kind.TEST)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="notifications")
    address = models.EmailField(max_length=254, help_text="Where it goes (or went).")
    recipient = models.CharField(
        max_length=270, help_text="What the row is unique for: user:<id>, or the address of a "
                                  "staff recipient.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    period = models.CharField(
        max_length=40, help_text="Local date, ISO week, achievement or report it is about.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True)
    detail = models.TextField(blank=True, help_text="The error or the reason in words.")
    due_at = models.DateTimeField(help_text="When it was meant to go (UTC).")
    send_after = models.DateTimeField(
        help_text="Not before this: the due time, or the end of quiet hours.")
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="End of the send window: not sent after this.")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="A failed send that will be tried again, and when.")
    attempts = models.PositiveSmallIntegerField(default=0)
    claim = models.CharField(max_length=32, blank=True, db_index=True,
                             help_text="The sender that holds the row while sending.")
    message_id = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    report = models.ForeignKey("analytics.Report", null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+")
    achievement = models.ForeignKey("analytics.StudentAchievement", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipient", "kind", "period"],
                                    name="notifications_once_per_recipient_kind_period"),
        ]
        indexes = [
            models.Index(fields=["status", "send_after"], name="notif_status_send_after"),
            models.Index(fields=["kind", "-created_at"], name="notif_kind_created"),
            # A bounce or complaint from the email service's webhook finds its entry by this.
            models.Index(fields=["message_id"], name="notif_message_id"),
        ]
        ordering = ["-created_at", "-id"]
        permissions = [
            ("send_email", "Can send test emails and resend failed or unknown emails"),
            ("pause_email", "Can pause and resume student email"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.period} to {self.address}"


class UndeliverableAddress(models.Model):
    """An address a bounce, a complaint or a provider's refusal marked undeliverable: nothing
    more is sent to it."""

    address = models.EmailField(max_length=254, unique=True, help_text="Lower case.")
    reason = models.CharField(max_length=20, help_text="bounced, complained, rejected, …")
    description = models.TextField(blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "undeliverable addresses"

    def __str__(self):
        return f"{self.address} ({self.reason})"


class EmailDelivery(models.Model):
    """The one row of the admin's switch that pauses student email (NOTIFICATIONS_PAUSED pauses
    it too). Staff email is never paused."""

    student_email_paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=200, blank=True)
    dispatched_until = models.DateTimeField(
        null=True, blank=True, help_text="The dispatcher has planned every send time up to this.")

    class Meta:
        verbose_name = "email delivery switch"
        verbose_name_plural = "email delivery switch"

    def __str__(self):
        return "Student email paused" if self.student_email_paused else "Student email on"
