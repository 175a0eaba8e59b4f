from django.apps import AppConfig
from django.core.checks import register


class MaintenanceConfig(AppConfig):
    """Watching and operating the system: the operations page, alerts, health checks, pruning.
    It may read every app; no app imports it."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "maintenance"

    def ready(self):
        from core.jobs import signals as job_signals  # noqa: PLC0415  (app loading)
        from maintenance import alerts, checks  # noqa: PLC0415  (app loading: models)

        register(checks.backups_encrypted, "security", deploy=True)
        job_signals.job_gave_up.connect(alerts.on_job_gave_up, dispatch_uid="pastq-gave-up")
        job_signals.job_succeeded.connect(alerts.on_job_succeeded,
                                          dispatch_uid="pastq-succeeded")
        job_signals.task_undeliverable.connect(alerts.on_task_undeliverable,
                                               dispatch_uid="pastq-undeliverable")
