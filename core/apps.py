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
        from django.core.checks import register  # noqa: PLC0415  (app loading)
        from django.db.models.signals import post_delete  # noqa: PLC0415  (app loading)
        from django_q.signals import (  # noqa: PLC0415  (app loading)
            post_execute_in_worker,
            post_spawn,
            pre_execute,
        )

        from core import processing  # noqa: PLC0415  (app loading: it imports models)
        from core.ai import vectors  # noqa: PLC0415  (app loading)
        from core.jobs import execution  # noqa: PLC0415  (app loading: it imports models)

        # core.E001: with DEBUG off the vector index must be a Chroma server (CHROMA_URL).
        register(vectors.vector_index_check, "vectors", deploy=True)

        # The worker tells the job plumbing which django-q task it is running, and a new worker
        # learns to stop gracefully.
        pre_execute.connect(execution.remember_current_task, dispatch_uid="pastq-current-task")
        post_execute_in_worker.connect(execution.forget_current_task,
                                       dispatch_uid="pastq-forget-task")
        post_spawn.connect(execution.stop_on_sigterm, dispatch_uid="pastq-worker-sigterm")
        # A deleted question's vectors leave the index (retiring does it in its service).
        post_delete.connect(processing.on_question_deleted, sender="core.Question",
                            dispatch_uid="pastq-question-vectors")
