"""Settings are read from the environment once, when they are imported: these fixtures read them
in a fresh Python process with the environment a test chooses (about 0.3 s a process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Passed through from the test's own environment; everything else must be chosen by the test,
# so a developer's DATABASE_URL, EMAIL_URL or DEBUG never changes what a test sees.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@pytest.fixture
def run_python(tmp_path):
    """run_python(code, **env) runs `python -c code` in the project with only the environment
    given (plus PATH and the like), DJANGO_SETTINGS_MODULE=pastq.settings and a fresh var dir
    unless the test sets them (None leaves a variable out); returns the CompletedProcess."""

    def run(code: str, *, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess:
        full_env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        full_env |= {"DJANGO_SETTINGS_MODULE": "pastq.settings",
                     "PASTQ_VAR_DIR": str(tmp_path / "var"), "PYTHONDONTWRITEBYTECODE": "1"}
        full_env |= env
        full_env = {name: value for name, value in full_env.items() if value is not None}
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def read_settings(run_python):
    """read_settings(*names, **env) -> {name: value} of the settings a process with that
    environment gets (values through JSON; paths and other objects as str)."""

    def read(*names: str, **env: str | None) -> dict:
        code = ("import json; from django.conf import settings; "
                f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}, "
                "default=str))")
        result = run_python(code, **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    return read
