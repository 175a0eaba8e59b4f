"""Settings for the test suite: the real settings plus what tests need to be fast and hermetic.

The database still comes from DATABASE_URL, so `make test` runs against SQLite by default and
against PostgreSQL when DATABASE_URL names one.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")

# Runtime state of a test run never touches the developer's var/. Each pytest process gets its
# own var dir, made here and removed when the run ends (conftest.py, pytest_unconfigure): the
# main process, and each pytest-xdist worker (gw0, gw1, ...), which would otherwise inherit the
# main process's PASTQ_VAR_DIR and share its SQLite test database and files. A subprocess a test
# starts (a qcluster) inherits its worker's directory and the marker saying whose it is.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_MADE_FOR = os.environ.get("PASTQ_TEST_VAR_DIR_FOR")  # set only on directories made here
if not os.environ.get("PASTQ_VAR_DIR") or (_MADE_FOR is not None and _MADE_FOR != _WORKER):
    os.environ["PASTQ_VAR_DIR"] = tempfile.mkdtemp(
        prefix=f"pastq-test-var-{_WORKER}-" if _WORKER else "pastq-test-var-")
    os.environ["PASTQ_TEST_VAR_DIR_FOR"] = _WORKER
    PASTQ_TEST_VAR_DIR_MADE = True  # conftest.py removes it at the end of the run
elif _WORKER and _MADE_FOR is None:
    # A PASTQ_VAR_DIR given by the person running the tests: one subdirectory per worker.
    os.environ["PASTQ_VAR_DIR"] = str(Path(os.environ["PASTQ_VAR_DIR"]) / _WORKER)
    os.environ["PASTQ_TEST_VAR_DIR_FOR"] = _WORKER
    PASTQ_TEST_VAR_DIR_MADE = False
else:
    PASTQ_TEST_VAR_DIR_MADE = False

from pastq.settings import *  # noqa: E402,F403

# Hashing strength is not under test; PBKDF2 would dominate the run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# The test client speaks plain HTTP; the redirect to HTTPS has its own test (test_deploy_check).
SECURE_SSL_REDIRECT = False

# A file-backed SQLite test database, so a qcluster subprocess can open it (pytest-django's
# in-memory SQLite is invisible to other processes). PostgreSQL keeps its default test name.
# Under pytest-xdist, pytest-django appends the worker id to either name (test.sqlite3_gw0).
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405
