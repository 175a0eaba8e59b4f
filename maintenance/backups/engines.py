"""How each database engine is dumped, restored and restored into a scratch copy.

PostgreSQL: `pg_dump --format=custom --compress=0 --no-owner --no-acl` (zstd compresses
afterwards, better and faster than pg_dump's own zlib), run on a snapshot exported by a
repeatable-read transaction that also counts every table's rows and reads the applied
migrations: the manifest describes exactly the rows the dump holds, however busy the workers.
Credentials reach the tools only through the environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE), never their argv, which any local user can read in /proc.

The live restore is one transaction: `pg_restore --clean --if-exists --no-owner --no-acl`
writes the restore script and `psql --single-transaction` runs it, after a prelude that takes
every table's lock up front (with a lock timeout: the dump's own `SET lock_timeout = 0` comes
only after it) and drops tables the dump does not have (created by migrations newer than the
backup; left in place they would make the forward migration fail). Any error rolls all of it
back, so a failed restore leaves the database as it was. (`pg_restore --single-transaction`
straight into the database can do neither of the two prelude steps inside its transaction.)

SQLite: the online backup API (`sqlite3.Connection.backup`) in one step, which copies a
consistent snapshot while workers write (a stepwise copy restarts whenever another connection
writes), never a raw file copy, which can catch a half-written page or miss the WAL. The
restore is the same API the other way, in one step, into the live file: other connections see
the old database or the new one, never a mixture, and a failure (the write lock not had in time)
changes nothing.

Every external step has a timeout; a tool that outlives it is killed and its output discarded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import connections

PG_DUMP_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"
VERSION_CHECK_TIMEOUT = 30  # seconds for `pg_dump --version` and friends
# Environment variables of libpq that could point a tool at another server or database: the
# inherited ones are dropped and ours set from DATABASES.
_PG_TARGET_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                        "PGSERVICE", "PGOPTIONS")
_PG_OPTION_VARIABLES = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                        "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "passfile": "PGPASSFILE",
                        "service": "PGSERVICE", "connect_timeout": "PGCONNECT_TIMEOUT",
                        "target_session_attrs": "PGTARGETSESSIONATTRS"}


class BackupError(Exception):
    """A backup operation failed or was refused; the message is a sentence for operators."""


class BackupToolError(BackupError):
    """A dump or restore tool failed, or the database could not be reached: may pass if tried
    again later."""


class BackupTimeout(BackupToolError):
    """A tool outlived its time limit and was stopped."""


class BackupInvalid(BackupError):
    """The backup itself is unusable: missing, damaged, not decryptable with the configured
    keys, not a dump, or it does not restore. Verification records it as failed."""


@dataclass
class Snapshot:
    """What one dump (or one restored copy) holds."""

    engine: str
    server_version: str = ""
    tool: str = ""
    row_counts: dict[str, int] = field(default_factory=dict)
    applied_migrations: list[str] = field(default_factory=list)  # "app.name", in applied order

    @property
    def latest_migrations(self) -> dict[str, str]:
        latest: dict[str, str] = {}
        for entry in self.applied_migrations:
            app, name = entry.split(".", 1)
            latest[app] = name
        return latest


def tool_timeout() -> float:
    """Seconds a dump or restore tool may run: BACKUP_TOOL_TIMEOUT_SECONDS, by default three
    quarters of the maintenance queue's time limit (the rest is for the manifest and cleanup),
    so a timed-out backup is reported by us, not killed half-written by the worker's limit."""
    configured = getattr(settings, "BACKUP_TOOL_TIMEOUT_SECONDS", 0)
    if configured:
        return float(configured)
    return 0.75 * settings.PASTQ_QUEUES["maintenance"]["timeout"]


def lock_timeout() -> float:
    return float(getattr(settings, "BACKUP_RESTORE_LOCK_TIMEOUT_SECONDS", 30))


# --- helpers shared by both engines ---------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count_rows(cursor, tables: list[str]) -> dict[str, int]:
    """Every table's row count in one statement (one round trip, one snapshot)."""
    if not tables:
        return {}
    cursor.execute(" UNION ALL ".join(
        f"SELECT {i}, COUNT(*) FROM {_quote(t)}" for i, t in enumerate(tables)))
    counts = dict(cursor.fetchall())
    return {table: int(counts[i]) for i, table in enumerate(tables)}


