"""Health checks: what `manage.py health_check`, the health-checks job and `/health/` report.

Each check is critical (a failure makes `health_check` exit 1) or a warning (Gemini, the email
backend and the backup's age: a fresh install is healthy without them). In order:

- `database`: a round trip, and every migration of the code applied (critical);
- `queue:<name>` for each queue: a live cluster serves it, its work moves (the oldest waiting
  task), its heartbeat's age, and the jobs that failed in the last hour (critical);
- `disk`: free space under var/ (critical);
- `chroma`: the vector index answers, and holds a vector for each question whose embedding step
  is done (critical; a count that differs is a warning);
- `gemini`: configured? then a cheap call (warning);
- `email`: the backend reachable: SMTP connect, EHLO, NOOP, QUIT (warning);
- `backup`: the last verified backup younger than HEALTH_BACKUP_MAX_AGE_HOURS (warning).

Every figure is measured (`time.perf_counter()` around each check), and every check has its own
short time limit: the probes of other services (Chroma, Gemini, SMTP) run in threads of their own,
at the same time, so a service that hangs costs its time limit and no more; any exception is a
failed check, never an error of the caller.

The watcher is `health_check`, run from cron, a systemd timer or any monitor: it is never the
thing it watches (a dead cluster cannot report its own death). It and the health-checks job
store each run (`HealthCheckRun`), open an alert, and email the staff once, when they find queues
no live cluster serves, work that stopped moving, or a critical check that failed, and resolve
the alert when that clears. `/health/` only reads: it runs the local checks (the database, the
queues, the disk, the backup) and shows the other services as the latest stored run found them,
so a load balancer polling every second neither calls Gemini nor writes rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import math
import shutil
import smtplib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from core.ai import gemini, vectors
from core.ai.types import ProviderError, ProviderUnavailable
from core.jobs import liveness
from core.jobs.liveness import QueueState
from core.jobs.models import JobRun
from core.models import QuestionStep
from maintenance.alerts import alert_open, alert_resolve
from maintenance.models import BackupRecord, HealthCheckRun

logger = logging.getLogger("pastq.health")

PASS, WARN, FAIL = "pass", "warn", "fail"

# Each probe of another service gets this long, whatever that service's own client would wait
# (CHROMA_TIMEOUT is 30 s, made for real work): a health check must answer quickly. Chroma's
# includes importing chromadb in a fresh process (1-5 s; health_check from cron is one).
PROBE_TIMEOUT_SECONDS = {"chroma": 10.0, "gemini": 5.0, "email": 5.0}
PROBES = ("chroma", "gemini", "email")  # the checks that call other services
# /health/ shows the probes as the latest stored run found them while it is this recent (the
# job runs every 5 minutes); older, they are reported as not checked.
PROBE_RESULT_FRESH = datetime.timedelta(minutes=15)
FAILURE_WINDOW = datetime.timedelta(hours=1)
# Critical checks besides the queues (which have alerts of their own) that open an alert when
# they fail. The database has none: when it fails nothing can be recorded.
ALERTED_CHECKS = ("disk", "chroma")
LOCAL_EMAIL_BACKENDS = {
    "django.core.mail.backends.filebased.EmailBackend": "writes mail to files",
    "django.core.mail.backends.locmem.EmailBackend": "keeps mail in memory",
    "django.core.mail.backends.console.EmailBackend": "prints mail",
    "django.core.mail.backends.dummy.EmailBackend": "discards mail",
}


@dataclass
class CheckResult:
    name: str
    status: str
    critical: bool
    output: str
    observed: float | int | str | None = None
    unit: str = ""
    duration_ms: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def _failed(name: str, critical: bool, output: str, **fields) -> CheckResult:
    """A check that did not pass: `fail` when it is critical, `warn` when it is a warning."""
    return CheckResult(name, FAIL if critical else WARN, critical, output, **fields)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


@dataclass
class HealthReport:
    checked_at: datetime.datetime
    checks: list[CheckResult]
    queue_states: list[QueueState] = field(default_factory=list, repr=False)
    duration_ms: float = 0.0

    @property
    def status(self) -> str:
        if any(c.status == FAIL and c.critical for c in self.checks):
            return FAIL
        if any(c.status != PASS for c in self.checks):
            return WARN
        return PASS

    @property
    def database_ok(self) -> bool:
        return all(c.status == PASS for c in self.checks if c.name == "database")

    def as_dict(self) -> dict:
        """The JSON `health_check --json` prints (docs/operations.md documents it)."""
        return {"status": self.status, "checked_at": self.checked_at.isoformat(),
                "duration_ms": self.duration_ms,
                "checks": [c.as_dict() for c in self.checks]}


# --- Probes of other services: in threads, each with its own time limit ---------------------


class _Probe:
    """`func` running in a daemon thread from now on; `outcome()` waits for it until its time
    limit, then returns its value or raises its exception (TimeoutError past the limit). A
    probe never touches the database: a thread would open a connection of its own, which
    would not see the caller's transaction."""

    def __init__(self, name: str, func: Callable[[], Any], timeout: float):
        self.name, self.timeout = name, timeout
        self.started = time.perf_counter()
        self.elapsed_ms: float | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(func,), daemon=True,
                                        name=f"health-{name}")
        self._thread.start()

    def _run(self, func: Callable[[], Any]) -> None:
        try:
            self._value = func()
        except Exception as exc:  # reported as the check's failure
            self._error = exc
        self.elapsed_ms = _ms(self.started)

    def outcome(self) -> Any:
        self._thread.join(max(0.0, self.started + self.timeout - time.perf_counter()))
        if self._thread.is_alive():
            # Left to finish on its own (a daemon thread): the check has its answer.
            self.elapsed_ms = _ms(self.started)
            raise TimeoutError(f"no answer within {self.timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value


def _error_text(exc: BaseException) -> str:
    """Our own errors are sentences already; another library's gets its type for context."""
    text = str(exc).strip()
    if text and isinstance(exc, (TimeoutError, ProviderError, ProviderUnavailable,
                                 ImproperlyConfigured)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- The database ---------------------------------------------------------------------------


@functools.cache
def _migrations_on_disk() -> frozenset[tuple[str, str]]:
    """Every migration this code has: fixed for the life of a process, so loaded once."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def check_database() -> CheckResult:
    """A round trip, then whether every migration of this code is applied (one more query)."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        latency = round((time.perf_counter() - started) * 1000, 2)
        applied = set(MigrationRecorder(connection).applied_migrations())
    except DatabaseError as exc:
        return CheckResult("database", FAIL, True, f"{connection.vendor}: {exc}")
    unapplied = sorted(_migrations_on_disk() - applied)
    if unapplied:
        return CheckResult(
            "database", FAIL, True,
            f"{connection.vendor} answered, but {len(unapplied)} migrations are not applied "
            f"(first: {'.'.join(unapplied[0])}): run manage.py init_db",
            observed=latency, unit="ms")
    return CheckResult("database", PASS, True,
                       f"{connection.vendor} answered; migrations applied",
                       observed=latency, unit="ms")


# --- The queues -----------------------------------------------------------------------------


def _heartbeat_age_s(state: QueueState, now: datetime.datetime) -> float | None:
    """How long ago a cluster serving the queue last reported: the freshest live one, or the
    last one seen when none is live."""
    seen = [c.last_seen_at for c in state.clusters] or (
        [state.last_seen.last_seen_at] if state.last_seen else [])
    return round((now - max(seen)).total_seconds(), 1) if seen else None


def job_failures_by_queue(since: datetime.datetime) -> dict[str, dict[str, Counter]]:
    """Runs that ended in a failure since `since`, per queue: {queue: {outcome: Counter(job)}}
    (one query)."""
    found: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for queue, outcome, job, n in (
            JobRun.objects.filter(outcome__in=JobRun.FAILURES, finished_at__gte=since)
            .values_list("queue", "outcome", "job").annotate(n=Count("id"))
            .order_by("queue", "outcome", "job")):
        found[queue][outcome][job] += n
    return found


def check_queue(state: QueueState, *, now: datetime.datetime | None = None,
                failures: dict[str, Counter] | None = None) -> CheckResult:
    """A queue fails when no live cluster serves it or its work stopped moving; jobs that
    failed for good (failed, gave up, lost) in the last hour make it a warning. Retries
    scheduled are counted, not warned about: a transient error is what they are for."""
    now = now or timezone.now()
    failures = failures or {}
    retried = sum(failures.get(JobRun.Outcome.RETRYING, Counter()).values())
    failed_jobs: Counter = Counter()
    for outcome, jobs in failures.items():
        if outcome != JobRun.Outcome.RETRYING:
            failed_jobs.update(jobs)
    failed = sum(failed_jobs.values())
    details = {"liveness": state.liveness, "waiting": state.waiting, "running": state.running,
               "delayed": state.delayed, "oldest_waiting_s": state.oldest_waiting_s,
               "clusters": [f"{c.name}@{c.host}:{c.pid}" for c in state.clusters],
               "heartbeat_age_s": _heartbeat_age_s(state, now),
               "failed_last_hour": failed, "retries_last_hour": retried,
               "failed_jobs_last_hour": dict(failed_jobs.most_common())}
    problems = state.problems
    if problems:
        return CheckResult(f"queue:{state.queue}", FAIL, True, "; ".join(problems),
                           observed=state.liveness, details=details)
    output = {liveness.RUNNING: "served", liveness.STARTING: "its cluster is starting"}[
        state.liveness]
    output = f"{output}; {state.waiting} waiting, {state.running} running"
    if failed:
        jobs = ", ".join(f"{job} ({n})" for job, n in failed_jobs.most_common(3))
        return CheckResult(f"queue:{state.queue}", WARN, True,
                           f"{output}; {failed} jobs failed in the last hour: {jobs}",
                           observed=state.liveness, details=details)
    return CheckResult(f"queue:{state.queue}", PASS, True, output, observed=state.liveness,
                       details=details)


def _queue_checks(now: datetime.datetime) -> tuple[list[CheckResult], list[QueueState]]:
    started = time.perf_counter()
    try:
        states = liveness.queue_states(now)
        failures = job_failures_by_queue(now - FAILURE_WINDOW)
    except DatabaseError as exc:
        return [CheckResult("queues", FAIL, True, f"could not be read: {exc}",
                            duration_ms=_ms(started))], []
    elapsed = _ms(started)
    checks = []
    for state in states:
        result = check_queue(state, now=now, failures=failures.get(state.queue))
        result.duration_ms = elapsed  # one reading for every queue
        checks.append(result)
    return checks, states


# --- Disk -----------------------------------------------------------------------------------


def _size(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 10 * 1024 else f"{mb:.0f} MB"


def check_disk() -> CheckResult:
    """Free space on the file system of var/ (the database file, backups, the vector index,
    mail): a warning below HEALTH_MIN_FREE_DISK_MB, critical below a tenth of it."""
    path = Path(settings.VAR_DIR)
    usage = shutil.disk_usage(path)
    free_mb = round(usage.free / 2**20, 1)
    warn_below = float(settings.HEALTH_MIN_FREE_DISK_MB)
    fail_below = warn_below / 10
    details = {"path": str(path), "free_mb": free_mb, "total_mb": round(usage.total / 2**20, 1),
               "used_percent": round(100 * usage.used / usage.total, 1) if usage.total else None,
               "warn_below_mb": warn_below, "fail_below_mb": fail_below}
    figures = dict(observed=free_mb, unit="MB", details=details)
    where = f"{_size(free_mb)} free of {_size(usage.total / 2**20)} under {path}"
    if free_mb < fail_below:
        return CheckResult("disk", FAIL, True,
                           f"only {where} (critical below {_size(fail_below)}): free space now",
                           **figures)
    if free_mb < warn_below:
        return CheckResult("disk", WARN, True,
                           f"only {where} (HEALTH_MIN_FREE_DISK_MB is {_size(warn_below)})",
                           **figures)
    return CheckResult("disk", PASS, True, where, **figures)


# --- The last verified backup ----------------------------------------------------------------


def check_backup(now: datetime.datetime) -> CheckResult:
    """The last verified backup (verified by a real restore) younger than
    HEALTH_BACKUP_MAX_AGE_HOURS, by when it was made; a warning, so a fresh install without
    one is healthy. A newer backup that failed is a warning too (two queries)."""
    limit_h = settings.HEALTH_BACKUP_MAX_AGE_HOURS
    verified = (BackupRecord.objects.filter(status=BackupRecord.Status.VERIFIED)
                .order_by("-created_at", "-id")
                .values("name", "created_at", "verified_at", "offsite_at").first())
    newest = (BackupRecord.objects.exclude(status=BackupRecord.Status.DELETED)
              .order_by("-created_at", "-id").values("name", "status", "created_at", "error")
              .first())
    details: dict[str, Any] = {"max_age_hours": limit_h, "last_verified": None, "newest": None}
    if newest:
        details["newest"] = {"name": newest["name"], "status": newest["status"],
                             "created_at": newest["created_at"].isoformat()}
    failed_since = (newest and newest["status"] == BackupRecord.Status.FAILED
                    and (not verified or newest["created_at"] > verified["created_at"]))
    failure_note = ""
    if failed_since:
        reason = (newest["error"] or "").strip().splitlines()
        failure_note = (f"; the newest backup, {newest['name']}, failed"
                        f"{': ' + reason[-1][:200] if reason else ''}")
    if verified is None:
        return CheckResult("backup", WARN, False, f"no verified backup yet{failure_note}",
                           details=details)
    age_h = round((now - verified["created_at"]).total_seconds() / 3600, 2)
    details["last_verified"] = {
        "name": verified["name"], "created_at": verified["created_at"].isoformat(),
        "verified_at": verified["verified_at"].isoformat() if verified["verified_at"] else None,
        "offsite_at": verified["offsite_at"].isoformat() if verified["offsite_at"] else None}
    figures = dict(observed=age_h, unit="h", details=details)
    what = f"the last verified backup, {verified['name']}, is {age_h:.1f} h old"
    if age_h > limit_h:
        return CheckResult("backup", WARN, False,
                           f"{what} (HEALTH_BACKUP_MAX_AGE_HOURS is {limit_h}){failure_note}",
                           **figures)
    if failed_since:
        return CheckResult("backup", WARN, False, f"{what}{failure_note}", **figures)
    return CheckResult("backup", PASS, False, what, **figures)


# --- Chroma ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorIndexReading:
    kind: str  # "server" or "file"
    where: str  # its URL or directory
    collections: list[vectors.CollectionInfo]


def vector_index_probe() -> VectorIndexReading:
    """Open the index where it lives (a heartbeat first, for a server) and count each
    collection's vectors. Runs in a probe thread: no database."""
    with vectors.vector_index_open() as index:
        return VectorIndexReading(index.kind, index.where, index.collections())


def embedded_question_counts() -> tuple[dict[str, int], int]:
    """Questions whose embedding step is done, per embedder (the step's `model`), and how many
    embedding steps run now (their vectors may be written before the step is marked done).
    One query, on the step table's (step, status) index."""
    done: dict[str, int] = {}
    running = 0
    for status, model, n in (
            QuestionStep.objects.filter(step=QuestionStep.Step.EMBEDDING,
                                        status__in=[QuestionStep.Status.DONE,
                                                    QuestionStep.Status.RUNNING])
            .values_list("status", "model").annotate(n=Count("id")).order_by("status", "model")):
        if status == QuestionStep.Status.DONE:
            done[model] = done.get(model, 0) + n
        else:
            running += n
    return done, running


def vector_count_tolerance(processed: int) -> int:
    """How far the vector count may differ from the processed questions before it is a
    warning: 1%, at least 2 (a question retired while the index was down keeps its vector
    until the next removal)."""
    return max(2, math.ceil(processed / 100))


def check_vector_index(probe: _Probe | None, counts: tuple[dict[str, int], int] | None
                       ) -> CheckResult:
    """`probe`: a running vector_index_probe (None when the configuration is wrong, see
    vector_index_configuration_problem); `counts`: embedded_question_counts(), None when the
    database cannot be read."""
    problem = vectors.vector_index_configuration_problem()
    if probe is None or problem:
        return CheckResult("chroma", FAIL, True, problem or "not configured")
    try:
        reading: VectorIndexReading = probe.outcome()
    except TimeoutError as exc:
        config = vectors.vector_index_settings()
        if not config.url and vectors.chroma_server_record(config) is None:
            # The file store (development): another process has it open and keeps it.
            holder = ""
            with contextlib.suppress(OSError):
                holder = config.lock_file.read_text().strip()
            return CheckResult(
                "chroma", WARN, True,
                f"the file store {config.store_dir} could not be opened within "
                f"{probe.timeout:g} s: in use by {holder or 'another process'} (make run "
                "starts a Chroma server every process can share)",
                duration_ms=probe.elapsed_ms or 0.0)
        return CheckResult("chroma", FAIL, True, f"{config.url or 'the Chroma server'}: "
                           f"{_error_text(exc)}", duration_ms=probe.elapsed_ms or 0.0)
    except Exception as exc:
        return CheckResult("chroma", FAIL, True, _error_text(exc),
                           duration_ms=probe.elapsed_ms or 0.0)
    where = f"{'server at' if reading.kind == 'server' else 'file store'} {reading.where}"
    vectors_by_embedder: Counter = Counter()
    for info in reading.collections:
        vectors_by_embedder[info.embedder] += info.count
    details: dict[str, Any] = {
        "index": reading.kind, "where": reading.where,
        "collections": {info.name: info.count for info in reading.collections}}
    figures = dict(observed=probe.elapsed_ms, unit="ms", duration_ms=probe.elapsed_ms or 0.0)
    if counts is None:
        return CheckResult("chroma", PASS, True,
                           f"{where} answered; vectors not compared (the database is not ready)",
                           details=details, **figures)
    done, running = counts
    per_embedder = {}
    problems = []
    for embedder_name, processed in sorted(done.items()):
        stored = vectors_by_embedder.get(embedder_name, 0)
        tolerance = vector_count_tolerance(processed)
        per_embedder[embedder_name] = {"processed_questions": processed, "vectors": stored,
                                       "tolerance": tolerance}
        if stored < processed - tolerance:
            problems.append(f"{processed - stored} of {processed} processed questions have no "
                            f"vector ({embedder_name})")
        elif stored > processed + running + tolerance:
            problems.append(f"{stored - processed} more vectors than processed questions "
                            f"({embedder_name}: {stored} for {processed})")
    details.update(embedders=per_embedder, embedding_steps_running=running)
    processed_total = sum(done.values())
    stored_total = sum(vectors_by_embedder.get(name, 0) for name in done)
    if problems:
        return CheckResult(
            "chroma", WARN, True,
            f"{where} answered, but {'; '.join(problems)}: re-embed with manage.py "
            "process_questions --steps embedding --force",
            details=details, **figures)
    summary = (f"{stored_total} vectors for {processed_total} processed questions"
               if processed_total else "no question embedded yet")
    return CheckResult("chroma", PASS, True, f"{where} answered; {summary}",
                       details=details, **figures)


# --- Gemini ---------------------------------------------------------------------------------


def gemini_probe(config: gemini.GeminiSettings) -> list[str]:
    """models.get of the generation and embedding models: free, no tokens, and it proves the
    key, the endpoint and the model names. Not through GeminiConnection.send: that takes a
    slot from the shared request limits, which may wait a minute (a health check must not)."""
    client = gemini.gemini_client(config)
    try:
        found = []
        for model in dict.fromkeys([config.model, config.embedding_model]):
            try:
                found.append(client.models.get(model=model).name or model)
            except Exception as exc:
                mapped = gemini.map_gemini_error(exc, timeout_seconds=config.timeout_seconds)
                if mapped is None:
                    raise
                raise type(mapped)(f"{model}: {mapped}") from exc
        return found
    finally:
        client.close()


def start_gemini_probe() -> _Probe | None:
    config = gemini.gemini_settings()
    if not config.configured:
        return None
    timeout = PROBE_TIMEOUT_SECONDS["gemini"]
    config = dataclasses.replace(config, timeout_seconds=min(config.timeout_seconds, timeout))
    return _Probe("gemini", lambda: gemini_probe(config), timeout)


def check_gemini(probe: _Probe | None) -> CheckResult:
    config = gemini.gemini_settings()
    details = {"configured": config.configured, "model": config.model,
               "embedding_model": config.embedding_model,
               "base_url": config.base_url or "Google's endpoint"}
    if probe is None:
        return CheckResult("gemini", PASS, False,
                           "offline providers (GEMINI_API_KEY is not set)", details=details)
    try:
        models = probe.outcome()
    except Exception as exc:
        return CheckResult("gemini", WARN, False, f"Gemini: {_error_text(exc)}",
                           duration_ms=probe.elapsed_ms or 0.0, details=details)
    return CheckResult("gemini", PASS, False,
                       f"answered in {probe.elapsed_ms:.0f} ms; models {', '.join(models)} found",
                       observed=probe.elapsed_ms, unit="ms", duration_ms=probe.elapsed_ms or 0.0,
                       details=details)


# --- Email ----------------------------------------------------------------------------------


def smtp_probe(backend_path: str, timeout: float) -> str:
    """Connect (STARTTLS and login when configured: Django's own open()), EHLO, NOOP, QUIT.
    Sends no mail."""
    backend = import_string(backend_path)(timeout=timeout, fail_silently=False)
    backend.open()
    try:
        backend.connection.ehlo_or_helo_if_needed()
        code, message = backend.connection.noop()
        if code != 250:
            raise smtplib.SMTPResponseException(code, message)
    finally:
        backend.close()  # QUIT
    return f"{backend.host}:{backend.port}"


def start_email_probe() -> _Probe | None:
    path = settings.EMAIL_BACKEND
    try:
        is_smtp = issubclass(import_string(path), SmtpEmailBackend)
    except ImportError:
        return None  # check_email says so
    if not is_smtp:
        return None
    timeout = min(float(settings.EMAIL_TIMEOUT or PROBE_TIMEOUT_SECONDS["email"]),
                  PROBE_TIMEOUT_SECONDS["email"])
    return _Probe("email", lambda: smtp_probe(path, timeout), PROBE_TIMEOUT_SECONDS["email"])


def check_email(probe: _Probe | None) -> CheckResult:
    path = settings.EMAIL_BACKEND
    details: dict[str, Any] = {"backend": path}
    if probe is not None:
        details.update(host=settings.EMAIL_HOST, port=settings.EMAIL_PORT,
                       tls=bool(settings.EMAIL_USE_TLS), ssl=bool(settings.EMAIL_USE_SSL),
                       login=bool(settings.EMAIL_HOST_USER))
        where = f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        try:
            probe.outcome()
        except Exception as exc:
            return CheckResult("email", WARN, False, f"{where}: {_error_text(exc)}",
                               duration_ms=probe.elapsed_ms or 0.0, details=details)
        return CheckResult("email", PASS, False,
                           f"{where} answered (EHLO, NOOP) in {probe.elapsed_ms:.0f} ms",
                           observed=probe.elapsed_ms, unit="ms",
                           duration_ms=probe.elapsed_ms or 0.0, details=details)
    if path in LOCAL_EMAIL_BACKENDS:
        what = f"mail stays on this machine: the backend {LOCAL_EMAIL_BACKENDS[path]}"
        if settings.DEBUG:
            return CheckResult("email", PASS, False, what, details=details)
        return CheckResult("email", WARN, False,
                           f"{what}, with DEBUG off: set EMAIL_URL (SMTP) or an anymail "
                           "backend", details=details)
    started = time.perf_counter()
    try:
        # An email service's backend (anymail) checks its settings (the API key) when it is
        # built; a real probe would cost a request to its API, or a message.
        get_connection(path, fail_silently=False)
    except (ImportError, ImproperlyConfigured) as exc:
        return CheckResult("email", WARN, False, f"{path} cannot be used: {_error_text(exc)}",
                           duration_ms=_ms(started), details=details)
    except Exception as exc:
        return CheckResult("email", WARN, False, f"{path}: {_error_text(exc)}",
                           duration_ms=_ms(started), details=details)
    return CheckResult("email", PASS, False, f"{path} configured (not probed)",
                       duration_ms=_ms(started), details=details)


# --- The report -----------------------------------------------------------------------------


def _timed(check: Callable[[], CheckResult], name: str, critical: bool) -> CheckResult:
    """A local check measured, its exception a failed check."""
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:
        logger.exception("The health check %s raised.", name)
        result = _failed(name, critical, f"the check itself failed: {_error_text(exc)}")
    result.duration_ms = result.duration_ms or _ms(started)
    return result


def _probe_start(name: str, start: Callable[[], _Probe | None]) -> _Probe | None | Exception:
    try:
        return start()
    except Exception as exc:  # building a client can fail too (a bad URL)
        return exc


def _probe_check(name: str, critical: bool, probe, check: Callable[[Any], CheckResult]
                 ) -> CheckResult:
    if isinstance(probe, Exception):
        return _failed(name, critical, _error_text(probe))
    return _timed(lambda: check(probe), name, critical)


def stored_probe_results(now: datetime.datetime) -> dict[str, CheckResult]:
    """The probes (Chroma, Gemini, email) as the latest stored run found them, for /health/;
    a probe not checked within PROBE_RESULT_FRESH is reported as such (a warning). One query."""
    run = HealthCheckRun.objects.order_by("-checked_at", "-id").only(
        "checked_at", "checks").first()
    found: dict[str, CheckResult] = {}
    fresh = run is not None and now - run.checked_at <= PROBE_RESULT_FRESH
    for data in (run.checks if run else []):
        if isinstance(data, dict) and data.get("name") in PROBES:
            result = CheckResult.from_dict(data)
            result.details = {**(result.details or {}), "checked_at": run.checked_at.isoformat()}
            found[result.name] = result
    minutes = int(PROBE_RESULT_FRESH.total_seconds() // 60)
    for name in PROBES:
        critical = name == "chroma"
        if fresh and name in found:
            continue
        last = found.get(name)
        when = (f"; last checked at {run.checked_at:%Y-%m-%d %H:%M} UTC: {last.status}"
                if last else "")
        found[name] = CheckResult(
            name, WARN, critical,
            f"not checked in the last {minutes} min (the health-checks job and manage.py "
            f"health_check check it){when}",
            details={"checked_at": run.checked_at.isoformat() if last else None})
    return found


def health_report(now: datetime.datetime | None = None, *, probes: bool = True
                  ) -> HealthReport:
    """Every check, measured now. `probes=False` (/health/): Chroma, Gemini and email as the
    latest stored run found them, so a web request calls no other service. When the database
    is down the checks that read it cannot run: they are reported as failed with that reason."""
    now = now or timezone.now()
    report_started = time.perf_counter()
    # The probes of other services start first and run while the database is read.
    started = {}
    if probes:
        problem = vectors.vector_index_configuration_problem()
        started = {
            "chroma": None if problem else _probe_start(
                "chroma", lambda: _Probe("chroma", vector_index_probe,
                                         PROBE_TIMEOUT_SECONDS["chroma"])),
            "gemini": _probe_start("gemini", start_gemini_probe),
            "email": _probe_start("email", start_email_probe),
        }
    database = _timed(check_database, "database", True)
    checks, states = [database], []
    counts = None
    if database.status == PASS:
        queue_checks, states = _queue_checks(now)
        checks += queue_checks
    else:
        checks.append(CheckResult("queues", FAIL, True, "not checked: the database is not ready"))
    checks.append(_timed(check_disk, "disk", True))
    if probes:
        if database.status == PASS:
            try:
                counts = embedded_question_counts()
            except DatabaseError:
                counts = None
        checks.append(_probe_check("chroma", True, started["chroma"],
                                   lambda probe: check_vector_index(probe, counts)))
        checks.append(_probe_check("gemini", False, started["gemini"], check_gemini))
        checks.append(_probe_check("email", False, started["email"], check_email))
    elif database.status == PASS:
        try:
            stored = stored_probe_results(now)
        except DatabaseError as exc:
            stored = {name: _failed(name, name == "chroma", f"could not be read: {exc}")
                      for name in PROBES}
        checks += [stored[name] for name in PROBES]
    else:
        checks += [_failed(name, name == "chroma", "not shown: the database is not ready")
                   for name in PROBES]
    if database.status == PASS:
        checks.append(_timed(lambda: check_backup(now), "backup", False))
    else:
        checks.append(CheckResult("backup", WARN, False,
                                  "not checked: the database is not ready"))
    return HealthReport(checked_at=now, checks=checks, queue_states=states,
                        duration_ms=_ms(report_started))


# --- The watcher ----------------------------------------------------------------------------


def health_run_store(report: HealthReport, *, source: str) -> HealthCheckRun:
    """The run, for the admin's history and the system report (pruned after
    MAINTENANCE_HEALTH_RETENTION_DAYS by the cleanup)."""
    return HealthCheckRun.objects.create(
        checked_at=report.checked_at, source=source, status=report.status,
        duration_ms=report.duration_ms, checks=[c.as_dict() for c in report.checks])


def _alert_queues(report: HealthReport) -> None:
    """Queues no live cluster serves (grouped by the cluster last seen serving them, so a dead
    single cluster is one alert), and queues whose work stopped moving."""
    down_by_cluster: dict[str, list[QueueState]] = defaultdict(list)
    never = []
    for state in report.queue_states:
        if state.liveness == liveness.DOWN:
            down_by_cluster[state.last_seen.name].append(state)
        elif state.liveness == liveness.NEVER:
            never.append(state.queue)
        if state.stalled:
            alert_open(key=f"queue-stalled:{state.queue}",
                       summary=f"Queue {state.queue}: work has stopped moving",
                       detail="\n".join(state.problems))
        else:
            alert_resolve(key=f"queue-stalled:{state.queue}", resolution="Work moves again.")
    seen_names = {state.last_seen.name for state in report.queue_states if state.last_seen}
    for name in seen_names:
        down = down_by_cluster.get(name)
        key = f"cluster-down:{name}"
        if down:
            seen = down[0].last_seen
            alert_open(
                key=key,
                summary=f"No live qcluster serves {', '.join(s.queue for s in down)} "
                        f"(last seen {seen.last_seen_at:%Y-%m-%d %H:%M} UTC)",
                detail="\n".join(p for s in down for p in s.problems))
        else:
            alert_resolve(key=key, resolution="A live cluster serves its queues again.")
    if never:
        alert_open(key="queues-never-served",
                   summary=f"No qcluster has ever served {', '.join(never)}",
                   detail="Start one: python manage.py qcluster (see README, Jobs).")
    else:
        alert_resolve(key="queues-never-served", resolution="A cluster serves them now.")


def _alert_checks(report: HealthReport) -> None:
    """A critical check other than the queues (the disk, Chroma) that fails: one alert until it
    passes or only warns again."""
    for check in report.checks:
        if check.name not in ALERTED_CHECKS:
            continue
        key = f"health-check:{check.name}"
        if check.status == FAIL:
            alert_open(key=key, summary=f"Health check {check.name} failed: {check.output}",
                       detail=f"{check.output}\n\nDetails: {check.details}")
        else:
            alert_resolve(key=key, resolution=f"It is {check.status} again: {check.output}")


def health_watch(now: datetime.datetime | None = None, *, source: str = "job") -> HealthReport:
    """Check, store the run (`source`: "job" or "command"), then open an alert (one email) for
    what newly failed and resolve what recovered."""
    report = health_report(now)
    if not report.database_ok:
        return report  # nothing can be recorded; the command's exit status says it
    try:
        health_run_store(report, source=source)
        _alert_queues(report)
        _alert_checks(report)
    except DatabaseError:
        # The database went away after the checks: the report (and the exit status) stands.
        logger.exception("The health run could not be recorded.")
    return report
