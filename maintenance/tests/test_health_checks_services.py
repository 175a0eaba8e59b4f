"""The health checks that call other services (maintenance/health.py): Chroma, Gemini and the
email backend, each against a real thing on loopback (a Chroma file store, the real google-genai
client against a fake Gemini, a real aiosmtpd server) or a port nobody listens on; each has its
own short time limit, and its failure is a failed check, never an error."""

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass

import pytest
from django.db import connection

from core.ai import vectors
from core.models import QuestionStep, Subject
from core.tests.conftest import wait_for
from core.tests.factories import make_question
from core.tests.fake_gemini import FakeGemini, RecordedRequest
from maintenance import health
from maintenance.models import OpsAlert
from maintenance.tests.conftest import make_presence

pytestmark = pytest.mark.django_db

GET_MODEL = re.compile(r"^.*/(?P<version>v1(?:alpha|beta)?)/models/(?P<model>[^/:?]+)$")


def _check(name: str) -> health.CheckResult:
    report = health.health_report()
    return next(c for c in report.checks if c.name == name)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nobody listens


@contextlib.contextmanager
def _silent_server():
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


REAL_VECTOR_INDEX_PROBE = health.vector_index_probe


@pytest.fixture(autouse=True)
def _quiet_defaults(settings, monkeypatch):
    """Only the service under test is real: Chroma stubbed as answering unless a test opens
    the real thing, Gemini not configured, mail in memory."""
    settings.CHROMA_URL = "http://127.0.0.1:9"
    settings.GEMINI_API_KEY = ""
    settings.GEMINI_BASE_URL = ""
    settings.HEALTH_MIN_FREE_DISK_MB = 1
    settings.ADMINS = [("Operators", "ops@example.com")]
    monkeypatch.setattr(health, "vector_index_probe", lambda: health.VectorIndexReading(
        "server", "http://127.0.0.1:9", []))


# --- Chroma ---------------------------------------------------------------------------------


@pytest.fixture
def real_chroma(monkeypatch):
    monkeypatch.setattr(health, "vector_index_probe", REAL_VECTOR_INDEX_PROBE)


@pytest.fixture
def file_store(settings, tmp_path, real_chroma):
    """The index as development has it: the Chroma file store under a var dir of its own."""
    settings.DEBUG = True
    settings.CHROMA_URL = ""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    yield settings.VAR_DIR
    assert not vectors._file_store, "the file store was left open"


@dataclass(frozen=True)
class Space:
    name: str
    dimension: int = 4


def _embedded(n: int, *, model: str, with_vectors: int | None = None) -> list[int]:
    """n questions whose embedding step is done by `model`, and vectors for the first
    `with_vectors` of them (default: all)."""
    Subject.objects.get_or_create(code="MATH", defaults={"name": "Mathematics"})
    ids = [make_question().pk for _ in range(n)]
    QuestionStep.objects.bulk_create(
        QuestionStep(question_id=pk, step=QuestionStep.Step.EMBEDDING,
                     status=QuestionStep.Status.DONE, model=model) for pk in ids)
    stored = ids[:n if with_vectors is None else with_vectors]
    if stored:
        with vectors.vector_index_open() as index:
            index.collection(Space(model)).upsert(stored, [[1.0, 0.0, 0.0, float(i)]
                                                          for i in range(len(stored))])
    return ids


def test_chroma_on_a_closed_port_is_a_critical_failure_and_an_alert(
        settings, run_command, mailoutbox, monkeypatch, real_chroma):
    make_presence()
    url = f"http://127.0.0.1:{_closed_port()}"
    settings.CHROMA_URL = url
    check = _check("chroma")
    assert check.status == "fail" and check.critical
    assert f"The Chroma server at {url} does not answer" in check.output
    assert check.duration_ms > 0

    code, out, _ = run_command("health_check")
    assert code == 1
    assert f"FAIL  chroma: The Chroma server at {url} does not answer" in out
    alert = OpsAlert.objects.get(key="health-check:chroma")
    assert len(mailoutbox) == 1 and "Health check chroma failed" in mailoutbox[0].subject
    assert run_command("health_check")[0] == 1 and len(mailoutbox) == 1  # one email

    monkeypatch.setattr(health, "vector_index_probe", lambda: health.VectorIndexReading(
        "server", url, []))  # it answers again
    assert run_command("health_check")[0] == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None and "pass again" in alert.resolution


