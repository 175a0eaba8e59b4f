"""`manage.py check --deploy` is clean with production settings, and HTTPS is enforced except
for the health probes."""

import base64
import json
import secrets

PRODUCTION = {
    "DEBUG": "off",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "pastq.example.com",
    "EMAIL_URL": "smtp+tls://mailer:password@smtp.example.com:587",
    "CHROMA_URL": "http://chroma.internal:8000",  # core.E001 without it
    "BACKUP_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),  # W001
}

CHECK_DEPLOY = ("from django.core.management import execute_from_command_line; "
                "execute_from_command_line(['manage.py', 'check', '--deploy', "
                "'--fail-level', 'WARNING'])")


def test_production_settings_pass_the_deploy_check(run_python):
    result = run_python(CHECK_DEPLOY, **PRODUCTION)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output
    assert "System check identified no issues" in output


def test_a_file_email_backend_in_production_is_a_deploy_warning(run_python):
    production_without_email = {k: v for k, v in PRODUCTION.items() if k != "EMAIL_URL"}
    result = run_python(CHECK_DEPLOY, **production_without_email)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "WARNINGS" in output
    assert "(notifications.W001) EMAIL_BACKEND is django.core.mail.backends.filebased" in output
    assert "HINT: Set EMAIL_URL" in output
    assert "System check identified 1 issue" in output  # nothing else


def test_https_settings_have_safe_defaults_and_come_from_the_environment(read_settings):
    names = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
             "SECURE_HSTS_PRELOAD")
    assert read_settings(*names, **PRODUCTION) == {
        "SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True}
    assert read_settings(*names, **PRODUCTION, SECURE_SSL_REDIRECT="off",
                         SECURE_HSTS_SECONDS="300", SECURE_HSTS_INCLUDE_SUBDOMAINS="off",
                         SECURE_HSTS_PRELOAD="off") == {
        "SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 300,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False, "SECURE_HSTS_PRELOAD": False}


def test_plain_http_is_redirected_to_https_except_for_the_health_probes(run_python):
    # Load balancers probe the process itself over plain HTTP; a redirect would fail the probe.
    paths = ["/", "/admin/", "/health/", "/health/live", "/health"]
    code = f"""
import django, json
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
answers = {{}}
for path in {paths!r}:
    response = client.get(path)
    answers[path] = [response.status_code, response.get("Location", "")]
print(json.dumps(answers))
"""
    result = run_python(code, **PRODUCTION | {"ALLOWED_HOSTS": "testserver"})
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for path in ["/", "/admin/"]:
        assert answers[path] == [301, f"https://testserver{path}"]
    for path in ["/health/", "/health/live", "/health"]:
        status, location = answers[path]
        assert not location.startswith("https://"), (path, status, location)
