from django.apps import AppConfig

# The Django apps this repository writes (their labels, which are also their module names), as
# opposed to Django's and django-q2's: init_db checks their tables, and every command of theirs
# must explain itself (pastq/tests/test_commands_help.py). core/tests/test_project_apps.py
# fails when an app of the repository is missing here.
PROJECT_APP_LABELS = ("core", "analytics", "notifications", "maintenance")


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"

    def ready(self):
        from django_q.signals import (  # noqa: PLC0415  (app loading)
            post_execute_in_worker,
            post_spawn,
            pre_execute,
        )

        from core.jobs import execution  # noqa: PLC0415  (app loading: it imports models)

        # The worker tells the job plumbing which django-q task it is running, and a new worker
        # learns to stop gracefully.
        pre_execute.connect(execution.remember_current_task, dispatch_uid="pastq-current-task")
        post_execute_in_worker.connect(execution.forget_current_task,
                                       dispatch_uid="pastq-forget-task")
        post_spawn.connect(execution.stop_on_sigterm, dispatch_uid="pastq-worker-sigterm")
