"""Fixtures shared by every app's tests."""

import contextlib
import io
import sys
from unittest import mock

import pytest
from django.core.management import ManagementUtility
from django.db import connections


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
