"""Email settings from the environment: EMAIL_URL (SMTP), EMAIL_BACKEND (an email service through
anymail, with ANYMAIL_* settings), EMAIL_TIMEOUT; the file outbox when none is set."""

import json
import secrets

import pytest

PRODUCTION = {"DEBUG": "off", "SECRET_KEY": secrets.token_urlsafe(50),
              "ALLOWED_HOSTS": "pastq.example.com"}
SMTP_SETTINGS = ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_USE_SSL",
                 "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_TIMEOUT")
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def test_mail_admins_reaches_a_real_smtp_server(smtp_server, run_python):
    # The user name and password are percent-encoded in the URL: "@" and ":" are its own.
    email_url = f"smtp://ops%40example.com:p%40ss%3Aword@{smtp_server.host}:{smtp_server.port}"
    code = ("import django; django.setup(); from django.core.mail import mail_admins; "
            "mail_admins('Queue stalled', 'The analytics queue has not run for 11 minutes.')")
    result = run_python(code, **PRODUCTION, EMAIL_URL=email_url,
                        ADMINS="first@example.com,second@example.com",
                        SERVER_EMAIL="pastq <alerts@example.com>")
    assert result.returncode == 0, result.stderr

    assert smtp_server.logins == [("ops@example.com", "p@ss:word")]
    [message] = smtp_server.messages
    assert message.envelope_from == "alerts@example.com"
    assert message.envelope_to == ["first@example.com", "second@example.com"]
    assert message["From"] == "pastq <alerts@example.com>"
    assert message["To"] == "first@example.com, second@example.com"
    assert message["Subject"] == "[pastq] Queue stalled"
    assert message.get_content().strip() == "The analytics queue has not run for 11 minutes."


@pytest.mark.parametrize("email_url,expected", [
    ("smtp://mail.example.com",
     {"EMAIL_HOST": "mail.example.com", "EMAIL_PORT": 25, "EMAIL_USE_TLS": False,
      "EMAIL_USE_SSL": False, "EMAIL_HOST_USER": "", "EMAIL_HOST_PASSWORD": ""}),
    ("smtp+tls://mailer:secret@mail.example.com",
     {"EMAIL_HOST": "mail.example.com", "EMAIL_PORT": 587, "EMAIL_USE_TLS": True,
      "EMAIL_USE_SSL": False, "EMAIL_HOST_USER": "mailer", "EMAIL_HOST_PASSWORD": "secret"}),
    ("smtps://mailer:secret@mail.example.com:2525",
     {"EMAIL_HOST": "mail.example.com", "EMAIL_PORT": 2525, "EMAIL_USE_TLS": True,
      "EMAIL_USE_SSL": False, "EMAIL_HOST_USER": "mailer", "EMAIL_HOST_PASSWORD": "secret"}),
    ("smtp+ssl://mailer:secret@mail.example.com",
     {"EMAIL_HOST": "mail.example.com", "EMAIL_PORT": 465, "EMAIL_USE_TLS": False,
      "EMAIL_USE_SSL": True, "EMAIL_HOST_USER": "mailer", "EMAIL_HOST_PASSWORD": "secret"}),
], ids=["smtp", "smtp+tls", "smtps", "smtp+ssl"])
def test_email_url_is_read_into_the_smtp_settings(read_settings, email_url, expected):
    assert read_settings(*SMTP_SETTINGS, **PRODUCTION, EMAIL_URL=email_url) == {
        "EMAIL_BACKEND": SMTP, "EMAIL_TIMEOUT": 10, **expected}


def test_email_timeout_applies_to_the_smtp_connection(run_python):
    code = ("import django, json; django.setup(); from django.core.mail import get_connection; "
            "connection = get_connection(); "
            "print(json.dumps([type(connection).__module__, connection.timeout]))")
    result = run_python(code, **PRODUCTION, EMAIL_URL="smtp://mail.example.com",
                        EMAIL_TIMEOUT="3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["django.core.mail.backends.smtp", 3]


def test_email_backend_names_an_email_service_with_its_anymail_settings(run_python):
    code = """
import django, json
django.setup()
from django.conf import settings
from django.core.mail import get_connection
connection = get_connection()
print(json.dumps({"backend": settings.EMAIL_BACKEND, "anymail": settings.ANYMAIL,
                  "server_token": connection.server_token, "timeout": connection.timeout}))
"""
    result = run_python(code, **PRODUCTION,
                        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
                        ANYMAIL_POSTMARK_SERVER_TOKEN="$token-kept-as-it-is",
                        ANYMAIL_IGNORE_UNSUPPORTED_FEATURES="on", EMAIL_TIMEOUT="7")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "backend": "anymail.backends.postmark.EmailBackend",
        "anymail": {"POSTMARK_SERVER_TOKEN": "$token-kept-as-it-is",
                    "IGNORE_UNSUPPORTED_FEATURES": True, "REQUESTS_TIMEOUT": 7},
        "server_token": "$token-kept-as-it-is",
        "timeout": 7,  # the email service's HTTP API has the same time limit as SMTP
    }


def test_email_backend_wins_over_the_backend_of_email_url(read_settings):
    assert read_settings("EMAIL_BACKEND", "EMAIL_HOST", **PRODUCTION,
                         EMAIL_URL="smtp://relay.example.com",
                         EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend") == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "EMAIL_HOST": "relay.example.com"}


def test_without_email_settings_mail_goes_to_files_under_var(read_settings, tmp_path):
    assert read_settings("EMAIL_BACKEND", "EMAIL_FILE_PATH", "EMAIL_TIMEOUT", DEBUG="on",
                         PASTQ_VAR_DIR=str(tmp_path / "var")) == {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "var" / "mail"), "EMAIL_TIMEOUT": 10}
