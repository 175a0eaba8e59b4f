"""Settings for the test suite: the real settings plus what tests need to be fast and hermetic.

The database still comes from DATABASE_URL, so `make test` runs against SQLite by default and
against PostgreSQL when DATABASE_URL names one.
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# Runtime state of a test run never touches the developer's var/.
os.environ.setdefault("PASTQ_VAR_DIR", tempfile.mkdtemp(prefix="pastq-test-var-"))

from pastq.settings import *  # noqa: E402,F403

# Hashing strength is not under test; PBKDF2 would dominate the run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405

# A file-backed SQLite test database, so a qcluster subprocess can open it (pytest-django's
# in-memory SQLite is invisible to other processes). PostgreSQL keeps its default test name.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405
