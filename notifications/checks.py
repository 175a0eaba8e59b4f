"""System checks of the email set-up, run by `manage.py check --deploy` (registered in apps.py)."""

from django.conf import settings
from django.core.checks import Warning

# Backends that keep mail on this machine: right for development and tests, silent data loss in
# production (stall alerts to ADMINS, students' summaries and reminders would never arrive).
UNDELIVERING_BACKENDS = {
    "django.core.mail.backends.filebased.EmailBackend": "writes each message to a file",
    "django.core.mail.backends.console.EmailBackend": "prints each message",
    "django.core.mail.backends.locmem.EmailBackend": "keeps each message in memory",
    "django.core.mail.backends.dummy.EmailBackend": "drops each message",
}


def email_backend_delivers(app_configs, **kwargs):
    """notifications.W001: with DEBUG off, mail must leave the machine."""
    if settings.DEBUG or settings.EMAIL_BACKEND not in UNDELIVERING_BACKENDS:
        return []
    return [
        Warning(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}, which "
            f"{UNDELIVERING_BACKENDS[settings.EMAIL_BACKEND]}: no email leaves this machine, "
            "so the ADMINS are never told of stalled queues and students get nothing.",
            hint="Set EMAIL_URL to an SMTP server (smtp+tls://user:password@host:587), or "
            "EMAIL_BACKEND to an anymail backend (anymail.backends.postmark.EmailBackend) with "
            "its ANYMAIL_* settings.",
            id="notifications.W001",
        )
    ]


def anymail_webhook_protected(app_configs, **kwargs):
    """notifications.W002: an email service's tracking webhook without its secret lets anyone
    mark addresses undeliverable or unsubscribe students."""
    if not settings.EMAIL_BACKEND.startswith("anymail.") or settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return []
    return [
        Warning(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} but ANYMAIL_WEBHOOK_SECRET is not set: "
            "the tracking webhook (/anymail/<service>/tracking/) accepts bounce and complaint "
            "events from anyone.",
            hint="Set ANYMAIL_WEBHOOK_SECRET=user:password and give the email service the "
            "webhook URL https://user:password@<your host>/anymail/<service>/tracking/.",
            id="notifications.W002",
        )
    ]
