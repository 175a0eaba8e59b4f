"""pastq.test_settings gives each pytest process (each pytest-xdist worker) its own var dir and
SQLite test database, and a test run removes what it made (conftest.py, pytest_unconfigure)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
OWN_VAR_DIR_TEST = "pastq/tests/test_test_run_isolation.py::test_this_process_has_its_own_var_dir"


def test_this_process_has_its_own_var_dir():
    if not settings.PASTQ_TEST_VAR_DIR_MADE:
        pytest.skip("PASTQ_VAR_DIR was given: the tests use it")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    assert settings.VAR_DIR.parent == Path(tempfile.gettempdir()).resolve()
    assert settings.VAR_DIR.name.startswith(f"pastq-test-var-{worker}-" if worker
                                            else "pastq-test-var-")


def test_each_xdist_worker_gets_its_own_var_dir_and_test_database(run_python, tmp_path):
    def settings_of(**env):
        code = ("import json, os; from django.conf import settings; print(json.dumps(["
                "str(settings.VAR_DIR), settings.DATABASES['default']['TEST']['NAME'], "
                "settings.PASTQ_TEST_VAR_DIR_MADE, os.environ['PASTQ_VAR_DIR'], "
                "os.environ.get('PASTQ_TEST_VAR_DIR_FOR')]))")
        base = {"DJANGO_SETTINGS_MODULE": "pastq.test_settings", "TMPDIR": str(tmp_path),
                "PASTQ_VAR_DIR": None}
        result = run_python(code, **base | env)
        assert result.returncode == 0, result.stderr
        var_dir, test_db, made, env_var_dir, made_for = json.loads(result.stdout)
        return {"var_dir": Path(var_dir), "test_db": test_db, "made": made,
                "child_env": {"PASTQ_VAR_DIR": env_var_dir, "PASTQ_TEST_VAR_DIR_FOR": made_for}}

    main = settings_of()
    assert main["made"]
    assert main["var_dir"].parent == tmp_path.resolve()
    assert main["test_db"] == str(main["var_dir"] / "test.sqlite3")

    # Workers inherit the main process's environment, yet each gets a directory of its own.
    gw0 = settings_of(**main["child_env"], PYTEST_XDIST_WORKER="gw0")
    gw1 = settings_of(**main["child_env"], PYTEST_XDIST_WORKER="gw1")
    assert gw0["made"] and gw1["made"]
    assert gw0["var_dir"].name.startswith("pastq-test-var-gw0-")
    assert gw1["var_dir"].name.startswith("pastq-test-var-gw1-")
    assert len({main["var_dir"], gw0["var_dir"], gw1["var_dir"]}) == 3
    assert gw0["test_db"] == str(gw0["var_dir"] / "test.sqlite3")

    # A subprocess a test starts (a qcluster) shares its worker's directory, and leaves it be.
    qcluster = settings_of(**gw1["child_env"], PYTEST_XDIST_WORKER="gw1")
    assert (qcluster["var_dir"], qcluster["made"]) == (gw1["var_dir"], False)

    # A directory given by the person running the tests: one subdirectory each, kept.
    given = tmp_path / "given"
    gw2 = settings_of(PASTQ_VAR_DIR=str(given), PYTEST_XDIST_WORKER="gw2")
    assert (gw2["var_dir"], gw2["made"]) == (given / "gw2", False)


@pytest.mark.parametrize("parallel", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_test_run_leaves_no_var_dir_behind(tmp_path, parallel):
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PASTQ_", "PYTEST_", "DATABASE_URL"))}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *parallel,
         OWN_VAR_DIR_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout  # and its var dir was made in TMPDIR
    assert sorted(tmp_path.glob("pastq-test-var-*")) == []
