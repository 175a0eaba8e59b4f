"""Backup, verify and restore at 1,000,000 attempts (10,000 students × 100), beside the bare
tools followed by zstd on the same data, with encryption on (the worst case) and off.

    .venv/bin/python bench/backup.py                  # SQLite (a scratch file)
    .venv/bin/python bench/backup.py --postgres       # PostgreSQL (scratch databases bench_bk_*)
    .venv/bin/python bench/backup.py --students 1000  # a quick look
    .venv/bin/python bench/backup.py --profile        # and cProfile one more run of each of ours

The data is bench/analytics.py's (`load_world`: the catalogue, 10,000 students, 2,000
questions, 50,000 sessions, 1,000,000 attempts in one set-based INSERT). PostgreSQL is then
vacuumed, and vacuumed again (untimed) after each restore, so every dump reads tables in the
same state.

Ours (maintenance/backups/services.py, as `manage.py backup_db` calls it):
- create: `backup_create()`: row counts and migrations in the dump's snapshot, the engine's dump
  (PostgreSQL `pg_dump -Fc -Z0 --no-owner --no-acl`, SQLite the backup API in one step) streamed
  through zstd level 3, AES-256-GCM when a key is set, SHA-256, fsync, manifest, rename.
- verify: `backup_verify(name)`: checksum, decrypt, decompress, restore into a scratch database
  (PostgreSQL: a new database, pg_restore --single-transaction; SQLite: a new file and
  `PRAGMA integrity_check`), row counts compared with the manifest, the scratch copy dropped.
- restore: `backup_restore(name)` of the backup verify just passed (what `backup_db restore
  NAME --no-input` runs after its dry run): checks and checksum, decrypt and decompress, a
  safety backup of the live database, the replace in one transaction (PostgreSQL: pg_restore
  --clean --if-exists through psql --single-transaction; SQLite: the backup API into the live
  file), then row counts, migrations, the backup catalogue, student email paused, schedules,
  vector steps. Timed whole, and its replace step alone (checks, decrypt + decompress and the
  engine's restore, measured inside the same call).

Bare (the `zstd` CLI at its default level 3, or the `zstandard` module at level 3 when the CLI
is missing; the output says which):
- create: PostgreSQL `pg_dump -Fc -Z0 --no-owner --no-acl | zstd -q -o FILE`; SQLite the backup
  API in one step into a new file, then `zstd -q FILE`.
- restore into a fresh database: PostgreSQL `CREATE DATABASE` then `zstd -dc FILE | pg_restore
  --no-owner --no-acl --dbname=NEW`; SQLite `zstd -d FILE -o COPY` then the backup API from COPY
  into a new file: the counterpart of verify, and the brief's of the restore's replace step.
- restore into the live database: PostgreSQL `zstd -dc FILE | pg_restore --clean --if-exists
  --single-transaction --no-owner --no-acl` into bench_bk_live; SQLite the backup API into the
  live file: what our replace step does, bare (the like-for-like counterpart).
- the whole restore's counterpart: bare create (the safety backup) + bare restore into the live
  database.

Target: ours within 1.3× of bare. Runs alternate (bare first, then ours first) --repeat times;
medians are shown. Scratch databases: bench_bk_live (the live one), bench_bk_bare (the bare
restores), the service's own pastq_verify_*; all dropped at the end, and BACKUP_DIR is inside
the scratch var folder, removed with it.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the project root there
# instead (as bench/analytics.py does), so `analytics` is the app, not bench/analytics.py.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from unittest import mock  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

LIMIT = 1.3
BARE_DB = "bench_bk_bare"
ZSTD = shutil.which("zstd")
ZSTD_LEVEL = 3
IO_CHUNK = 1 << 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--pg-database", default="bench_bk_live",
                        help="scratch PostgreSQL database (dropped and created)")
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--attempts", type=int, default=100, help="per student")
    parser.add_argument("--days", type=int, default=60, help="local dates they spread over")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating rounds with encryption on (the median is shown)")
    parser.add_argument("--repeat-plain", type=int, default=1,
                        help="rounds without encryption")
    parser.add_argument("--profile", action="store_true",
                        help="then cProfile one more create, verify and restore of ours")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch database (and print where it is)")
    args = parser.parse_args()
    if args.postgres and not args.pg_database.startswith("bench_bk_"):
        parser.error("--pg-database must start with bench_bk_")

    with scratch_django(postgres=args.postgres, name=args.pg_database, keep=args.keep):
        try:
            run(args)
        finally:
            if args.postgres:
                bare_database_drop()


# --- measuring ------------------------------------------------------------------------------


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


class Stopwatch:
    """Seconds spent in named functions during a call, by wrapping them where they are looked
    up (module attributes and methods), so the breakdown is of the real call."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def watching(self, targets: list[tuple[object, str, str]]):
        with contextlib.ExitStack() as stack:
            for owner, attribute, label in targets:
                self.seconds.setdefault(label, 0.0)  # shown in the order given
                original = getattr(owner, attribute)
                stack.enter_context(mock.patch.object(owner, attribute,
                                                      self._wrap(original, label)))
            yield self

    def _wrap(self, function, label):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) \
                    + time.perf_counter() - started
        return wrapper


