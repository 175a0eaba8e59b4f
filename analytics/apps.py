from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"

    def ready(self):
        from analytics import receivers  # noqa: PLC0415  (app loading: it imports models)
        from core.signals import answer_key_changed  # noqa: PLC0415  (app loading)

        answer_key_changed.connect(receivers.on_answer_key_changed,
                                   dispatch_uid="pastq-analytics-regrade")
