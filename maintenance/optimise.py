"""Database optimisation (Sunday 05:00; `manage.py optimise_db`), for each engine.

PostgreSQL: `VACUUM (ANALYZE)` of each table whose dead-tuple ratio (pg_stat_user_tables:
n_dead_tup / (n_live_tup + n_dead_tup)) reaches `min_dead_ratio` with at least
`min_dead_tuples` dead, one table at a time outside any transaction (VACUUM cannot run in one),
names quoted; then a report of table and index sizes and of indexes never scanned. Autovacuum
does most of this; the weekly pass catches tables it fell behind on and says where the space is.

SQLite: `PRAGMA optimize` (refreshes the planner's statistics where they are stale), a WAL
checkpoint that truncates the log, and `PRAGMA integrity_check`, with the size of the database
file (and its WAL) before and after.

database_optimise returns a report (a dict of JSON values):

    common      engine, dry_run, status ("ok", or "failed": a VACUUM or the integrity
                check failed), duration_ms
    postgresql  database_bytes; thresholds {min_dead_ratio, min_dead_tuples};
                candidates [{table, live_tuples, dead_tuples, dead_ratio, vacuumed,
                duration_ms, error}] (vacuumed is false in a dry run);
                tables [{table, total_bytes, table_bytes, index_bytes, live_tuples,
                dead_tuples, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze}],
                largest first (total = table, with its TOAST and free-space maps, + indexes); unused_indexes [{index, table, bytes, scans: 0}] (neither
                unique nor primary: those enforce a rule even when never read), largest first;
                stats_since (when the counters behind `scans` were last reset; null: since
                the server's statistics began)
    sqlite      size_before_bytes, size_after_bytes (the file plus its -wal);
                optimize ("done" or "skipped"); checkpoint {busy, log_frames,
                checkpointed_frames} (busy 1: a reader kept part of the log; null when
                skipped); integrity {ok, problems: [first 20 messages]}
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from django.db import connection

# A table is vacuumed when at least this share of its rows are dead, and at least this many.
MIN_DEAD_RATIO = 0.2
MIN_DEAD_TUPLES = 1000
INTEGRITY_PROBLEMS_SHOWN = 20


class OptimiseError(RuntimeError):
    """The optimisation cannot run as asked (inside a transaction, an unknown engine)."""


def database_optimise(*, dry_run: bool = False, min_dead_ratio: float = MIN_DEAD_RATIO,
                      min_dead_tuples: int = MIN_DEAD_TUPLES) -> dict:
    """Optimise the default database for its engine (the module's docstring says what and
    what the report holds). With `dry_run`, reports what it would do and changes nothing
    (SQLite's integrity check still runs: it only reads)."""
    if not 0 <= min_dead_ratio <= 1:
        raise ValueError("The dead-tuple ratio is between 0 and 1.")
    if min_dead_tuples < 0:
        raise ValueError("The minimum of dead tuples cannot be negative.")
    if connection.in_atomic_block and not dry_run:
        # VACUUM refuses to run in a transaction block, and a WAL checkpoint inside one
        # cannot pass the transaction's own snapshot. A dry run only reads.
        raise OptimiseError("Database optimisation cannot run inside a transaction "
                            "(transaction.atomic); call it outside one.")
    started = time.monotonic()
    if connection.vendor == "postgresql":
        report = _postgresql(dry_run=dry_run, min_dead_ratio=min_dead_ratio,
                             min_dead_tuples=min_dead_tuples)
    elif connection.vendor == "sqlite":
        report = _sqlite(dry_run=dry_run)
    else:
        raise OptimiseError(f"No optimisation is defined for {connection.vendor}.")
    report["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return report


# --- PostgreSQL -----------------------------------------------------------------------------

_DEAD_TUPLES = """
SELECT schemaname, relname, n_live_tup, n_dead_tup
FROM pg_stat_user_tables
WHERE n_dead_tup >= %s AND n_dead_tup > 0
  AND n_dead_tup::float8 / NULLIF(n_live_tup + n_dead_tup, 0) >= %s
ORDER BY n_dead_tup DESC, schemaname, relname
"""

_TABLE_SIZES = """
SELECT schemaname, relname, pg_total_relation_size(relid), pg_table_size(relid),
       pg_indexes_size(relid), n_live_tup, n_dead_tup, last_vacuum, last_autovacuum,
       last_analyze, last_autoanalyze
FROM pg_stat_user_tables
ORDER BY pg_total_relation_size(relid) DESC, schemaname, relname
"""

_UNUSED_INDEXES = """
SELECT s.schemaname, s.indexrelname, s.relname, pg_relation_size(s.indexrelid)
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
ORDER BY pg_relation_size(s.indexrelid) DESC, s.schemaname, s.indexrelname
"""


def _qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _postgresql(*, dry_run: bool, min_dead_ratio: float, min_dead_tuples: int) -> dict:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(_DEAD_TUPLES, [min_dead_tuples, min_dead_ratio])
        found = cursor.fetchall()
    candidates = []
    for schema, name, live, dead in found:
        candidate = {"table": _qualified(schema, name), "live_tuples": live,
                     "dead_tuples": dead, "dead_ratio": round(dead / (live + dead), 4),
                     "vacuumed": False, "duration_ms": None, "error": None}
        candidates.append(candidate)
        if dry_run:
            continue
        began = time.monotonic()
        try:
            # Autocommit (no atomic block: checked above), so VACUUM runs as its own
            # statement. It takes SHARE UPDATE EXCLUSIVE: reads and writes go on meanwhile.
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (ANALYZE) {quote(schema)}.{quote(name)}")
        except Exception as exc:  # noqa: BLE001  (recorded; the other tables still go)
            candidate["error"] = f"{type(exc).__name__}: {exc}"
        else:
            candidate["vacuumed"] = True
        candidate["duration_ms"] = round((time.monotonic() - began) * 1000, 1)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database()), stats_reset "
                       "FROM pg_stat_database WHERE datname = current_database()")
        database_bytes, stats_reset = cursor.fetchone()
        cursor.execute(_TABLE_SIZES)
        tables = [{"table": _qualified(schema, name), "total_bytes": total,
                   "table_bytes": heap, "index_bytes": indexes, "live_tuples": live,
                   "dead_tuples": dead, "last_vacuum": _iso(vacuum),
                   "last_autovacuum": _iso(autovacuum), "last_analyze": _iso(analyze),
                   "last_autoanalyze": _iso(autoanalyze)}
                  for (schema, name, total, heap, indexes, live, dead, vacuum, autovacuum,
                       analyze, autoanalyze) in cursor.fetchall()]
        cursor.execute(_UNUSED_INDEXES)
        unused = [{"index": _qualified(schema, index), "table": _qualified(schema, table),
                   "bytes": size, "scans": 0}
                  for schema, index, table, size in cursor.fetchall()]
    return {
        "engine": "postgresql", "dry_run": dry_run,
        "status": "failed" if any(c["error"] for c in candidates) else "ok",
        "database_bytes": database_bytes,
        "thresholds": {"min_dead_ratio": min_dead_ratio, "min_dead_tuples": min_dead_tuples},
        "candidates": candidates, "tables": tables, "unused_indexes": unused,
        "stats_since": _iso(stats_reset),
    }


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite_size(path: Path) -> int:
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def _sqlite(*, dry_run: bool) -> dict:
    path = Path(connection.settings_dict["NAME"])
    in_memory = str(path) == ":memory:" or "mode=memory" in str(path)
    before = 0 if in_memory else _sqlite_size(path)
    checkpoint = None
    with connection.cursor() as cursor:
        if not dry_run:
            cursor.execute("PRAGMA optimize")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, log_frames, checkpointed = cursor.fetchone()
            checkpoint = {"busy": busy, "log_frames": log_frames,
                          "checkpointed_frames": checkpointed}
        cursor.execute("PRAGMA integrity_check")
        messages = [row[0] for row in cursor.fetchall()]
    ok = messages == ["ok"]
    return {
        "engine": "sqlite", "dry_run": dry_run, "status": "ok" if ok else "failed",
        "database": os.fspath(path),
        "size_before_bytes": before,
        "size_after_bytes": 0 if in_memory else _sqlite_size(path),
        "optimize": "skipped" if dry_run else "done",
        "checkpoint": checkpoint,
        "integrity": {"ok": ok, "problems": [] if ok else messages[:INTEGRITY_PROBLEMS_SHOWN]},
    }