def vendor() -> str:
    from django.db import connection

    return connection.vendor


def zstd_compress(source: Path, dest: Path) -> None:
    if ZSTD:
        subprocess.run([ZSTD, "-q", f"-{ZSTD_LEVEL}", str(source), "-o", str(dest)], check=True)
    else:
        import zstandard

        with source.open("rb") as src, dest.open("wb") as dst:
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).copy_stream(
                src, dst, read_size=IO_CHUNK, write_size=IO_CHUNK)


def zstd_decompress(source: Path, dest: Path) -> None:
    if ZSTD:
        subprocess.run([ZSTD, "-q", "-d", str(source), "-o", str(dest)], check=True)
    else:
        import zstandard

        with source.open("rb") as src, dest.open("wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst, read_size=IO_CHUNK,
                                                     write_size=IO_CHUNK)


# --- bare: PostgreSQL -----------------------------------------------------------------------


def pg_engine():
    from maintenance.backups.engines import PostgresEngine

    return PostgresEngine()


def bare_pg_create(out: Path) -> None:
    """pg_dump -Fc -Z0 | zstd, credentials through the environment as ours."""
    engine = pg_engine()
    env = engine.env()
    dump = subprocess.Popen([engine.tool("pg_dump"), "--format=custom", "--compress=0",
                             "--no-owner", "--no-acl"], stdout=subprocess.PIPE, env=env)
    if ZSTD:
        compress = subprocess.Popen([ZSTD, "-q", f"-{ZSTD_LEVEL}", "-o", str(out)],
                                    stdin=dump.stdout)
        dump.stdout.close()
        assert compress.wait() == 0
    else:
        import zstandard

        with out.open("wb") as dst:
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).copy_stream(
                dump.stdout, dst, read_size=IO_CHUNK, write_size=IO_CHUNK)
        dump.stdout.close()
    assert dump.wait() == 0


def bare_pg_restore_live(source: Path) -> None:
    """zstd -dc | pg_restore --clean --if-exists --single-transaction into the live database:
    the tool call the issue prescribes for a restore, run bare."""
    from django.db import connections

    engine = pg_engine()
    connections.close_all()
    argv = [engine.tool("pg_restore"), "--clean", "--if-exists", "--single-transaction",
            "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={engine.database}"]
    if ZSTD:
        unpack = subprocess.Popen([ZSTD, "-q", "-dc", str(source)], stdout=subprocess.PIPE)
        restore = subprocess.Popen(argv, stdin=unpack.stdout, env=engine.env())
        unpack.stdout.close()
        assert restore.wait() == 0 and unpack.wait() == 0
    else:
        dump = source.with_suffix(".dump")
        zstd_decompress(source, dump)
        subprocess.run([*argv, str(dump)], env=engine.env(), check=True)
        dump.unlink()


def bare_database_drop() -> None:
    raw = pg_engine().connect()
    try:
        raw.cursor().execute(f"DROP DATABASE IF EXISTS {BARE_DB} WITH (FORCE)")
    finally:
        raw.close()