def test_chroma_that_never_answers_costs_its_time_limit_only(settings, monkeypatch,
                                                             real_chroma):
    monkeypatch.setitem(health.PROBE_TIMEOUT_SECONDS, "chroma", 0.3)
    with _silent_server() as port:
        settings.CHROMA_URL = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        check = _check("chroma")
        took = time.perf_counter() - started
    assert check.status == "fail"
    assert check.output == f"http://127.0.0.1:{port}: no answer within 0.3 s"
    assert 300 <= check.duration_ms < 1000
    assert took < 1.5


def test_chroma_not_configured_with_debug_off_fails(settings, real_chroma):
    settings.DEBUG = False
    settings.CHROMA_URL = ""
    check = _check("chroma")
    assert check.status == "fail" and "CHROMA_URL is not set" in check.output


def test_chroma_file_store_with_a_vector_for_each_processed_question_passes(file_store):
    _embedded(3, model="test-embedder")
    check = _check("chroma")
    assert check.status == "pass", check.output
    assert check.output == (f"file store {file_store / 'chroma'} answered; 3 vectors for 3 "
                            "processed questions")
    assert check.unit == "ms" and check.observed > 0
    assert check.details["embedders"] == {
        "test-embedder": {"processed_questions": 3, "vectors": 3, "tolerance": 2}}
    assert check.details["collections"] == {"questions__test-embedder__4": 3}


def test_chroma_with_no_question_embedded_yet_passes(file_store):
    check = _check("chroma")
    assert check.status == "pass" and check.output.endswith("no question embedded yet")


def test_chroma_missing_vectors_beyond_the_tolerance_is_a_warning(file_store, run_command):
    make_presence()
    _embedded(6, model="test-embedder", with_vectors=3)
    check = _check("chroma")
    assert check.status == "warn" and check.critical
    assert ("3 of 6 processed questions have no vector (test-embedder): re-embed with "
            "manage.py process_questions --steps embedding --force") in check.output
    assert run_command("health_check")[0] == 0  # a warning: the index answers
    assert not OpsAlert.objects.filter(key="health-check:chroma").exists()


def test_chroma_within_the_tolerance_passes_and_extra_vectors_warn(file_store):
    ids = _embedded(5, model="test-embedder", with_vectors=3)  # 2 missing: the tolerance
    assert _check("chroma").status == "pass"
    with vectors.vector_index_open() as index:  # vectors of questions no longer processed
        index.collection(Space("test-embedder")).upsert(
            [*ids, 9001, 9002, 9003], [[0.0, 1.0, 0.0, float(i)] for i in range(8)])
    check = _check("chroma")
    assert check.status == "warn"
    assert "3 more vectors than processed questions (test-embedder: 8 for 5)" in check.output


def test_chroma_vectors_being_written_by_a_running_step_are_not_extra(file_store):
    ids = _embedded(4, model="test-embedder")
    # Three steps claimed and their vectors written; the steps are marked done after.
    QuestionStep.objects.filter(question_id__in=ids[:3]).update(
        status=QuestionStep.Status.RUNNING)
    QuestionStep.objects.filter(question_id=ids[3]).update(status=QuestionStep.Status.DONE)
    check = _check("chroma")
    assert check.status == "pass", check.output
    assert check.details["embedding_steps_running"] == 3


