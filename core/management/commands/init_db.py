import getpass
import os
import secrets
import time

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.apps import PROJECT_APP_LABELS
from core.management.interaction import is_interactive
from core.models import Achievement, Question, Subject, Topic
from core.services import catalogue_load


class Command(BaseCommand):
    help = (
        "Set up or bring up to date the database: apply migrations, create the cache table, load "
        "the default catalogue (subjects, topics, achievements) and create the superuser named by "
        "--admin-email. Run it on every deploy: it is idempotent, and an existing superuser keeps "
        "its password unless DJANGO_SUPERUSER_PASSWORD is set. Ends by verifying the result."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin-email",
            help="Email of the superuser to create. Its password comes from "
            "DJANGO_SUPERUSER_PASSWORD, else a prompt on a terminal, else one is generated and "
            "printed once.",
        )
        parser.add_argument(
            "--no-input", "--noinput", action="store_false", dest="interactive",
            help="Never prompt (a missing password is generated and printed).",
        )

    def handle(self, *args, admin_email=None, interactive=True, verbosity=1, **options):
        started = time.monotonic()
        if admin_email is not None:
            admin_email = admin_email.strip().lower()
            try:
                validate_email(admin_email)
            except ValidationError:
                raise CommandError(
                    f"--admin-email {admin_email!r} is not a valid email address.", returncode=2
                ) from None

        self.stdout.write("Applying migrations…")
        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        if any(c["BACKEND"].endswith("DatabaseCache") for c in settings.CACHES.values()):
            call_command("createcachetable", verbosity=max(0, verbosity - 1))

        result = catalogue_load()
        self.stdout.write(
            f"Catalogue: {result.subjects_created} subjects, {result.topics_created} topics and "
            f"{result.achievements_created} achievements added (the rest were up to date)."
        )
        self._ensure_superuser(admin_email, interactive and is_interactive())
        self._sync_schedules(verbosity)
        self._verify()
        self.stdout.write(self.style.SUCCESS(
            f"init_db finished in {time.monotonic() - started:.1f}s."))

    def _ensure_superuser(self, email, can_prompt):
        User = get_user_model()
        if email is None:
            if not User.objects.filter(is_superuser=True).exists():
                self.stdout.write(self.style.WARNING(
                    "No superuser yet: run init_db --admin-email you@example.com to create one."))
            return
        env_password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            if not user.is_superuser:
                raise CommandError(
                    f"{email} already exists and is not a superuser; grant it in the admin or "
                    "choose another --admin-email.")
            if env_password:
                user.set_password(env_password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Superuser {email}: password set from DJANGO_SUPERUSER_PASSWORD.")
            else:
                self.stdout.write(
                    f"Superuser {email} exists and keeps its password "
                    f"(change it with: python manage.py changepassword {email}).")
            return

        generated = False
        if env_password:
            password = env_password
        elif can_prompt:
            password = self._prompt_password(email)
        else:
            password, generated = secrets.token_urlsafe(15), True
        User.objects.create_superuser(email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Superuser {email} created."))
        if generated:
            self.stdout.write(
                f"  Its generated password, shown this once: {password}\n"
                f"  Change it with: python manage.py changepassword {email}")

    def _prompt_password(self, email):
        User = get_user_model()
        while True:
            password = getpass.getpass(f"Password for {email}: ")
            if password != getpass.getpass("Password (again): "):
                self.stderr.write("The two passwords differ; try again.")
                continue
            try:
                validate_password(password, User(email=email))
            except ValidationError as exc:
                self.stderr.write(" ".join(exc.messages))
                continue
            return password

    def _sync_schedules(self, verbosity):
        if "sync_schedules" in get_commands():
            call_command("sync_schedules", verbosity=verbosity, stdout=self.stdout)

    def _verify(self):
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise CommandError(f"{len(pending)} migrations are still unapplied.")
        tables = set(connection.introspection.table_names())
        missing = sorted(
            model._meta.db_table
            for app in PROJECT_APP_LABELS
            for model in apps.get_app_config(app).get_models()
            if model._meta.managed and model._meta.db_table not in tables
        )
        if missing:
            raise CommandError(f"Tables missing after migrating: {', '.join(missing)}.")
        User = get_user_model()
        vendor = connection.vendor
        self.stdout.write(
            f"Verified ({vendor}): migrations applied, tables present; "
            f"{Subject.objects.count()} subjects, {Topic.objects.count()} topics, "
            f"{Achievement.objects.count()} achievements, {Question.objects.count()} questions, "
            f"{User.objects.filter(is_superuser=True).count()} superusers."
        )
