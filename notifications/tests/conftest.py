"""Fixtures of the notifications tests: students in chosen time zones with something to say,
a simulated clock for the dispatcher, SMTP pointed at the loopback server (or at a closed
port), anymail's test backend with scripted answers, and dispatchers in real subprocesses."""

import asyncio
import datetime
import email
import email.policy
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.message import AnymailRecipientStatus
from django.conf import settings as django_settings
from django.core import mail
from django.db import connection

from analytics.models import DailyStudentStats, ReviewCard
from core.services import student_create
from core.tests.conftest import database_url_of_test_database
from core.tests.factories import make_question
from notifications.models import EmailDelivery, Notification, NotificationPreference

ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.UTC
_emails = itertools.count(1)


def at(text: str) -> datetime.datetime:
    """An aware UTC datetime from '2026-12-07 19:00'."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ledger(**filters):
    return Notification.objects.filter(**filters).order_by("id")


def sent_to(user, kind=None) -> list[Notification]:
    rows = ledger(user=user, status=Notification.Status.SENT)
    return list(rows.filter(kind=kind) if kind else rows)


def planned_until(moment: datetime.datetime) -> None:
    """As if the dispatcher's last run stopped at `moment`: the next run plans (moment, now]."""
    EmailDelivery.objects.update_or_create(pk=1, defaults={"dispatched_until": moment})


@pytest.fixture
def make_student(catalogue):
    """make_student(zone, email=None, goal=None, review_due=True, **preferences) -> User: a
    student in `zone` whose notification preferences are changed by `preferences`; with
    `review_due` a review card is due long ago, so a daily summary always has something to
    say."""
    question = None

    def make(zone="UTC", *, email=None, goal=None, review_due=True, **preferences):
        nonlocal question
        extra = {"daily_question_goal": goal} if goal else {}
        user = student_create(email=email or f"s{next(_emails)}@example.com",
                              timezone_name=zone, first_name="Ana", **extra).user
        if preferences:
            NotificationPreference.objects.filter(user=user).update(**preferences)
        if review_due:
            question = question or make_question()
            review_card_due(user, question)
        return user

    return make


def review_card_due(user, question, due=datetime.datetime(2020, 1, 1, tzinfo=UTC)):
    return ReviewCard.objects.create(
        student=user, question=question, due=due, applied_attempt_id=1,
        applied_local_date=due.date(), created_at=due, updated_at=due)


def daily_stats(user, day: datetime.date, *, attempts=12, correct=9, time_spent_ms=1_500_000):
    return DailyStudentStats.objects.create(
        student=user, date=day, attempts=attempts, correct=correct,
        accuracy=correct / attempts, time_spent_ms=time_spent_ms, distinct_questions=attempts,
        first_attempts=attempts, sessions=2, updated_at=datetime.datetime.now(UTC))


@pytest.fixture
def outbox():
    """The locmem backend's outbox (Django's test environment sends there)."""
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def smtp(settings, smtp_server):
    """Email through the real SMTP backend to the loopback aiosmtpd server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedEspBackend(AnymailTestBackend):
    """anymail's test backend, answering a message to an address in `answers` with that answer:
    an AnymailAPIError (raised, as an email service's API error is) or a status for every
    recipient ("rejected", "queued", …). Others get the test backend's default: sent."""

    answers: dict[str, object] = {}

    def post_to_esp(self, payload, message):
        answer = self.answers.get(message.to[0])
        if isinstance(answer, BaseException):
            message.anymail_test_response = answer
        elif isinstance(answer, str):
            mail.outbox.append(message)
            message.anymail_test_params = payload.get_params()
            return {"recipient_status": {
                address: AnymailRecipientStatus(message_id=None, status=answer)
                for address in payload.recipient_emails}}
        return super().post_to_esp(payload, message)


@pytest.fixture
def esp(settings, outbox):
    """Email through anymail (its test backend); `esp.answers[address] = …` scripts a reply."""
    settings.EMAIL_BACKEND = "notifications.tests.conftest.ScriptedEspBackend"
    settings.ANYMAIL = {}
    ScriptedEspBackend.answers = {}
    yield ScriptedEspBackend
    ScriptedEspBackend.answers = {}


_DISPATCHERS = """
import datetime, os, pathlib, sys, time, traceback
import django
django.setup()
from django.db import connection, connections
from notifications.services import notifications_dispatch

folder, n, now = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connections.close_all()  # each child opens its own
children = []
for index in range(n):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            connection.ensure_connection()
            (folder / f"ready-{index}").touch()
            deadline = time.monotonic() + 30
            while not (folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.002)
            result = notifications_dispatch(now=datetime.datetime.fromisoformat(now))
            print(f"dispatcher {index} ({os.getpid()}): {result}", flush=True)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
failed = [pid for pid in children if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
sys.exit(1 if failed else 0)
"""


@pytest.fixture
def dispatcher_processes(tmp_path):
    """dispatcher_processes(n, now, **env) runs `notifications_dispatch(now=now)` in n processes
    at once against the test database (file-backed SQLite, or PostgreSQL), each with its own
    database and mail connections: one Python process sets Django up (2 s), then forks the
    dispatchers, which wait until all are connected and are released together. Returns
    (exit code, output)."""

    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(
            ("file:memorydb", ":memory:")):
        pytest.skip("needs a file-backed test database")

    def run(n: int, now: datetime.datetime, **env) -> tuple[int, str]:
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pastq.test_settings",
            "DATABASE_URL": database_url_of_test_database(),
            "PASTQ_VAR_DIR": str(django_settings.VAR_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-c", _DISPATCHERS, str(tmp_path), str(n), now.isoformat()],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{i}").exists() for i in range(n)):
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        (tmp_path / "go").touch()
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the dispatchers' own process group
            process.wait()
            raise
        return process.returncode, output

    return run


class SlowSmtpHandler:
    """An aiosmtpd handler that takes every message and, for the first `slow` of them, waits
    `delay` seconds before answering the DATA: a client with a shorter timeout has handed the
    message over and never hears whether it was taken."""

    def __init__(self, delay: float, slow: int):
        self.delay, self.slow = delay, slow
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # the name aiosmtpd calls
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


@pytest.fixture
def slow_smtp(settings):
    """SMTP to a loopback server that answers the first message's DATA after 1.5 s, with the
    client's EMAIL_TIMEOUT at 1 s."""
    handler = SlowSmtpHandler(delay=1.5, slow=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 1
    try:
        yield handler
    finally:
        controller.stop()