def test_chroma_file_store_in_use_by_another_process_is_a_warning(file_store, monkeypatch,
                                                                  settings):
    monkeypatch.setitem(health.PROBE_TIMEOUT_SECONDS, "chroma", 0.2)
    settings.CHROMA_LOCK_TIMEOUT = 3  # how long the probe thread itself goes on waiting
    # The index opened by another process: its lock held, the holder named in the lock file.
    lock = vectors._FileStoreLock(vectors.vector_index_settings().lock_file)
    try:
        assert lock.try_acquire("qcluster worker (pid 777)")
        check = _check("chroma")
    finally:
        lock.close()
    assert check.status == "warn" and check.critical
    assert "could not be opened within 0.2 s: in use by" in check.output
    assert "qcluster worker (pid 777)" in check.output
    # The probe thread, left behind, takes the freed store, counts, and closes it.
    wait_for(lambda: not any(t.name == "health-chroma" and t.is_alive()
                             for t in threading.enumerate()), timeout=10, interval=0.05,
             what="the probe thread to finish")


# --- Gemini ---------------------------------------------------------------------------------


class FakeGeminiWithModels(FakeGemini):
    """The project's fake Gemini, also answering models.get (GET .../models/{model}) for the
    models it knows."""

    def __init__(self, *, models=("gemini-3.8-flash", "gemini-embedding-001"), **kwargs):
        self.models = set(models)
        super().__init__(**kwargs)

    def _respond(self, request: RecordedRequest):
        status, payload = super()._respond(request)
        if request.action != "get" or status != 404 or "does not serve" not in str(payload):
            return status, payload  # a scripted fault, a wrong key, or another method
        if request.model in self.models:
            return 200, {"name": f"models/{request.model}", "version": "001",
                         "displayName": request.model, "inputTokenLimit": 2048}
        return self._error(404, f"models/{request.model} is not found for API version "
                                f"{request.version}")

    def _handler_class(self):
        fake, base = self, super()._handler_class()

        class Handler(base):
            def do_GET(self):  # noqa: N802  (http.server's naming)
                match = GET_MODEL.match(self.path.split("?", 1)[0])
                request = RecordedRequest(
                    method="GET", path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()}, body={},
                    **({"version": match["version"], "model": match["model"], "action": "get"}
                       if match else {}))
                self.reply(*fake._respond(request))

        return Handler


@pytest.fixture
def fake_gemini(settings):
    with FakeGeminiWithModels(api_key="test-key") as server:
        settings.GEMINI_API_KEY = "test-key"
        settings.GEMINI_BASE_URL = server.base_url
        settings.GEMINI_MODEL = "gemini-3.8-flash"
        settings.GEMINI_EMBEDDING_MODEL = "gemini-embedding-001"
        yield server


def test_gemini_not_configured_passes_with_the_offline_providers():
    check = _check("gemini")
    assert check.status == "pass" and not check.critical
    assert check.output == "offline providers (GEMINI_API_KEY is not set)"


def test_gemini_configured_answers_models_get_and_spends_no_tokens(fake_gemini):
    from core.ai.models import AiUsage

    check = _check("gemini")
    assert check.status == "pass", check.output
    assert check.output.startswith("answered in ")
    assert "models models/gemini-3.8-flash, models/gemini-embedding-001 found" in check.output
    assert check.unit == "ms" and check.observed > 0 and check.duration_ms > 0
    assert [(r.method, r.model) for r in fake_gemini.requests] == [
        ("GET", "gemini-3.8-flash"), ("GET", "gemini-embedding-001")]
    assert fake_gemini.requests[0].headers["x-goog-api-key"] == "test-key"
    assert not AiUsage.objects.exists()  # the shared request limits are not touched


def test_gemini_with_a_wrong_key_is_a_warning(fake_gemini, settings, run_command):
    make_presence()
    settings.GEMINI_API_KEY = "wrong-key"
    check = _check("gemini")
    assert check.status == "warn" and not check.critical
    assert "gemini-3.8-flash: Gemini answered 403 PERMISSION_DENIED" in check.output
    assert run_command("health_check")[0] == 0  # a warning never fails the run


def test_gemini_with_an_unknown_model_says_which(fake_gemini, settings):
    settings.GEMINI_EMBEDDING_MODEL = "gemini-embedding-999"
    check = _check("gemini")
    assert check.status == "warn"
    assert "gemini-embedding-999: Gemini answered 404" in check.output


