"""`make run` as a new user meets it: the password story, and one Ctrl-C ending every process
(honcho runs the web server, the worker, the health watcher and the Chroma server, each in its
own process group; a terminal's Ctrl-C is SIGINT to honcho's group)."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from core.jobs.models import ClusterPresence, JobRun
from core.tests.conftest import database_url_of_test_database, wait_for

ROOT = Path(__file__).resolve().parents[2]
SLEEP = "core.tests.jobs_for_tests.sleep_for"


def test_make_run_never_prompts_and_says_where_the_password_is():
    plan = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "init_db --admin-email admin@example.com --no-input" in plan
    assert "the password init_db printed above" in plan
    first_screen = " ".join((ROOT / "README.md").read_text().split("---")[0].split())
    assert "never asks anything" in first_screen and "generated password" in first_screen
    assert "Its generated password" in (
        ROOT / "core/management/commands/init_db.py").read_text()


def _processes_with(marker: str) -> list[int]:
    """Every live process whose environment carries the marker: all of make run's descendants."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def CHROMA_RECORD() -> Path:  # noqa: N802  (reads like the path it is)
    return Path(settings.VAR_DIR) / "chroma-server.json"


def _chroma_server_pid() -> int | None:
    try:
        return json.loads(CHROMA_RECORD().read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("moment", ["starting", "idle", "running a job"])
def test_one_ctrl_c_stops_every_process_within_15s(moment, tmp_path):
    if connection_is_memory():
        pytest.skip("needs a file-backed test database")
    for attempt in range(2):
        marker = f"PASTQ_TEST_RUN={uuid.uuid4().hex}"
        port = _free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pastq.test_settings", "DEBUG": "on",
               "DATABASE_URL": database_url_of_test_database(),
               "PASTQ_VAR_DIR": str(settings.VAR_DIR), "PY": str(ROOT / ".venv/bin/python"),
               "ADDR": f"127.0.0.1:{port}", "PASTQ_WORKERS": "2", "PASTQ_PRESENCE_SECONDS": "1",
               "PASTQ_SCHEDULER_SECONDS": "1", "PASTQ_STOP_GRACE_SECONDS": "3",
               "PASTQ_LEASE_SECONDS": "6", "PASTQ_LEASE_RENEW_SECONDS": "1",
               "PYTHONUNBUFFERED": "1", marker.split("=")[0]: marker.split("=")[1]}
        log = (tmp_path / f"honcho-{moment}-{attempt}.log").open("w")
        honcho = subprocess.Popen(
            [str(ROOT / ".venv/bin/honcho"), "--no-colour", "-f", "Procfile", "start"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if moment == "starting":
                time.sleep(1.0)
            else:
                wait_for(lambda p=port: _answers(f"http://127.0.0.1:{p}/health/live"),
                         timeout=60, what="the web server")
                wait_for(lambda: ClusterPresence.objects.filter(status="running").exists(),
                         timeout=60, what="the worker")
                # The vector index server: recorded in var/ once it answers, and its process
                # carries the marker like every other (so the check below covers it).
                chroma = wait_for(lambda: _chroma_server_pid(), timeout=60,
                                  what="the Chroma server")
                assert chroma in _processes_with(marker)
            if moment == "running a job":
                from core.jobs import enqueue

                enqueue(SLEEP, args=[60])
                wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="running").exists(),
                         timeout=30, what="the job to start")
            assert _processes_with(marker)
            started = time.monotonic()
            os.killpg(honcho.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            wait_for(lambda m=marker, h=honcho: h.poll() is not None and not _processes_with(m),
                     timeout=15, interval=0.2, what="every process to end")
            took = time.monotonic() - started
            assert not CHROMA_RECORD().exists(), "chroma_server left its record behind"
        finally:
            for pid in _processes_with(marker):
                os.kill(pid, signal.SIGKILL)
            log.close()
        print(f"{moment}, try {attempt + 1}: everything stopped {took:.1f}s after Ctrl-C")
        assert took < 15
        ClusterPresence.objects.all().delete()
        JobRun.objects.all().delete()


def connection_is_memory() -> bool:
    from django.db import connection

    return connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(
        ("file:memorydb", ":memory:"))
