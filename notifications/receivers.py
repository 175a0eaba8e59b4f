"""What the notifications app does when core tells it something (core/signals.py).
Connected in NotificationsConfig.ready()."""

from notifications.models import NotificationPreference


def notification_preference_create_for_new_student(sender, user, **kwargs):
    """Every student starts with the default preferences. get_or_create: a signal sent twice
    still leaves one row."""
    NotificationPreference.objects.get_or_create(user=user)