def test_gemini_that_answers_late_is_a_warning_within_the_time_limit(fake_gemini, monkeypatch):
    monkeypatch.setitem(health.PROBE_TIMEOUT_SECONDS, "gemini", 0.3)
    fake_gemini.delay(3.0)
    started = time.perf_counter()
    check = _check("gemini")
    assert time.perf_counter() - started < 1.5
    assert check.status == "warn"
    assert ("did not answer within 0.3 s" in check.output
            or "no answer within 0.3 s" in check.output)


def test_gemini_on_a_closed_port_is_a_warning(settings):
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = f"http://127.0.0.1:{_closed_port()}/"
    check = _check("gemini")
    assert check.status == "warn" and "Could not reach Gemini" in check.output


# --- Email ----------------------------------------------------------------------------------


def _smtp(settings, port: int, **extra):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    for name, value in extra.items():
        setattr(settings, name, value)


def test_email_smtp_reachable_passes_and_sends_nothing(settings, smtp_server):
    _smtp(settings, smtp_server.port, EMAIL_HOST_USER="pastq", EMAIL_HOST_PASSWORD="pw")
    check = _check("email")
    assert check.status == "pass", check.output
    assert check.output.startswith(f"SMTP 127.0.0.1:{smtp_server.port} answered (EHLO, NOOP)")
    assert check.unit == "ms" and check.observed > 0
    assert check.details["login"] is True
    assert smtp_server.logins == [("pastq", "pw")]  # Django's own open(): the login is tried
    assert smtp_server.messages == []


def test_email_smtp_on_a_closed_port_is_a_warning(settings, run_command):
    make_presence()
    port = _closed_port()
    _smtp(settings, port)
    check = _check("email")
    assert check.status == "warn" and not check.critical
    assert check.output.startswith(f"SMTP 127.0.0.1:{port}: ConnectionRefusedError")
    assert run_command("health_check")[0] == 0


def test_email_smtp_that_never_answers_costs_its_time_limit_only(settings, monkeypatch):
    monkeypatch.setitem(health.PROBE_TIMEOUT_SECONDS, "email", 0.3)
    with _silent_server() as port:
        _smtp(settings, port)
        started = time.perf_counter()
        check = _check("email")
    assert time.perf_counter() - started < 1.5
    assert check.status == "warn"
    assert "timed out" in check.output or "no answer within 0.3 s" in check.output


@pytest.mark.parametrize(("debug", "status"), [(True, "pass"), (False, "warn")])
def test_email_kept_on_this_machine_is_fine_in_development_only(settings, debug, status):
    settings.DEBUG = debug
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    check = _check("email")
    assert check.status == status
    assert check.output.startswith("mail stays on this machine: the backend writes mail to files")


def test_email_service_backend_is_configured_not_probed(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token"}
    check = _check("email")
    assert check.status == "pass"
    assert check.output == "anymail.backends.postmark.EmailBackend configured (not probed)"

    settings.ANYMAIL = {}
    check = _check("email")
    assert check.status == "warn" and "cannot be used" in check.output
    assert "POSTMARK_SERVER_TOKEN" in check.output


# --- All at once ----------------------------------------------------------------------------


def test_the_probes_run_at_the_same_time(settings, monkeypatch, real_chroma):
    """Three services that never answer cost one time limit, not three."""
    for name in ("chroma", "gemini", "email"):
        monkeypatch.setitem(health.PROBE_TIMEOUT_SECONDS, name, 0.5)
    with _silent_server() as port:
        settings.CHROMA_URL = f"http://127.0.0.1:{port}"
        settings.GEMINI_API_KEY = "test-key"
        settings.GEMINI_BASE_URL = f"http://127.0.0.1:{port}/"
        _smtp(settings, port)
        report = health.health_report()
    assert report.duration_ms < 1200, report.duration_ms
    statuses = {c.name: c.status for c in report.checks}
    assert (statuses["chroma"], statuses["gemini"], statuses["email"]) == (
        "fail", "warn", "warn")
    assert connection.vendor  # the caller's connection is untouched by the probe threads