def _applied_migrations(cursor, tables: list[str]) -> list[str]:
    if "django_migrations" not in tables:
        return []
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
    return [f"{app}.{name}" for app, name in cursor.fetchall()]


class _Watchdog:
    """Kills processes that outlive `seconds`; `fired` says whether it had to."""

    def __init__(self, processes: list[subprocess.Popen], seconds: float):
        self.fired = False
        self._processes = processes
        self._timer = threading.Timer(seconds, self._kill)
        self._timer.daemon = True

    def _kill(self) -> None:
        self.fired = True
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


class _CountingReader:
    """A readable stream that counts what passes and keeps the first bytes (to check a tool's
    output is what it should be)."""

    def __init__(self, raw: BinaryIO):
        self._raw, self.size, self.head = raw, 0, b""

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            if len(self.head) < 16:
                self.head = (self.head + data)[:16]
            self.size += len(data)
        return data

    def readinto(self, buffer) -> int:  # zstandard's stream reader may use it
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


def _private_tempfile(workdir: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".work-", suffix=suffix, dir=workdir)
    os.close(fd)  # mkstemp creates it 0600
    return Path(name)


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_tables(cursor) -> list[str]:
    cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                   "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    return [row[0] for row in cursor.fetchall()]


def _sqlite_snapshot(path: Path) -> Snapshot:
    """Row counts and migrations of a SQLite file (a copy; opened read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = db.cursor()
        tables = _sqlite_tables(cursor)
        return Snapshot(engine="sqlite", server_version=sqlite3.sqlite_version,
                        tool=f"sqlite3 backup API (SQLite {sqlite3.sqlite_version})",
                        row_counts=_count_rows(cursor, tables),
                        applied_migrations=_applied_migrations(cursor, tables))
    finally:
        db.close()


class _Deadline:
    """The backup API's progress callback: raising from it aborts the copy (CPython finishes the
    backup handle, the destination's transaction rolls back). Python's backup() otherwise waits
    for ever on a destination whose write lock another connection holds."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what, self.started = seconds, what, time.monotonic()

    def __call__(self, status, remaining, total) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BackupTimeout(self.what)


