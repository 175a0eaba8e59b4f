"""Database optimisation (maintenance/optimise.py, `manage.py optimise_db`, the Sunday job):
each engine's pass really runs; VACUUM outside any transaction, on the tables that need it,
names quoted; a report of sizes and unused indexes; failures reported, with exit status 1."""

import json

import pytest
from django.db import connection, transaction

from core.jobs.models import JobRun
from core.tests.conftest import deliver
from maintenance import optimise, tasks
from maintenance.optimise import OptimiseError, database_optimise

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite",
                                 reason=f"tests SQLite's pass (this run uses {connection.vendor})")

# A name that only works quoted: mixed case and a space.
PROBE = "Optimise Probe"


@pytest.fixture
def probe_table(transactional_db):
    """A PostgreSQL table with 1,000 live rows and 4,000 dead ones, autovacuum off for it (so
    only our VACUUM can clean it), its statistics flushed so pg_stat_user_tables shows them;
    an index nobody reads and a unique one."""
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{PROBE}" (id serial PRIMARY KEY, body text, code int) '
                       "WITH (autovacuum_enabled = false)")
        cursor.execute(f'CREATE INDEX "probe never read" ON "{PROBE}" (body)')
        cursor.execute(f'CREATE UNIQUE INDEX "probe unique" ON "{PROBE}" (code)')
        cursor.execute(f'INSERT INTO "{PROBE}" (body, code) '
                       "SELECT md5(n::text), n FROM generate_series(1, 5000) n")
        cursor.execute(f'DELETE FROM "{PROBE}" WHERE id > 1000')
        cursor.execute("SELECT pg_stat_force_next_flush()")
    try:
        yield f"public.{PROBE}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE IF EXISTS "{PROBE}"')


def _last_vacuum(name: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT last_vacuum, last_analyze, n_dead_tup FROM pg_stat_user_tables "
                       "WHERE relname = %s", [name])
        return cursor.fetchone()


@pytest.mark.postgres_only(reason="VACUUM and pg_stat_* are PostgreSQL's")
def test_postgresql_vacuums_the_tables_full_of_dead_rows_and_reports_sizes(probe_table):
    dry = database_optimise(dry_run=True)
    candidates = {c["table"]: c for c in dry["candidates"]}
    assert candidates[probe_table]["dead_tuples"] == 4000
    assert candidates[probe_table]["live_tuples"] == 1000
    assert candidates[probe_table]["dead_ratio"] == 0.8
    assert not candidates[probe_table]["vacuumed"]
    assert _last_vacuum(PROBE)[0] is None  # the dry run changed nothing
    # Below either threshold, it would not be vacuumed.
    for thresholds in (dict(min_dead_ratio=0.9), dict(min_dead_ratio=0.5, min_dead_tuples=5000)):
        report = database_optimise(dry_run=True, **thresholds)
        assert probe_table not in {c["table"] for c in report["candidates"]}
        assert report["thresholds"] == {"min_dead_ratio": 0.2, "min_dead_tuples": 1000,
                                        **thresholds}

    report = database_optimise()

    assert report["status"] == "ok" and report["engine"] == "postgresql"
    probe = {c["table"]: c for c in report["candidates"]}[probe_table]
    assert probe["vacuumed"] and probe["error"] is None and probe["duration_ms"] >= 0
    last_vacuum, last_analyze, dead = _last_vacuum(PROBE)
    assert last_vacuum is not None and last_analyze is not None and dead < 4000
    # The report: sizes of every table, largest first; indexes never scanned, without the
    # unique and primary ones (they enforce a rule even when never read).
    tables = {t["table"]: t for t in report["tables"]}
    assert tables[probe_table]["total_bytes"] == (tables[probe_table]["table_bytes"]
                                                  + tables[probe_table]["index_bytes"])
    assert tables[probe_table]["index_bytes"] > 0
    totals = [t["total_bytes"] for t in report["tables"]]
    assert totals == sorted(totals, reverse=True)
    unused = {i["index"] for i in report["unused_indexes"]}
    assert "public.probe never read" in unused
    assert "public.probe unique" not in unused and f"public.{PROBE}_pkey" not in unused
    assert report["database_bytes"] > 0
    json.dumps(report)  # JSON values only


