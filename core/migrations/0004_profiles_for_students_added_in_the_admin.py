"""Students added in the admin before "Add user" went through `student_create` got no
StudentProfile (recording an attempt for them failed). Give every non-staff user without one a
profile with the defaults `student_create` uses (time zone UTC; change it in the admin)."""

from django.db import migrations


def forwards(apps, schema_editor):
    User = apps.get_model("core", "User")
    StudentProfile = apps.get_model("core", "StudentProfile")
    missing = User.objects.filter(is_staff=False, is_superuser=False, profile__isnull=True)
    StudentProfile.objects.bulk_create(
        [StudentProfile(user_id=pk, timezone="UTC") for pk in missing.values_list("pk", flat=True)],
        batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0003_job_plumbing_leases_and_presence"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
