"""pastq settings: everything comes from the environment (see docs/ARCHITECTURE.md, "Settings").

Development defaults are safe and need no server: an SQLite file under var/, a file-backed
email outbox and a secret key generated once into var/. With DEBUG off nothing secret is
defaulted: a missing SECRET_KEY is an error.
"""

import os
import secrets
import time
import warnings
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
    try:
        # Created private (0600) in the same call that creates it: written first and chmod-ed
        # after, the key would be readable by anyone for a moment. O_EXCL: when two processes
        # start at once (runserver and qcluster under `make run`), exactly one creates the file.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return _development_secret_key_read(path)
    key = secrets.token_urlsafe(50)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(key + "\n")  # one small write: a reader finds the file empty or whole
    except BaseException:
        path.unlink(missing_ok=True)  # never leave an empty key file behind
        raise
    return key


def _development_secret_key_read(path: Path) -> str:
    # The file may have just been created by another process that has not written the key yet.
    deadline = time.monotonic() + 5
    while not (key := path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it and a new key is generated.")
    return key


# Secrets are read as they are: django-environ takes a value that starts with "$" (as about one
# Django-generated key in 50 does) for the name of another variable to read instead.
SECRET_KEY = env.ENVIRON.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment, or set DEBUG=on for development "
            "(a key is then generated once into var/secret_key)."
        )
    SECRET_KEY = _development_secret_key()
# Rotation: put the new key in SECRET_KEY and the old ones here (comma list) until what they
# signed (sessions, password-reset links, queued tasks) has expired, then drop them. Emails'
# unsubscribe links never expire: an old key dropped from here breaks the links of every email
# sent under it (docs/notifications.md, "Unsubscribe").
SECRET_KEY_FALLBACKS = [
    key.strip() for key in env.ENVIRON.get("SECRET_KEY_FALLBACKS", "").split(",") if key.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "pastq.apps.PastqAdminConfig",  # the admin, with pastq's site header
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # core before django_q: its `qcluster` command (core/jobs/cluster.py) replaces django-q's.
    "core",
    "django_q",
    "anymail",  # email services (EMAIL_BACKEND); later its tracking webhooks
    "ninja",  # the read API (analytics/api/): serves its docs page's assets itself, no CDN
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
            "KEY_PREFIX": env.str("REDIS_KEY_PREFIX", default="pastq"),
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
# Production defaults pass `manage.py check --deploy` with no warning; each can be turned down
# from the environment (e.g. SECURE_HSTS_SECONDS=300 while trying HTTPS out on a new domain).
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load-balancer and orchestrator probes speak plain HTTP to the process directly: /health/
    # (and /health/live) answer them instead of redirecting to https. Their Host header must still
    # be in ALLOWED_HOSTS (see docs/ARCHITECTURE.md, "Settings").
    SECURE_REDIRECT_EXEMPT = [r"^health(/|$)"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)  # one year
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

# --- Email ----------------------------------------------------------------------------------
# Where mail goes:
#   EMAIL_URL      SMTP: smtp://user:password@host:25; smtp+tls:// or smtps:// use STARTTLS
#                  (port 587 when none is given); smtp+ssl:// is TLS from the start (465).
#                  Percent-encode @ : / in the user and password.
#   EMAIL_BACKEND  a dotted path, which wins over the URL's backend: for an email service
#                  through anymail (a URL cannot name one), e.g.
#                  anymail.backends.postmark.EmailBackend, configured by ANYMAIL_* variables.
#   neither        .eml files under var/mail/ for development (with DEBUG off that is a
#                  deploy-check warning, notifications.W001: mail would never leave the machine).
# The URL is not kept as a setting: Django's error reports hide EMAIL_HOST_PASSWORD, not a URL.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = VAR_DIR / "mail"
if env.str("EMAIL_URL", default=""):
    _email = env.email_url("EMAIL_URL")
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
    EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
    EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
    EMAIL_PORT = _email["EMAIL_PORT"] or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or EMAIL_BACKEND
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)  # seconds; without one SMTP can hang a worker
# anymail reads one dict: ANYMAIL_POSTMARK_SERVER_TOKEN=... becomes ANYMAIL["POSTMARK_SERVER_TOKEN"].
# Values are kept as they are (secrets, like SECRET_KEY), except the few options anymail expects
# as a flag or a number.
_ANYMAIL_CASTS = {
    "IGNORE_UNSUPPORTED_FEATURES": env.bool,
    "IGNORE_RECIPIENT_STATUS": env.bool,
    "DEBUG_API_REQUESTS": env.bool,
    "REQUESTS_TIMEOUT": env.float,
}
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): (
        _ANYMAIL_CASTS[name.removeprefix("ANYMAIL_")](name)
        if name.removeprefix("ANYMAIL_") in _ANYMAIL_CASTS
        else env.ENVIRON[name]
    )
    for name in sorted(env.ENVIRON)
    if name.startswith("ANYMAIL_")
}
ANYMAIL.setdefault("REQUESTS_TIMEOUT", EMAIL_TIMEOUT)  # an email service's API: same limit
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pastq <noreply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = "[pastq] "  # staff mail (mail_admins): alerts
ADMINS = [("Operators", a) for a in env.list("ADMINS", default=[])]

