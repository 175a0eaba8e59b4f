"""Fixtures shared by every app's tests."""

import contextlib
import io
import sys
from unittest import mock

import pytest
from django.core.management import ManagementUtility
from django.db import connections

# Real `qcluster` subprocesses against the test database, for every app's tests.
from core.tests.conftest import qcluster  # noqa: F401


@pytest.fixture
def catalogue(db):
    from core.services import catalogue_load

    catalogue_load()


@pytest.fixture
def run_command():
    """Run a management command as `manage.py` would (argument parsing and exit codes included);
    returns (exit code, stdout, stderr). Standard input is empty and not a terminal."""

    def run(*argv, stdin_text=""):
        out, err = io.StringIO(), io.StringIO()
        saved_stdin, sys.stdin = sys.stdin, io.StringIO(stdin_text)
        code = 0
        try:
            # run_from_argv closes every connection when it ends, which inside a test's
            # transaction would doom the rest of the test.
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    mock.patch.object(connections, "close_all"):
                ManagementUtility(["manage.py", *argv]).execute()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdin = saved_stdin
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
def student(catalogue):
    from core.services import student_create

    return student_create(email="student@example.com", password="pw-for-tests",
                          timezone_name="Europe/London").user


def pytest_collection_modifyitems(config, items):
    """A `postgres_only` test skips, with its reason, when the run uses another database: it
    tests what only PostgreSQL does (row locks, concurrent writers), which SQLite cannot show."""
    vendor = connections["default"].vendor
    if vendor == "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("postgres_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or "needs PostgreSQL"
            item.add_marker(pytest.mark.skip(reason=f"{why} (this run uses {vendor})"))


class LoopbackSmtpServer:
    """What the `smtp_server` fixture's server received: `messages` (each an
    email.message.EmailMessage, with `envelope_from` and `envelope_to` set from the SMTP
    envelope) and `logins` ((user, password) pairs clients authenticated with)."""

    host = "127.0.0.1"

    def __init__(self):
        self.port = 0
        self.messages = []
        self.logins = []

    @property
    def url(self) -> str:
        """The server as an EMAIL_URL."""
        return f"smtp://{self.host}:{self.port}"

    async def handle_DATA(self, server, session, envelope):  # the name aiosmtpd calls
        import email
        import email.policy

        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        message.envelope_from = envelope.mail_from
        message.envelope_to = list(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 at a free port while the test runs. Point
    EMAIL_URL at `smtp_server.url`; it accepts any login without TLS (loopback only). Delivery
    is synchronous: once the client's send returns, the message is in `smtp_server.messages`."""
    import socket

    from aiosmtpd.controller import Controller

    server = LoopbackSmtpServer()
    for attempt in range(5):
        # A free port now; another process may take it before the server binds, so retry.
        with socket.socket() as probe:
            probe.bind((server.host, 0))
            server.port = probe.getsockname()[1]
        controller = Controller(server, hostname=server.host, port=server.port,
                                authenticator=server.authenticate, auth_require_tls=False,
                                ready_timeout=5)
        try:
            controller.start()
            break
        except OSError:
            if attempt == 4:
                raise
    try:
        yield server
    finally:
        controller.stop()


def pytest_unconfigure(config):
    """Remove the temporary var dir pastq.test_settings made for this process, so runs leave no
    pastq-test-var-* behind. Each pytest-xdist worker made, and removes, its own."""
    import shutil

    from django.conf import settings

    if settings.configured and getattr(settings, "PASTQ_TEST_VAR_DIR_MADE", False):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)
