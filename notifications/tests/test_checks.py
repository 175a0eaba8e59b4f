"""notifications.W001: with DEBUG off, an email backend that keeps mail on the machine is a
deploy-check warning."""

import pytest
from django.core.checks import registry

from notifications.checks import email_backend_delivers


@pytest.mark.parametrize("backend", [
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
])
def test_an_undelivering_backend_with_debug_off_is_a_warning(settings, backend):
    settings.DEBUG = False
    settings.EMAIL_BACKEND = backend

    [warning] = email_backend_delivers(None)

    assert warning.id == "notifications.W001"
    assert backend in warning.msg
    assert "EMAIL_URL" in warning.hint and "anymail" in warning.hint


@pytest.mark.parametrize("debug,backend", [
    (False, "django.core.mail.backends.smtp.EmailBackend"),
    (False, "anymail.backends.postmark.EmailBackend"),
    (True, "django.core.mail.backends.filebased.EmailBackend"),  # development
])
def test_a_delivering_backend_or_development_is_fine(settings, debug, backend):
    settings.DEBUG = debug
    settings.EMAIL_BACKEND = backend
    assert email_backend_delivers(None) == []


def test_it_runs_with_the_deploy_checks_only():
    assert email_backend_delivers in registry.registry.get_checks(include_deployment_checks=True)
    assert email_backend_delivers not in registry.registry.get_checks()


def test_an_email_service_without_a_webhook_secret_is_a_warning(settings):
    from notifications.checks import anymail_webhook_protected

    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t"}
    [warning] = anymail_webhook_protected(None)
    assert warning.id == "notifications.W002"
    assert "ANYMAIL_WEBHOOK_SECRET" in warning.msg

    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "WEBHOOK_SECRET": "hook:secret"}
    assert anymail_webhook_protected(None) == []
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.ANYMAIL = {}
    assert anymail_webhook_protected(None) == []