# --- Notifications (notifications/; docs/notifications.md) ------------------------------------
# Links in emails (unsubscribe, the admin) are absolute: the address students and the email
# service reach this site at. The unsubscribe endpoint and anymail's webhook must be reachable
# from the internet there.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Pauses every student email (the admin's switch does too); staff email is never paused.
NOTIFICATIONS_PAUSED = env.bool("NOTIFICATIONS_PAUSED", default=False)
# A student email not sent this long after its local send time is skipped with the reason.
NOTIFICATIONS_SEND_WINDOW_MINUTES = env.int("NOTIFICATIONS_SEND_WINDOW_MINUTES", default=120)
NOTIFICATIONS_DAILY_SUMMARY_TIME = env.str("NOTIFICATIONS_DAILY_SUMMARY_TIME", default="08:00")
NOTIFICATIONS_WEEKLY_REPORT_TIME = env.str("NOTIFICATIONS_WEEKLY_REPORT_TIME", default="08:00")
# Messages per second per sending process (0: as fast as the server takes them), for the
# email service's limits; messages per claimed batch (one connection, a few queries each).
NOTIFICATIONS_SEND_RATE = env.float("NOTIFICATIONS_SEND_RATE", default=0)
NOTIFICATIONS_BATCH_SIZE = env.int("NOTIFICATIONS_BATCH_SIZE", default=200)
# A failed send (server down, a temporary refusal) is tried again this many times in all.
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=5)
NOTIFICATIONS_RETRY_BASE_SECONDS = env.int("NOTIFICATIONS_RETRY_BASE_SECONDS", default=60)
# Staff reports (admin and system reports) go to these; default: the ADMINS.
NOTIFICATIONS_STAFF_EMAILS = env.list(
    "NOTIFICATIONS_STAFF_EMAILS", default=[address for _name, address in ADMINS])

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
        "httpx": {"level": "WARNING"},  # chromadb's and google-genai's clients: every request
    },
}

# --- Jobs (django-q2, ORM broker; the plumbing is core/jobs/) ---------------------------------
# Each queue: its workers when it runs as its own cluster (routing on), and its time limit in
# seconds. With PASTQ_QUEUE_ROUTING off (the default) one cluster serves every queue, with
# PASTQ_WORKERS workers (default: one per queue plus one), taken fairly (core/jobs/broker.py);
# with it on, each queue runs as its own cluster, on any number of machines:
#   Q_CLUSTER_NAME=<queue> python manage.py qcluster
PASTQ_QUEUES = {
    "question_processing": {"workers": 2, "timeout": 300},
    "analytics": {"workers": 1, "timeout": 900},
    "maintenance": {"workers": 1, "timeout": 1800},
    "notifications": {"workers": 2, "timeout": 300},
}
PASTQ_QUEUE_ROUTING = env.bool("PASTQ_QUEUE_ROUTING", default=False)
PASTQ_CLUSTER = "pastq"  # the shared django-q `name`: also the salt that signs task payloads
PASTQ_SCHEDULES = "pastq.schedules.SCHEDULES"  # the periodic table the plumbing syncs
PASTQ_RETRY_BASE_SECONDS = env.float("PASTQ_RETRY_BASE_SECONDS", default=60.0)
# A taken task is locked for a lease, renewed by its running job; a task whose worker died
# runs again once its lease runs out (so within ~50 s), whatever its time limit.
PASTQ_LEASE_SECONDS = env.int("PASTQ_LEASE_SECONDS", default=45)
PASTQ_LEASE_RENEW_SECONDS = env.float("PASTQ_LEASE_RENEW_SECONDS", default=5.0)
# Liveness: each cluster's sentinel records its presence this often, busy or not; one silent
# for the stale time is dead.
PASTQ_PRESENCE_SECONDS = env.float("PASTQ_PRESENCE_SECONDS", default=5.0)
PASTQ_PRESENCE_STALE_SECONDS = env.int("PASTQ_PRESENCE_STALE_SECONDS", default=30)
PASTQ_STALL_SECONDS = env.int("PASTQ_STALL_SECONDS", default=600)
PASTQ_WEDGE_SECONDS = env.float("PASTQ_WEDGE_SECONDS", default=15.0)
PASTQ_STOP_GRACE_SECONDS = env.float("PASTQ_STOP_GRACE_SECONDS", default=8.0)
PASTQ_SCHEDULER_SECONDS = env.float("PASTQ_SCHEDULER_SECONDS", default=30.0)
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")

