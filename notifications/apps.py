from django.apps import AppConfig
from django.core.checks import register


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self):
        from anymail.signals import tracking  # noqa: PLC0415  (app loading)

        from core.signals import student_created  # noqa: PLC0415  (app loading)
        from notifications import checks, receivers, webhooks  # noqa: PLC0415  (app loading: models)

        register(checks.email_backend_delivers, "email", deploy=True)
        register(checks.anymail_webhook_protected, "email", deploy=True)
        student_created.connect(receivers.notification_preference_create_for_new_student,
                                dispatch_uid="notifications-preference-for-new-student")
        # Bounces, complaints and unsubscribes the email service reports (notifications/webhooks.py).
        tracking.connect(webhooks.tracking_event_record,
                         dispatch_uid="notifications-anymail-tracking")
