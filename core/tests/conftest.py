import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url_of_test_database() -> str:
    """The URL a subprocess needs to open the database this test runs against."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def deliver(package: dict):
    """Run a task package the way django-q's worker does: pre_execute announces the package to
    the job plumbing, then the function is called with its arguments."""
    from django.utils.module_loading import import_string

    from core.jobs import execution

    package.setdefault("args", ())
    package.setdefault("kwargs", {})
    execution.remember_current_task(None, task=package)
    try:
        return import_string(package["func"])(*package["args"], **package["kwargs"])
    finally:
        execution.forget_current_task(None)


def wait_for(predicate, *, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def qcluster(tmp_path):
    """Start `manage.py qcluster` subprocesses against the test database, with small, fast
    worker settings; they are stopped (SIGTERM, then SIGKILL) when the test ends. Their output
    goes to a log file, printed when a test fails."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(
            ("file:memorydb", ":memory:")):
        pytest.skip("needs a file-backed test database")
    started = []

    def start(name: str = "cluster", **env) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("w")
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pastq.test_settings",
            "DATABASE_URL": database_url_of_test_database(),
            "PASTQ_VAR_DIR": str(settings.VAR_DIR),
            "PASTQ_WORKERS": "2",
            "PASTQ_TASK_TIMEOUT": "30",
            "PASTQ_RETRY_BASE_SECONDS": "1",
            # Fast clocks: leases, presence, the scheduler and the wedge watch in seconds.
            "PASTQ_LEASE_SECONDS": "6",
            "PASTQ_LEASE_RENEW_SECONDS": "1",
            "PASTQ_PRESENCE_SECONDS": "1",
            "PASTQ_PRESENCE_STALE_SECONDS": "5",
            "PASTQ_SCHEDULER_SECONDS": "1",
            "PASTQ_WEDGE_SECONDS": "3",
            "PASTQ_STOP_GRACE_SECONDS": "3",
            # qcluster refuses to start with DEBUG off and no Chroma server configured; nothing
            # here calls it (a test that does passes the real server's URL).
            "CHROMA_URL": "http://127.0.0.1:9",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        full_env = {name: value for name, value in full_env.items() if value is not None}
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"], cwd=ROOT, env=full_env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((name, process, tmp_path / f"{name}.log"))
        return process

    yield start
    for _, process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # qcluster stops its own processes gracefully
    for name, process, log in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"----- {name} log -----\n{log.read_text()[-6000:]}")


@pytest.fixture
def fake_gemini():
    """A fake Gemini API on loopback (core/tests/fake_gemini.py), stopped when the test ends;
    it expects the API key "test-key"."""
    from core.tests.fake_gemini import FakeGemini

    with FakeGemini(api_key="test-key") as server:
        yield server


@pytest.fixture
def index(settings, tmp_path):
    """The AI pipeline offline (no GEMINI_API_KEY: the sentence model shipped in a package)
    over a fresh Chroma file store of its own."""
    from core.ai import vectors

    settings.DEBUG = True
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.CHROMA_URL = ""
    settings.GEMINI_API_KEY = ""
    yield
    assert not vectors._file_store, "the file store was left open"