# --- Maintenance: backups, cleanup, health (maintenance/; docs/operations.md) -------------------
BACKUP_DIR = Path(env.str("BACKUP_DIR", default=str(VAR_DIR / "backups"))).resolve()
# A 32-byte key, base64 (manage.py backup_db keygen prints one). Unset: backups are compressed
# but not encrypted (a deploy warning). Read as it is, like every secret.
BACKUP_ENCRYPTION_KEY = env.ENVIRON.get("BACKUP_ENCRYPTION_KEY", "").strip()
# Old keys (comma list) still accepted for verify and restore after a rotation, found by the
# fingerprint in each backup's header.
BACKUP_DECRYPTION_KEYS = [
    key.strip() for key in env.ENVIRON.get("BACKUP_DECRYPTION_KEYS", "").split(",") if key.strip()
]
# Retention: the newest N, one a day for D days, one a week for W weeks (the newest verified
# backup is always kept).
BACKUP_KEEP_LAST = env.int("BACKUP_KEEP_LAST", default=3)
BACKUP_KEEP_DAILY = env.int("BACKUP_KEEP_DAILY", default=7)
BACKUP_KEEP_WEEKLY = env.int("BACKUP_KEEP_WEEKLY", default=4)
# Seconds pg_dump / pg_restore / psql / the SQLite copy may run before they are stopped and
# their files removed (0: three quarters of the maintenance queue's time limit, so the job
# reports a timeout itself instead of being killed half-written).
BACKUP_TOOL_TIMEOUT_SECONDS = env.int("BACKUP_TOOL_TIMEOUT_SECONDS", default=0)
# A restore takes every table's lock first and gives up (changing nothing) after this long.
BACKUP_RESTORE_LOCK_TIMEOUT_SECONDS = env.int("BACKUP_RESTORE_LOCK_TIMEOUT_SECONDS", default=30)
# Where pg_dump, pg_restore and psql are, when not the first on PATH (they must be at least the
# server's major version), e.g. /usr/lib/postgresql/16/bin.
BACKUP_PG_BIN_DIR = env.str("BACKUP_PG_BIN_DIR", default="")
# Off-site copies (optional): each verified backup is also copied to S3-compatible object
# storage through django-storages' S3 backend. Credentials come from boto3's own environment
# (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from here. BACKUP_OFFSITE_STORAGE names the
# STORAGES entry used (a test points it at a FileSystemStorage).
BACKUP_OFFSITE_BUCKET = env.str("BACKUP_OFFSITE_BUCKET", default="")
BACKUP_OFFSITE_STORAGE = "backups_offsite" if BACKUP_OFFSITE_BUCKET else ""
if BACKUP_OFFSITE_BUCKET:
    STORAGES["backups_offsite"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BACKUP_OFFSITE_BUCKET,
            "endpoint_url": env.str("BACKUP_OFFSITE_ENDPOINT_URL", default="") or None,
            "region_name": env.str("BACKUP_OFFSITE_REGION", default="") or None,
            "location": env.str("BACKUP_OFFSITE_PREFIX", default="pastq-backups"),
            "default_acl": "private",
            "file_overwrite": True,
        },
    }