def bare_pg_restore(source: Path) -> None:
    """CREATE DATABASE, then zstd -dc | pg_restore into it."""
    engine = pg_engine()
    raw = engine.connect()
    try:
        raw.cursor().execute(f"CREATE DATABASE {BARE_DB} TEMPLATE template0")
    finally:
        raw.close()
    env = engine.env(database=BARE_DB)
    argv = [engine.tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
            f"--dbname={BARE_DB}"]
    if ZSTD:
        unpack = subprocess.Popen([ZSTD, "-q", "-dc", str(source)], stdout=subprocess.PIPE)
        restore = subprocess.Popen(argv, stdin=unpack.stdout, env=env)
        unpack.stdout.close()
        assert restore.wait() == 0 and unpack.wait() == 0
    else:
        dump = source.with_suffix(".dump")
        zstd_decompress(source, dump)
        subprocess.run([*argv, str(dump)], env=env, check=True)
        dump.unlink()


# --- bare: SQLite ---------------------------------------------------------------------------


def sqlite_live() -> Path:
    from django.db import connection

    return Path(connection.settings_dict["NAME"])


def bare_sqlite_create(out: Path) -> None:
    """The backup API in one step into a new file, then zstd."""
    copy = out.with_suffix(".copy")
    source, target = sqlite3.connect(sqlite_live()), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    zstd_compress(copy, out)
    copy.unlink()


def bare_sqlite_restore(source: Path, fresh: Path) -> None:
    """zstd -d into a file, then the backup API from it into a new database file."""
    copy = source.with_suffix(".copy")
    zstd_decompress(source, copy)
    src, target = sqlite3.connect(f"file:{copy}?mode=ro", uri=True), sqlite3.connect(fresh)
    try:
        src.backup(target)
    finally:
        target.close()
        src.close()
    copy.unlink()


def bare_sqlite_restore_live(source: Path) -> None:
    """zstd -d into a file, then the backup API from it into the live database file."""
    from django.db import connections

    connections.close_all()
    copy = source.with_suffix(".copy")
    zstd_decompress(source, copy)
    src, target = sqlite3.connect(f"file:{copy}?mode=ro", uri=True), \
        sqlite3.connect(sqlite_live())
    try:
        src.backup(target)
    finally:
        target.close()
        src.close()
    copy.unlink()


# --- one round ------------------------------------------------------------------------------