@pytest.mark.postgres_only(reason="VACUUM is PostgreSQL's")
def test_a_failed_vacuum_is_reported_and_the_others_still_go(probe_table, monkeypatch):
    real_quote = connection.ops.quote_name

    def quote(name):  # the probe's VACUUM names a table that is not there
        return real_quote("no such table" if name == PROBE else name)

    monkeypatch.setattr(connection.ops, "quote_name", quote)
    report = database_optimise(min_dead_ratio=0.01, min_dead_tuples=1)
    probe = {c["table"]: c for c in report["candidates"]}[probe_table]
    assert report["status"] == "failed"
    assert not probe["vacuumed"] and "no such table" in probe["error"]


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_sqlite_optimises_checkpoints_and_checks_integrity():
    dry = database_optimise(dry_run=True)
    assert dry["optimize"] == "skipped" and dry["checkpoint"] is None
    assert dry["integrity"] == {"ok": True, "problems": []}

    report = database_optimise()

    assert report["engine"] == "sqlite" and report["status"] == "ok"
    assert report["optimize"] == "done"
    assert report["checkpoint"]["busy"] == 0
    # TRUNCATE: the log is empty afterwards, everything in it copied into the database.
    assert report["checkpoint"]["log_frames"] == report["checkpoint"]["checkpointed_frames"]
    assert report["size_before_bytes"] >= report["size_after_bytes"] > 0
    assert report["integrity"] == {"ok": True, "problems": []}
    assert report["database"] == connection.settings_dict["NAME"]


@pytest.mark.django_db
def test_it_refuses_to_run_inside_a_transaction():
    with transaction.atomic(), pytest.raises(OptimiseError, match="inside a transaction"):
        database_optimise()
    with transaction.atomic():
        assert database_optimise(dry_run=True)["status"] == "ok"  # a dry run only reads


@pytest.mark.parametrize("bad", [dict(min_dead_ratio=1.5), dict(min_dead_tuples=-1)])
def test_nonsense_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        database_optimise(**bad)


# --- The command and the job ----------------------------------------------------------------


def test_the_command_explains_itself(run_command):
    code, out, _ = run_command("optimise_db", "--help")
    assert code == 0
    assert "VACUUM (ANALYZE)" in out and "integrity_check" in out and "--dry-run" in out


@pytest.mark.django_db
def test_the_command_dry_run_reports_and_runs_inside_a_transaction(run_command):
    """A dry run only reads, so it may run where a real one may not (this test's own
    transaction)."""
    code, out, err = run_command("optimise_db", "--dry-run")
    assert code == 0, err
    assert "Dry run: nothing was changed" in out
    if connection.vendor == "sqlite":
        assert "would run PRAGMA optimize" in out and "integrity check: ok" in out
    else:
        assert "Largest tables" in out and "Indexes never scanned" in out

    code, out, err = run_command("optimise_db", "--dry-run", "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["dry_run"] is True and printed["engine"] == connection.vendor


def test_the_command_refuses_a_ratio_above_one(run_command):
    code, _, err = run_command("optimise_db", "--min-dead-ratio", "2")
    assert code == 2 and "between 0 and 1" in err


@pytest.mark.django_db
def test_the_command_says_why_inside_a_transaction(run_command):
    code, _, err = run_command("optimise_db")  # the test's own transaction is open
    assert code == 1 and "cannot run inside a transaction" in err


FAILED_SQLITE = {"engine": "sqlite", "dry_run": False, "status": "failed", "database": "x",
                 "size_before_bytes": 10, "size_after_bytes": 10, "optimize": "done",
                 "checkpoint": {"busy": 0, "log_frames": 0, "checkpointed_frames": 0},
                 "integrity": {"ok": False, "problems": ["row 3 missing from index i"]},
                 "duration_ms": 1.0}


def test_a_failed_integrity_check_exits_1_with_the_problems(run_command, monkeypatch):
    monkeypatch.setattr("maintenance.management.commands.optimise_db.database_optimise",
                        lambda **options: dict(FAILED_SQLITE))
    code, out, _ = run_command("optimise_db")
    assert code == 1
    assert "integrity check FAILED" in out and "row 3 missing from index i" in out
    assert "Optimisation found problems" in out


@pytest.mark.django_db(transaction=True)
def test_the_command_and_the_job_run_the_real_pass(run_command):
    code, out, err = run_command("optimise_db")
    assert code == 0, err
    assert "Optimisation done" in out
    if connection.vendor == "sqlite":
        assert "PRAGMA optimize: done; WAL checkpoint" in out and "integrity check: ok" in out
    else:
        assert "Largest tables" in out and "Indexes never scanned" in out

    result = deliver({"id": "o" * 32, "func": "maintenance.tasks.database_optimise"})
    assert result["engine"] == connection.vendor and result["status"] == "ok"
    assert JobRun.objects.get(task_id="o" * 32).outcome == "succeeded"
    json.dumps(result)


@pytest.mark.django_db
def test_the_job_fails_when_the_pass_finds_problems(monkeypatch,
                                                    django_capture_on_commit_callbacks):
    monkeypatch.setattr(optimise, "database_optimise", lambda **options: dict(FAILED_SQLITE))
    with pytest.raises(OptimiseError, match="row 3 missing"), \
            django_capture_on_commit_callbacks(execute=True):
        tasks.database_optimise()
    assert JobRun.objects.get().outcome == "failed"