# Health: free space under var/ below this is a warning (critical below a tenth of it); the last
# verified backup older than this many hours is a warning.
HEALTH_MIN_FREE_DISK_MB = env.int("HEALTH_MIN_FREE_DISK_MB", default=1024)
HEALTH_BACKUP_MAX_AGE_HOURS = env.int("HEALTH_BACKUP_MAX_AGE_HOURS", default=26)
MAINTENANCE_HEALTH_RETENTION_DAYS = env.int("MAINTENANCE_HEALTH_RETENTION_DAYS", default=14)
# Cleanup: a practice session idle this long is abandoned; abandoned sessions without attempts
# older than this are deleted (attempts are never deleted: they are the history); revoked or
# expired API tokens are deleted after a grace period; stored email and report HTML is emptied
# after its retention (a day of 10,000 summaries is about 200 MB).
CLEANUP_SESSION_IDLE_HOURS = env.int("CLEANUP_SESSION_IDLE_HOURS", default=6)
CLEANUP_ABANDONED_SESSION_DAYS = env.int("CLEANUP_ABANDONED_SESSION_DAYS", default=30)
CLEANUP_TOKEN_GRACE_DAYS = env.int("CLEANUP_TOKEN_GRACE_DAYS", default=30)
CLEANUP_EMAIL_HTML_DAYS = env.int("CLEANUP_EMAIL_HTML_DAYS", default=30)
CLEANUP_JOB_RECORD_DAYS = env.int("CLEANUP_JOB_RECORD_DAYS", default=30)
CLEANUP_TMP_HOURS = env.int("CLEANUP_TMP_HOURS", default=24)

_workers_override = env.int("PASTQ_WORKERS", default=0)
_timeout_override = env.int("PASTQ_TASK_TIMEOUT", default=0)
for _queue in PASTQ_QUEUES.values():
    _queue["workers"] = _workers_override or _queue["workers"]
    _queue["timeout"] = _timeout_override or _queue["timeout"]
if PASTQ_LEASE_RENEW_SECONDS * 3 > PASTQ_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "PASTQ_LEASE_SECONDS must be at least three times PASTQ_LEASE_RENEW_SECONDS, so a "
        "renewal or two can fail without the running task being delivered again.")

_on_sqlite = DATABASES["default"]["ENGINE"].endswith("sqlite3")


def _cluster_options(workers: int, timeout: int) -> dict:
    # `retry` is django-q's lock on a taken task: here the lease, renewed while the job runs
    # (core/jobs/execution.py), not several time limits. `queue_limit` = workers: the broker
    # takes a task only for a free worker.
    return {"workers": workers, "timeout": timeout, "retry": PASTQ_LEASE_SECONDS,
            "queue_limit": workers}


# django-q warns when `retry` is below `timeout`: with leases that is intended (see above).
warnings.filterwarnings("ignore", message="Retry and timeout are misconfigured",
                        module="django_q.conf")

Q_CLUSTER = {
    "name": PASTQ_CLUSTER,
    "orm": "default",  # the ORM broker: delivery receipts, one database for data and queue
    "broker_class": "core.jobs.broker.PastqBroker",
    **_cluster_options(_workers_override or len(PASTQ_QUEUES) + 1,
                       max(q["timeout"] for q in PASTQ_QUEUES.values())),
    "ack_failures": True,  # a failed task is not redelivered blindly: core.jobs decides retries
    "max_attempts": 1,
    "catch_up": False,  # after downtime a schedule runs once, not once per missed slot
    # Keep every result: with a limit, django-q prunes on every task by reading up to that many
    # rows (at 1000 it cut throughput from ~400 to ~115 tasks/s on PostgreSQL, bench/queue.py).
    # maintenance.tasks.job_records_prune deletes results older than the retention instead.
    "save_limit": 0,
    "recycle": 500,
    "max_rss": 512_000,  # KiB: a worker that grew past 500 MB is replaced after its task
    # SQLite: slower polling and status saves, so an idle cluster does not hold the write lock.
    "poll": 1.0 if _on_sqlite else 0.2,
    "guard_cycle": 1.0 if _on_sqlite else 0.5,
    "cache": "default",
    "label": "Jobs (django-q2)",
    "log_level": env.str("Q_LOG_LEVEL", default="INFO"),
    "ALT_CLUSTERS": {
        name: _cluster_options(spec["workers"], spec["timeout"])
        for name, spec in PASTQ_QUEUES.items()
    },
}