def settle() -> None:
    """PostgreSQL: VACUUM (ANALYZE) so the next dump reads tables with hint bits set, as a
    long-lived database's are (a fresh restore or load leaves every row to be checked)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")
    connection.close()


def bare_round(work: Path) -> dict:
    out = work / ("bare.pgdump.zst" if vendor() == "postgresql" else "bare.sqlite3.zst")
    out.unlink(missing_ok=True)
    if vendor() == "postgresql":
        create_s, _ = timed(bare_pg_create, out)
        bare_database_drop()
        restore_s, _ = timed(bare_pg_restore, out)
        bare_database_drop()
        settle()
        live_s, _ = timed(bare_pg_restore_live, out)
    else:
        create_s, _ = timed(bare_sqlite_create, out)
        fresh = work / "bare-fresh.sqlite3"
        fresh.unlink(missing_ok=True)
        restore_s, _ = timed(bare_sqlite_restore, out, fresh)
        fresh.unlink()
        live_s, _ = timed(bare_sqlite_restore_live, out)
    size = out.stat().st_size
    out.unlink()
    return {"create": create_s, "restore": restore_s, "live": live_s, "size": size}


def ours_round() -> dict:
    from maintenance.backups import archive, engines, services

    engine_class = type(engines.engine_for())
    watch_create, watch_verify, watch = Stopwatch(), Stopwatch(), Stopwatch()
    create_targets = [
        (engine_class, "dump", "the dump, streamed: tool + zstd + encryption + SHA-256"),
        (engines, "_count_rows", "  of which row counts for the manifest (one statement)"),
        (archive, "archive_commit", "manifest written, file renamed, directory fsynced"),
    ]
    if hasattr(engine_class, "tool_version"):
        create_targets.insert(1, (engine_class, "tool_version",
                                  "  of which `pg_dump --version` (the version check)"))
    with watch_create.watching(create_targets):
        create_s, record = timed(services.backup_create, trigger="command")
    with watch_verify.watching([
        (archive, "archive_check", "SHA-256 of the file against the manifest"),
        (archive, "archive_extract", "decrypt + decompress into a temporary file"),
        (engine_class, "scratch_restore", "the scratch restore, whole"),
        (engine_class, "check_dump", "  of which the dump check (magic; pg_restore --list)"),
        (engines, "_count_rows", "  of which row counts of the scratch copy"),
    ]):
        verify_s, verified = timed(services.backup_verify, record.name)
    assert verified.ok, verified.detail
    with watch.watching([
        (services, "_restore_checks", "checks (manifest, migrations, keys, SHA-256)"),
        (services, "_extracted", "decrypt + decompress"),
        (services, "backup_create", "safety backup"),
        (engine_class, "restore", "the engine's restore"),
        (services, "_after_restore", "after: counts, migrations, catalogue, email, schedules, "
                                     "vector steps"),
    ]):
        restore_s, result = timed(services.backup_restore, record.name)
    assert not result.warnings or all("vector" in w.lower() for w in result.warnings), \
        result.warnings
    replace_s = sum(watch.seconds[label] for label in (
        "checks (manifest, migrations, keys, SHA-256)", "decrypt + decompress",
        "the engine's restore"))
    # Only this round's files: the next round starts from an empty BACKUP_DIR.
    for entry in archive.archive_scan():
        archive.archive_delete(entry.path)
    return {"create": create_s, "verify": verify_s, "restore": restore_s, "replace": replace_s,
            "size": record.size_bytes, "dump_bytes": record.manifest["dump_bytes"],
            "breakdown": {"create": watch_create.seconds, "verify": watch_verify.seconds,
                          "restore": watch.seconds}, "verify_detail": verified.detail}


def measure(rounds: int, work: Path) -> dict:
    ours, bare = [], []
    for n in range(rounds):
        if n % 2 == 0:
            bare.append(bare_round(work))
            settle()
            ours.append(ours_round())
        else:
            ours.append(ours_round())
            settle()
            bare.append(bare_round(work))
        settle()

    def med(rows, key):
        return statistics.median(row[key] for row in rows)

    breakdown = {
        operation: {label: statistics.median(row["breakdown"][operation].get(label, 0.0)
                                             for row in ours)
                    for label in ours[0]["breakdown"][operation]}
        for operation in ("create", "verify", "restore")}
    return {
        "ours": {key: med(ours, key) for key in ("create", "verify", "restore", "replace")},
        "bare": {key: med(bare, key) for key in ("create", "restore", "live")},
        "ours_size": ours[-1]["size"], "dump_bytes": ours[-1]["dump_bytes"],
        "bare_size": bare[-1]["size"], "breakdown": breakdown,
        "verify_detail": ours[-1]["verify_detail"], "rounds": rounds,
    }


def rows_of(result: dict) -> list[tuple]:
    o, b = result["ours"], result["bare"]
    return [
        ("create", "dump | zstd", o["create"], b["create"],
         f"{mb(result['ours_size'])} / {mb(result['bare_size'])}"),
        ("verify", "restore into a fresh database", o["verify"], b["restore"], ""),
        ("restore: replace step", "restore into a fresh database", o["replace"], b["restore"],
         ""),
        ("restore: replace step", "restore into the live database", o["replace"], b["live"],
         ""),
        ("restore: whole command", "create + restore into the live db", o["restore"],
         b["create"] + b["live"], ""),
    ]


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# --- profile --------------------------------------------------------------------------------


def profile_ours() -> None:
    from maintenance.backups import archive, services

    def show(label, function, *args, **kwargs):
        profiler = cProfile.Profile()
        value = profiler.runcall(function, *args, **kwargs)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(12)
        print(f"\n--- cProfile: {label} (sorted by own time; the tools' own work shows as "
              "waiting in read/wait/poll) ---")
        print("\n".join(line for line in text.getvalue().splitlines()
                        if line.strip() and not line.startswith(("   Ordered by", "Ordered"))))
        return value

    record = show("create", services.backup_create, trigger="command")
    show("verify", services.backup_verify, record.name)
    show("restore", services.backup_restore, record.name)
    for entry in archive.archive_scan():
        archive.archive_delete(entry.path)
    if vendor() == "sqlite":
        integrity_probe()


def integrity_probe() -> None:
    """SQLite: what verify's `PRAGMA integrity_check` costs beside `PRAGMA quick_check`, on a
    copy of the live database made with the backup API."""
    from maintenance.backups import archive

    copy = archive.work_dir().parent.parent / "probe.sqlite3"
    source, target = sqlite3.connect(sqlite_live()), sqlite3.connect(copy)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()
    print("\n--- SQLite checks on a copy of the live database ---")
    try:
        for pragma in ("PRAGMA quick_check", "PRAGMA integrity_check"):
            db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            try:
                started = time.perf_counter()
                found = db.execute(pragma).fetchall()
                seconds = time.perf_counter() - started
            finally:
                db.close()
            print(f"  {pragma:<24}{seconds:>7.2f}s  {found[:1]}")
    finally:
        copy.unlink(missing_ok=True)


# --- the run --------------------------------------------------------------------------------


def run(args):
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    from bench.analytics import load_world
    from core.models import Attempt
    from maintenance.backups import archive, crypto

    logging.getLogger("pastq.backups").setLevel(logging.ERROR)
    settings.DEBUG = False  # as in production: no query log, no local Chroma file store
    seconds, _ = timed(load_world, args)
    settle()
    total = Attempt.objects.count()
    database = (f"PostgreSQL {connection.pg_version // 10000}"
                if connection.vendor == "postgresql" else f"SQLite {sqlite3.sqlite_version}")
    print(f"{database}: {args.students:,} students × {args.attempts} attempts = {total:,} "
          f"attempts, loaded in {seconds:.1f}s; zstd: "
          + (f"the CLI ({ZSTD}, {zstd_version()})" if ZSTD else
             "the zstandard module (no zstd CLI on PATH)") + f" level {ZSTD_LEVEL}", flush=True)
    work = archive.work_dir().parent.parent / "bare"
    work.mkdir(exist_ok=True)

    key = os.environ.get("BACKUP_ENCRYPTION_KEY") or crypto.key_generate()
    results = {}
    for label, key_value, rounds in (("encrypted", key, args.repeat),
                                     ("not encrypted", "", args.repeat_plain)):
        if rounds <= 0:
            continue
        with override_settings(BACKUP_ENCRYPTION_KEY=key_value, BACKUP_DECRYPTION_KEYS=[]):
            started = time.perf_counter()
            results[label] = measure(rounds, work)
            print(f"{label}: {rounds} round(s) in {time.perf_counter() - started:.0f}s",
                  flush=True)
    if args.profile:
        with override_settings(BACKUP_ENCRYPTION_KEY=key, BACKUP_DECRYPTION_KEYS=[]):
            profile_ours()
    shutil.rmtree(work, ignore_errors=True)

    engine = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    print(f"\n{'engine':<11}{'encryption':<14}{'operation':<24}{'bare':<36}{'ours s':>7}"
          f"{'bare s':>7}{'ratio':>6}{'limit':>6}{'':>6}  sizes (ours / bare)")
    failed = False
    for label, result in results.items():
        for operation, bare_what, ours, bare, sizes in rows_of(result):
            ratio = ours / bare
            verdict = "PASS" if ratio <= LIMIT else "FAIL"
            failed = failed or verdict == "FAIL"
            print(f"{engine:<11}{label:<14}{operation:<24}{bare_what:<36}{ours:>7.2f}"
                  f"{bare:>7.2f}{ratio:>6.2f}{LIMIT:>6}{verdict:>6}  {sizes}")
    for label, result in results.items():
        print(f"\n{label}: the dump is {mb(result['dump_bytes'])} before compression; medians "
              f"of {result['rounds']} round(s). Where our time goes:")
        for operation, steps in result["breakdown"].items():
            print(f"  {operation} ({result['ours'][operation]:.2f}s):")
            for step, seconds in steps.items():
                print(f"    {step:<72}{seconds:>7.2f}s")
        print(f"  verify said: {result['verify_detail']}")
    sys.exit(1 if failed else 0)


def zstd_version() -> str:
    done = subprocess.run([ZSTD, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.split(",")[0].split()[-1] if done.stdout else "?"


if __name__ == "__main__":
    main()
