"""Students added in the admin before "Add user" went through `student_create` got no
notification preferences: give each student (a user with a StudentProfile) without them the
defaults."""

from django.db import migrations


def forwards(apps, schema_editor):
    User = apps.get_model("core", "User")
    NotificationPreference = apps.get_model("notifications", "NotificationPreference")
    missing = User.objects.filter(profile__isnull=False, notification_preference__isnull=True)
    NotificationPreference.objects.bulk_create(
        [NotificationPreference(user_id=pk) for pk in missing.values_list("pk", flat=True)],
        batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0001_initial"),
        ("core", "0004_profiles_for_students_added_in_the_admin"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