class SqliteEngine:
    name = "sqlite"

    def __init__(self, alias: str = "default"):
        self.alias = alias

    @property
    def path(self) -> Path:
        name = str(connections[self.alias].settings_dict["NAME"])
        if not name or name == ":memory:" or name.startswith("file::memory:") or \
                "mode=memory" in name:
            raise BackupError("The database is an in-memory SQLite database: there is nothing "
                              "on disk to back up or restore.")
        return Path(name)

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def _open(self, path: Path, timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(str(path), timeout=timeout)

    def dump(self, consume: Callable[[BinaryIO], None], *, workdir: Path,
             timeout: float) -> Snapshot:
        """Copy the live database with the backup API in one step into a private temporary
        file, then hand that file to `consume`."""
        live = self.path
        if not live.exists():
            raise BackupError(f"The SQLite database {live} does not exist.")
        copy = _private_tempfile(workdir, ".sqlite3")
        try:
            source = self._open(live, timeout)
            target = sqlite3.connect(str(copy))
            try:
                # One step (pages=-1): the whole database under one read transaction, so it is
                # a consistent snapshot even while workers write (WAL readers never block).
                source.backup(target, progress=_Deadline(
                    timeout, f"Copying the SQLite database took longer than {timeout:.0f} s."))
                # A copy in rollback-journal mode is one self-contained file.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
                source.close()
            snapshot = _sqlite_snapshot(copy)
            with copy.open("rb") as stream:
                consume(stream)
            return snapshot
        except sqlite3.Error as exc:
            raise BackupToolError(f"Copying the SQLite database failed: {exc}.") from exc
        finally:
            copy.unlink(missing_ok=True)

    def check_dump(self, dump_path: Path) -> None:
        with dump_path.open("rb") as stream:
            if stream.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise BackupInvalid("The backup does not hold a SQLite database.")

    def scratch_restore(self, dump_path: Path, *, workdir: Path, timeout: float) -> Snapshot:
        """Restore into a temporary file with the same API as a live restore, and count what
        it holds."""
        self.check_dump(dump_path)
        scratch = _private_tempfile(workdir, ".scratch.sqlite3")
        try:
            source = sqlite3.connect(f"file:{dump_path}?mode=ro", uri=True)
            target = sqlite3.connect(str(scratch))
            try:
                source.backup(target, progress=_Deadline(
                    timeout, f"Restoring into a scratch file took longer than {timeout:.0f} s."))
                # No PRAGMA integrity_check here: matching every index against its table took
                # 15–19 s of an 18 s verify at 1M attempts, and even quick_check doubled the
                # bare restore's time (bench/RESULTS.md). The SHA-256 and the authenticated
                # chunks prove the file is the one written, the backup API copies pages as
                # they are, the row counts read every table, and optimise_db runs the full
                # check on the live database every Sunday.
            finally:
                target.close()
                source.close()
            return _sqlite_snapshot(scratch)
        except sqlite3.Error as exc:
            raise BackupInvalid(f"The backup could not be restored into a scratch file: {exc}.") \
                from exc
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{scratch}{suffix}").unlink(missing_ok=True)

    def restore(self, dump_path: Path, *, timeout: float) -> None:
        """Replace the live database with the dump in one step. Django's connections are closed
        first (they reopen on their next query and see the restored schema)."""
        self.check_dump(dump_path)
        connections.close_all()
        waited = lock_timeout()
        try:
            source = sqlite3.connect(f"file:{dump_path}?mode=ro", uri=True)
            target = self._open(self.path, min(waited, 5.0))
            try:
                source.backup(target, progress=_Deadline(
                    min(waited, timeout),
                    f"Another connection held the database's write lock for more than "
                    f"{min(waited, timeout):.0f} s; nothing was restored. Stop the workers "
                    "(and the web processes, if they write) and try again."))
            finally:
                target.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupToolError(f"The restore failed and changed nothing: {exc}.") from exc

    def live_snapshot(self) -> Snapshot:
        if not self.path.exists():
            return Snapshot(engine="sqlite", server_version=sqlite3.sqlite_version)
        db = self._open(self.path, 20)
        try:
            cursor = db.cursor()
            tables = _sqlite_tables(cursor)
            return Snapshot(engine="sqlite", server_version=sqlite3.sqlite_version,
                            row_counts=_count_rows(cursor, tables),
                            applied_migrations=_applied_migrations(cursor, tables))
        finally:
            db.close()


# --- PostgreSQL ------------------------------------------------------------------------------


_PG_TABLES_SQL = (
    "SELECT c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() ORDER BY c.relname")


def _pg_tables(cursor) -> list[str]:
    cursor.execute(_PG_TABLES_SQL)
    return [row[0] for row in cursor.fetchall()]


def _major(version_num: int) -> int:
    """PostgreSQL's major version from server_version_num (150020 → 15; 90624 → 9)."""
    return version_num // 10000


_TOOL_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def pg_tool_major(text: str) -> int | None:
    """The major version in `pg_dump --version`'s output ("pg_dump (PostgreSQL) 15.20 …")."""
    found = _TOOL_VERSION.search(text)
    return int(found.group(1)) if found else None


def _driver_errors(method):
    """The database driver's errors (a refused statement, a lost connection) as a
    BackupToolError with the server's sentence."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except connections[self.alias].Database.Error as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise BackupToolError(f"PostgreSQL refused: {message}.") from exc

    return wrapper


class PostgresEngine:
    name = "postgresql"

    def __init__(self, alias: str = "default"):
        self.alias = alias

    @property
    def settings_dict(self) -> dict:
        return connections[self.alias].settings_dict

    @property
    def database(self) -> str:
        return self.settings_dict["NAME"]

    def describe(self) -> str:
        d = self.settings_dict
        return f"PostgreSQL database {d['NAME']} on {d.get('HOST') or 'localhost'}" \
               f":{d.get('PORT') or 5432}"

    # connections and tools

    def env(self, database: str | None = None) -> dict[str, str]:
        """The tools' environment: libpq's variables from DATABASES (the password included),
        so nothing secret is on a command line."""
        d = self.settings_dict
        env = {k: v for k, v in os.environ.items() if k not in _PG_TARGET_VARIABLES}
        values = {"PGHOST": d.get("HOST"), "PGPORT": d.get("PORT"), "PGUSER": d.get("USER"),
                  "PGPASSWORD": d.get("PASSWORD"), "PGDATABASE": database or d.get("NAME")}
        for option, variable in _PG_OPTION_VARIABLES.items():
            if d.get("OPTIONS", {}).get(option) not in (None, ""):
                values[variable] = d["OPTIONS"][option]
        env.update({k: str(v) for k, v in values.items() if v not in (None, "")})
        env["PGAPPNAME"] = "pastq-backup"
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def connect(self, database: str | None = None):
        """A connection of the driver's own (autocommit), outside Django's: a dump holds a
        repeatable-read transaction open on it, and a scratch database needs another name."""
        wrapper = connections[self.alias]
        params = wrapper.get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        if database:
            params["dbname"] = database
        try:
            raw = wrapper.Database.connect(**params)
        except wrapper.Database.Error as exc:
            raise BackupToolError(f"Could not connect to PostgreSQL: {exc}".strip()) from exc
        raw.autocommit = True
        return raw

    def tool(self, name: str) -> str:
        bin_dir = getattr(settings, "BACKUP_PG_BIN_DIR", "")
        path = shutil.which(name, path=bin_dir) if bin_dir else shutil.which(name)
        if not path:
            where = f"in BACKUP_PG_BIN_DIR ({bin_dir})" if bin_dir else "on PATH"
            raise BackupError(f"{name} was not found {where}: install PostgreSQL's client tools "
                              "of the server's major version or newer (Debian: "
                              "postgresql-client).")
        return path

    def tool_version(self, name: str, server_version_num: int) -> str:
        """`name --version`, refusing a tool older than the server: an old pg_dump refuses
        a newer server, or worse, misses what it does not know."""
        tool = self.tool(name)
        try:
            done = subprocess.run([tool, "--version"], capture_output=True, text=True,
                                  timeout=VERSION_CHECK_TIMEOUT, env=self.env(), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupToolError(f"Could not run {tool} --version: {exc}.") from exc
        text = (done.stdout or done.stderr).strip()
        major = pg_tool_major(text)
        if major is None:
            raise BackupError(f"Could not read {tool}'s version from {text!r}.")
        server = _major(server_version_num)
        if major < server:
            raise BackupError(
                f"{name} is version {major} ({tool}), older than the PostgreSQL {server} server: "
                f"install the client tools of version {server} or newer (Debian: "
                f"postgresql-client-{server}) and put them first on PATH or in "
                "BACKUP_PG_BIN_DIR.")
        return text

    def _server_version(self, cursor) -> tuple[str, int]:
        cursor.execute("SELECT current_setting('server_version'), "
                       "current_setting('server_version_num')::int")
        version, number = cursor.fetchone()
        return version, number

    # dump

    @_driver_errors
    def dump(self, consume: Callable[[BinaryIO], None], *, workdir: Path,
             timeout: float) -> Snapshot:
        raw = self.connect()
        errors = _private_tempfile(workdir, ".stderr")
        try:
            cursor = raw.cursor()
            version, number = self._server_version(cursor)
            tool = self.tool_version("pg_dump", number)
            # The counts, the migrations and the dump all read the same snapshot.
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot_id = cursor.fetchone()[0]
            tables = _pg_tables(cursor)
            snapshot = Snapshot(engine=self.name, server_version=version, tool=tool,
                                row_counts=_count_rows(cursor, tables),
                                applied_migrations=_applied_migrations(cursor, tables))
            argv = [self.tool("pg_dump"), "--format=custom", "--compress=0", "--no-owner",
                    "--no-acl", f"--snapshot={snapshot_id}"]
            with errors.open("wb") as stderr:
                process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr,
                                           env=self.env())
            with _Watchdog([process], timeout) as dog:
                reader = _CountingReader(process.stdout)
                try:
                    consume(reader)
                    # Whatever consume left unread would keep pg_dump blocked on a full pipe.
                    while reader.read(1 << 16):
                        pass
                except BaseException:
                    process.kill()
                    raise
                finally:
                    process.stdout.close()
                    returncode = process.wait()
            if dog.fired:
                raise BackupTimeout(f"pg_dump did not finish within {timeout:.0f} s and was "
                                    "stopped; nothing was kept.")
            if returncode != 0:
                raise BackupToolError(f"pg_dump failed (exit status {returncode}): "
                                      f"{_tail(errors) or 'no message'}")
            if reader.size == 0 or not reader.head.startswith(PG_DUMP_MAGIC):
                raise BackupToolError(f"pg_dump exited successfully but wrote {reader.size} "
                                      "bytes that are not a custom-format dump.")
            return snapshot
        finally:
            errors.unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                raw.rollback()
            raw.close()

    def check_dump(self, dump_path: Path) -> list[str]:
        """The tables in the dump's table of contents (`pg_restore --list`): it fails on
        anything that is not a readable custom-format archive."""
        with dump_path.open("rb") as stream:
            if stream.read(len(PG_DUMP_MAGIC)) != PG_DUMP_MAGIC:
                raise BackupInvalid("The backup does not hold a PostgreSQL custom-format dump.")
        try:
            done = subprocess.run([self.tool("pg_restore"), "--list", str(dump_path)],
                                  capture_output=True, text=True, env=self.env(),
                                  timeout=tool_timeout(), check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackupTimeout("pg_restore --list took too long.") from exc
        if done.returncode != 0:
            raise BackupInvalid(f"pg_restore cannot read the dump: {done.stderr.strip()[-1500:]}")
        tables, blobs = [], False
        for line in done.stdout.splitlines():
            # "215; 1259 17568 TABLE public core_question postgres"
            parts = line.split()
            if line.startswith(";") or len(parts) < 4:
                continue
            if parts[3] == "TABLE" and len(parts) >= 6:
                tables.append(parts[5])
            blobs = blobs or parts[3] in ("BLOB", "BLOBS")
        if blobs:
            # pg_restore's script commits large objects in transactions of their own, which
            # would break the one-transaction restore; pastq stores none.
            raise BackupError("The dump holds large objects, which this restore cannot apply "
                              "in one transaction; restore it by hand with pg_restore.")
        return tables

    @_driver_errors
    def scratch_restore(self, dump_path: Path, *, workdir: Path, timeout: float) -> Snapshot:
        """Restore into a temporary database (created from template0, dropped after), then
        count what it holds."""
        self.check_dump(dump_path)
        scratch = f"pastq_verify_{os.urandom(6).hex()}"
        admin = self.connect()
        errors = _private_tempfile(workdir, ".stderr")
        try:
            admin_cursor = admin.cursor()
            _version, number = self._server_version(admin_cursor)
            self.tool_version("pg_restore", number)
            try:
                admin_cursor.execute(f"CREATE DATABASE {_quote(scratch)} TEMPLATE template0")
            except connections[self.alias].Database.Error as exc:
                raise BackupToolError(
                    f"Could not create a scratch database to verify the backup in (the "
                    f"role needs CREATEDB): {' '.join(str(exc).split())}.") from exc
            try:
                argv = [self.tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                        "--single-transaction", f"--dbname={scratch}", str(dump_path)]
                try:
                    self._run(argv, errors, timeout, "pg_restore into a scratch database",
                              env=self.env(database=scratch))
                except BackupTimeout:
                    raise
                except BackupToolError as exc:
                    raise BackupInvalid(f"The backup does not restore: {exc}") from exc
                db = self.connect(scratch)
                try:
                    cursor = db.cursor()
                    tables = _pg_tables(cursor)
                    version, _ = self._server_version(cursor)
                    return Snapshot(engine=self.name, server_version=version,
                                    row_counts=_count_rows(cursor, tables),
                                    applied_migrations=_applied_migrations(cursor, tables))
                finally:
                    db.close()
            finally:
                force = " WITH (FORCE)" if _major(number) >= 13 else ""
                admin_cursor.execute(f"DROP DATABASE IF EXISTS {_quote(scratch)}{force}")
        finally:
            errors.unlink(missing_ok=True)
            admin.close()

    def _run(self, argv: list[str], errors: Path, timeout: float, what: str,
             env: dict[str, str]) -> None:
        with errors.open("wb") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        with _Watchdog([process], timeout) as dog:
            returncode = process.wait()
        if dog.fired:
            raise BackupTimeout(f"{what} did not finish within {timeout:.0f} s and was stopped.")
        if returncode != 0:
            raise BackupToolError(f"{what} failed (exit status {returncode}): "
                                  f"{_tail(errors) or 'no message'}")

    # live restore

    @_driver_errors
    def restore(self, dump_path: Path, *, timeout: float) -> None:
        """Replace the database's tables with the dump's, in one transaction."""
        dump_tables = self.check_dump(dump_path)
        raw = self.connect()
        try:
            cursor = raw.cursor()
            _version, number = self._server_version(cursor)
            live_tables = _pg_tables(cursor)
        finally:
            raw.close()
        self.tool_version("pg_restore", number)
        self.tool_version("psql", number)
        waited = lock_timeout()
        prelude = [f"SET lock_timeout = '{int(waited * 1000)}ms';"]
        if live_tables:
            # Every lock now, before anything changes: a table in use makes the restore fail
            # at once (lock timeout) instead of half-way, and the dump's script, which sets
            # lock_timeout = 0, never waits on a lock behind a busy worker.
            prelude.append("LOCK TABLE " + ", ".join(_quote(t) for t in live_tables)
                           + " IN ACCESS EXCLUSIVE MODE;")
        extra = sorted(set(live_tables) - set(dump_tables))
        if extra:
            prelude.append("DROP TABLE IF EXISTS " + ", ".join(_quote(t) for t in extra)
                           + " CASCADE;")
        # Django's idle connections hold no locks, but a persistent one may be mid-transaction
        # in this thread; close them so nothing of ours waits on itself.
        connections.close_all()
        errors = _private_tempfile(workdir_of(dump_path), ".stderr")
        script_errors = _private_tempfile(workdir_of(dump_path), ".stderr")
        try:
            env = self.env()
            with script_errors.open("wb") as script_stderr, errors.open("wb") as psql_stderr:
                psql = subprocess.Popen(
                    [self.tool("psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
                     "--single-transaction", "--file=-"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_stderr,
                    env=env)
                script = subprocess.Popen(
                    [self.tool("pg_restore"), "--clean", "--if-exists", "--no-owner",
                     "--no-acl", "--file=-", str(dump_path)],
                    stdout=subprocess.PIPE, stderr=script_stderr, env=env)
            with _Watchdog([psql, script], timeout) as dog:
                try:
                    psql.stdin.write(("\n".join(prelude) + "\n").encode())
                    shutil.copyfileobj(script.stdout, psql.stdin, 1 << 20)
                    script_code = script.wait()
                    if script_code == 0:
                        # End of input: psql commits the transaction now, and only now.
                        psql.stdin.close()
                    else:
                        # The script may have ended early: psql must never reach the end of
                        # its input, where it would commit what it got. Killed, its
                        # connection drops and the server rolls the transaction back.
                        psql.kill()
                except BrokenPipeError:
                    # psql stopped on an error (it says which below) and rolled back.
                    script.kill()
                    script_code = script.wait()
                except BaseException:
                    psql.kill()
                    script.kill()
                    raise
                finally:
                    script.stdout.close()
                    with contextlib.suppress(BrokenPipeError, OSError):
                        psql.stdin.close()
                    psql_code = psql.wait()
                    script.wait()
            if psql_code == 0 and script_code == 0:
                return  # committed (even if the watchdog fired just after)
            if dog.fired:
                raise BackupTimeout(f"The restore did not finish within {timeout:.0f} s and was "
                                    "stopped; its transaction rolled back, nothing changed.")
            if script_code != 0:
                raise BackupToolError(f"pg_restore failed (exit status {script_code}); the "
                                      "restore's transaction was rolled back, nothing changed: "
                                      f"{_tail(script_errors) or 'no message'}")
            if psql_code != 0:
                raise BackupToolError("The restore failed and its transaction rolled back; "
                                      f"nothing changed: {_tail(errors) or 'no message'}")
        finally:
            errors.unlink(missing_ok=True)
            script_errors.unlink(missing_ok=True)

    @_driver_errors
    def live_snapshot(self) -> Snapshot:
        raw = self.connect()
        try:
            cursor = raw.cursor()
            version, _ = self._server_version(cursor)
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            tables = _pg_tables(cursor)
            return Snapshot(engine=self.name, server_version=version,
                            row_counts=_count_rows(cursor, tables),
                            applied_migrations=_applied_migrations(cursor, tables))
        finally:
            with contextlib.suppress(Exception):
                raw.rollback()
            raw.close()


def workdir_of(path: Path) -> Path:
    return path.parent


Engine = SqliteEngine | PostgresEngine


def engine_for(alias: str = "default") -> Engine:
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        return SqliteEngine(alias)
    if vendor == "postgresql":
        return PostgresEngine(alias)
    raise BackupError(f"Backups support SQLite and PostgreSQL, not {vendor}.")
