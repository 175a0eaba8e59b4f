from core.services import student_create
from core.signals import student_created
from notifications.models import NotificationPreference


def test_a_new_student_gets_default_notification_preferences(catalogue):
    profile = student_create(email="a@example.com", timezone_name="Asia/Tokyo")
    preference = NotificationPreference.objects.get(user=profile.user)
    assert preference.email_enabled and preference.daily_summary


def test_the_signal_twice_still_makes_one_preference_row(catalogue):
    profile = student_create(email="a@example.com")
    student_created.send(sender=type(profile), user=profile.user, profile=profile)
    assert NotificationPreference.objects.filter(user=profile.user).count() == 1
