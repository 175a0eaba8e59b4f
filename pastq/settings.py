"""pastq settings: everything comes from the environment (see docs/ARCHITECTURE.md, "Settings").

Development defaults are safe and need no server: an SQLite file under var/, a file-backed
email outbox and a secret key generated once into var/. With DEBUG off nothing secret is
defaulted: a missing SECRET_KEY is an error.
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

VAR_DIR = Path(env.str("PASTQ_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _development_secret_key() -> str:
    """Generated once into var/secret_key and reused, so sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment, or set DEBUG=on for development "
            "(a key is then generated once into var/secret_key)."
        )
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "pastq.apps.PastqAdminConfig",  # the admin, with the operations page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "core",
    "analytics",
    "notifications",
    "maintenance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pastq.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "pastq.wsgi.application"

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{(VAR_DIR / 'pastq.sqlite3').as_posix()}"
    )
}


def _tune_database(db: dict) -> dict:
    if db["ENGINE"] == "django.db.backends.sqlite3":
        options = db.setdefault("OPTIONS", {})
        # A web process and several workers write at once. WAL lets readers run beside the one
        # writer; the busy timeout makes a writer wait for the lock instead of failing at once;
        # IMMEDIATE takes the write lock when a transaction begins, so two transactions never
        # both read and then deadlock upgrading to a write (SQLITE_BUSY that no timeout cures).
        options.setdefault("timeout", 20)
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault(
            "init_command",
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
    elif db["ENGINE"] in ("django.db.backends.postgresql",):
        db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
    # Persistent connections: django-q's ORM broker calls close_old_connections() before every
    # queue operation, so with CONN_MAX_AGE=0 it reconnects almost every time (bench/queue.py).
    db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    db["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
    return db


DATABASES["default"] = _tune_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pastq",
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "pastq_cache",
        }
    }

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Time and language ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security with DEBUG off ----------------------------------------------------------------
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Email ----------------------------------------------------------------------------------
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pastq <noreply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Operators", a) for a in env.list("ADMINS", default=[])]

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Jobs (django-q2, ORM broker) -----------------------------------------------------------
# Each queue: workers and a time limit in seconds. On one machine one cluster serves them all;
# with PASTQ_QUEUE_ROUTING on, each queue runs as its own cluster:
#   Q_CLUSTER_NAME=<queue> python manage.py qcluster
PASTQ_QUEUES = {
    "question_processing": {"workers": 2, "timeout": 300},
    "analytics": {"workers": 1, "timeout": 900},
    "maintenance": {"workers": 1, "timeout": 1800},
    "notifications": {"workers": 2, "timeout": 300},
}
PASTQ_QUEUE_ROUTING = env.bool("PASTQ_QUEUE_ROUTING", default=False)
PASTQ_CLUSTER = "pastq"  # the shared django-q `name`: also the salt that signs task payloads
PASTQ_RETRY_BASE_SECONDS = env.float("PASTQ_RETRY_BASE_SECONDS", default=60.0)
PASTQ_STALL_SECONDS = env.int("PASTQ_STALL_SECONDS", default=600)

_workers_override = env.int("PASTQ_WORKERS", default=0)
_timeout_override = env.int("PASTQ_TASK_TIMEOUT", default=0)
_retry_override = env.int("PASTQ_TASK_RETRY", default=0)
for _queue in PASTQ_QUEUES.values():
    _queue["workers"] = _workers_override or _queue["workers"]
    _queue["timeout"] = _timeout_override or _queue["timeout"]

_on_sqlite = DATABASES["default"]["ENGINE"].endswith("sqlite3")


def _cluster_options(workers: int, timeout: int) -> dict:
    # A task leaves the ORM queue locked for `retry` seconds; a task still unacknowledged then is
    # delivered again. The pusher holds up to `queue_limit` (= workers) taken tasks in the
    # cluster's local queue plus one it is handing over, so a taken task may wait two time
    # limits before it starts, then run one: `retry` must exceed three time limits, or a slow
    # task could be delivered twice.
    retry = _retry_override or 3 * timeout + 60
    if retry <= timeout:
        raise ImproperlyConfigured(
            f"PASTQ_TASK_RETRY ({retry}s) must exceed the task time limit ({timeout}s).")
    return {"workers": workers, "timeout": timeout, "retry": retry, "queue_limit": workers}


Q_CLUSTER = {
    "name": PASTQ_CLUSTER,
    "orm": "default",  # the ORM broker: delivery receipts, one database for data and queue
    **_cluster_options(
        _workers_override or 2, max(q["timeout"] for q in PASTQ_QUEUES.values())),
    "ack_failures": True,  # a failed task is not redelivered blindly: core.jobs decides retries
    "max_attempts": 1,
    "catch_up": False,  # after downtime a schedule runs once, not once per missed slot
    # Keep every result: with a limit, django-q prunes on every task by reading up to that many
    # rows (at 1000 it cut throughput from ~400 to ~115 tasks/s on PostgreSQL, bench/queue.py).
    # core.tasks.job_runs_prune deletes results older than the retention instead.
    "save_limit": 0,
    "recycle": 500,
    "max_rss": 512_000,  # KiB: a worker that grew past 500 MB is replaced after its task
    # SQLite: slower polling and status saves, so an idle cluster does not hold the write lock.
    "poll": 1.0 if _on_sqlite else 0.2,
    "guard_cycle": 1.5 if _on_sqlite else 0.5,
    "cache": "default",
    "label": "Jobs (django-q2)",
    "log_level": env.str("Q_LOG_LEVEL", default="INFO"),
    "ALT_CLUSTERS": {
        name: _cluster_options(spec["workers"], spec["timeout"])
        for name, spec in PASTQ_QUEUES.items()
    },
}