# --- AI processing (core/processing.py, core/ai/; docs/embeddings.md, docs/vectors.md) -------
# Gemini when GEMINI_API_KEY is set; otherwise the offline providers (no network).
GEMINI_API_KEY = env.ENVIRON.get("GEMINI_API_KEY", "")  # a secret: read as it is
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="")
GEMINI_TIMEOUT_SECONDS = env.float("GEMINI_TIMEOUT_SECONDS", default=30.0)
GEMINI_MODEL = env.str("GEMINI_MODEL", default="gemini-3.8-flash")
GEMINI_EMBEDDING_MODEL = env.str("GEMINI_EMBEDDING_MODEL", default="gemini-embedding-001")
GEMINI_EMBEDDING_DIM = env.int("GEMINI_EMBEDDING_DIM", default=768)
GEMINI_DUPLICATE_THRESHOLD = env.float("GEMINI_DUPLICATE_THRESHOLD", default=0.90)
GEMINI_RPM = env.int("GEMINI_RPM", default=0)
GEMINI_DAILY_REQUESTS = env.int("GEMINI_DAILY_REQUESTS", default=0)
GEMINI_DAILY_TOKENS = env.int("GEMINI_DAILY_TOKENS", default=0)
GEMINI_RATE_MAX_WAIT_SECONDS = env.float("GEMINI_RATE_MAX_WAIT_SECONDS", default=60.0)
# The vector index: a Chroma server every process shares; required with DEBUG off (core.E001).
# Unset in development: the server `make run` starts (var/chroma-server.json), else the file
# store under a lock.
CHROMA_URL = env.str("CHROMA_URL", default="")
CHROMA_PORT = env.int("CHROMA_PORT", default=0)  # manage.py chroma_server's port (0: a free one)
CHROMA_TIMEOUT = env.float("CHROMA_TIMEOUT", default=30.0)  # seconds, every call to a server
CHROMA_LOCK_TIMEOUT = env.float("CHROMA_LOCK_TIMEOUT", default=30.0)  # waiting for the file store
# A claimed batch of steps is leased this long: more than the question_processing queue's time
# limit, so only a batch whose worker died is claimed again.
PASTQ_PROCESSING_LEASE_SECONDS = env.int(
    "PASTQ_PROCESSING_LEASE_SECONDS", default=PASTQ_QUEUES["question_processing"]["timeout"] + 30)
PASTQ_PROCESSING_BATCH_SIZE = env.int("PASTQ_PROCESSING_BATCH_SIZE", default=50)
PASTQ_SIMILAR_NEIGHBOURS = env.int("PASTQ_SIMILAR_NEIGHBOURS", default=10)

# --- Learning analytics (analytics/; docs/analytics.md) -------------------------------------
# Rollups: how many local dates one INSERT … SELECT … ON CONFLICT statement covers in a backfill.
ANALYTICS_ROLLUP_CHUNK_DAYS = env.int("ANALYTICS_ROLLUP_CHUNK_DAYS", default=7)
# Question statistics (item analysis): a student counts in a question's discrimination with at
# least this many other first attempts in the subject; below ANALYTICS_MIN_N first attempts the
# figures are shown with their n and the review flags are suppressed.
ANALYTICS_MIN_OTHER_ATTEMPTS = env.int("ANALYTICS_MIN_OTHER_ATTEMPTS", default=4)
ANALYTICS_MIN_N = env.int("ANALYTICS_MIN_N", default=30)
ANALYTICS_TOO_EASY_FACILITY = env.float("ANALYTICS_TOO_EASY_FACILITY", default=0.95)
ANALYTICS_TOO_HARD_FACILITY = env.float("ANALYTICS_TOO_HARD_FACILITY", default=0.05)
ANALYTICS_WEAK_DISCRIMINATION = env.float("ANALYTICS_WEAK_DISCRIMINATION", default=0.15)
# Insights: a topic is ranked as a strength or weakness with at least this many first attempts
# in the window; the target accuracy separates them.
ANALYTICS_TOPIC_MIN_ATTEMPTS = env.int("ANALYTICS_TOPIC_MIN_ATTEMPTS", default=10)
ANALYTICS_TOPIC_TARGET_ACCURACY = env.float("ANALYTICS_TOPIC_TARGET_ACCURACY", default=0.7)
ANALYTICS_TOPIC_WINDOW_DAYS = env.int("ANALYTICS_TOPIC_WINDOW_DAYS", default=90)
ANALYTICS_INSIGHT_TOPICS = env.int("ANALYTICS_INSIGHT_TOPICS", default=3)
# "Move up in difficulty": accuracy at least this over at least this many recent attempts.
ANALYTICS_MOVE_UP_ACCURACY = env.float("ANALYTICS_MOVE_UP_ACCURACY", default=0.85)
ANALYTICS_MOVE_UP_MIN_ATTEMPTS = env.int("ANALYTICS_MOVE_UP_MIN_ATTEMPTS", default=20)
