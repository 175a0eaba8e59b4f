"""PostgreSQL's tools: credentials only through the environment, an old pg_dump refused with a
clear error, a pg_dump that hangs stopped at the timeout with nothing left behind. Fake tools
first on PATH record what they were given, then run the real ones."""

import json
import os
import shlex

import pytest
from django.db import connection

from maintenance.backups import archive, services
from maintenance.backups.engines import BackupError, BackupTimeout, pg_tool_major
from maintenance.models import BackupRecord
from maintenance.tests import test_backups_helpers
from maintenance.tests.test_backups_helpers import (
    backup_files,
    fake_tool,
    real_tool,
)

pytestmark = [pytest.mark.postgres_only(reason="pg_dump, pg_restore and psql"),
              pytest.mark.django_db(transaction=True)]

backup_settings = test_backups_helpers.backup_settings  # a fixture

PASSWORD = "s3cret-Pa55word"  # trust authentication here: the server ignores it


@pytest.fixture
def recording_tools(backup_settings, tmp_path, monkeypatch):
    """pg_dump, pg_restore and psql that append their argv and PG* environment to a log, then
    exec the real tool; and a password in DATABASES that must never reach an argv."""
    log = tmp_path / "calls.jsonl"
    fake_dir = tmp_path / "fake-bin"
    for name in ("pg_dump", "pg_restore", "psql"):
        real = real_tool(name)
        fake_tool(fake_dir, name, f"""
python3 - "$@" <<'EOF' >> {shlex.quote(str(log))}
import json, os, sys
print(json.dumps({{"tool": {name!r}, "argv": sys.argv[1:],
                  "env": {{k: v for k, v in os.environ.items() if k.startswith("PG")}}}}))
EOF
exec {shlex.quote(real)} "$@"
""")
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", PASSWORD)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls


def test_credentials_reach_the_tools_only_through_the_environment(recording_tools, student):
    record = services.backup_create()
    assert services.backup_verify(record.name).ok
    services.backup_restore(record.name)

    calls = recording_tools()
    tools = {call["tool"] for call in calls}
    assert tools == {"pg_dump", "pg_restore", "psql"}
    dump = next(c for c in calls if c["tool"] == "pg_dump" and "--version" not in c["argv"])
    assert dump["argv"][:5] == ["--format=custom", "--compress=0", "--no-owner", "--no-acl",
                                dump["argv"][4]]
    assert dump["argv"][4].startswith("--snapshot=")
    restore = next(c for c in calls if c["tool"] == "pg_restore" and "--clean" in c["argv"])
    assert {"--clean", "--if-exists", "--no-owner"} <= set(restore["argv"])
    psql = next(c for c in calls if c["tool"] == "psql" and "--version" not in c["argv"])
    assert "--single-transaction" in psql["argv"]
    settings_dict = connection.settings_dict
    for call in calls:
        assert not any(PASSWORD in arg for arg in call["argv"]), call
        assert call["env"]["PGPASSWORD"] == PASSWORD
        assert call["env"]["PGUSER"] == settings_dict["USER"]
        assert call["env"]["PGHOST"] == (settings_dict["HOST"] or call["env"]["PGHOST"])
        if "--dbname" not in " ".join(call["argv"]):
            assert call["env"]["PGDATABASE"] == settings_dict["NAME"]


def test_a_pg_dump_older_than_the_server_is_refused_clearly(backup_settings, tmp_path,
                                                            monkeypatch, student):
    fake_dir = tmp_path / "fake-bin"
    fake_tool(fake_dir, "pg_dump", 'echo "pg_dump (PostgreSQL) 9.6.24"\n')
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        server_major = int(cursor.fetchone()[0]) // 10000

    with pytest.raises(BackupError, match=f"pg_dump is version 9 .*older than the PostgreSQL "
                                          f"{server_major} server: install the client tools"):
        services.backup_create()
    assert backup_files(archive.backup_dir()) == []
    assert BackupRecord.objects.get().status == BackupRecord.Status.FAILED


def test_a_pg_dump_that_hangs_is_stopped_and_leaves_nothing(backup_settings, tmp_path,
                                                           monkeypatch, student):
    real = real_tool("pg_dump")
    fake_dir = tmp_path / "fake-bin"
    fake_tool(fake_dir, "pg_dump", f"""
if [ "$1" = "--version" ]; then exec {shlex.quote(real)} --version; fi
printf PGDMP
exec sleep 60
""")
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    backup_settings.BACKUP_TOOL_TIMEOUT_SECONDS = 1

    with pytest.raises(BackupTimeout, match="did not finish within 1 s"):
        services.backup_create()
    assert backup_files(archive.backup_dir()) == []
    record = BackupRecord.objects.get()
    assert record.status == BackupRecord.Status.FAILED and "did not finish" in record.error


def test_a_failing_pg_dump_is_reported_with_its_message(backup_settings, tmp_path, monkeypatch,
                                                       student):
    real = real_tool("pg_dump")
    fake_dir = tmp_path / "fake-bin"
    fake_tool(fake_dir, "pg_dump", f"""
if [ "$1" = "--version" ]; then exec {shlex.quote(real)} --version; fi
printf PGDMP-half-a-dump
echo "pg_dump: error: connection lost" >&2
exit 1
""")
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BackupError, match="pg_dump failed \\(exit status 1\\): pg_dump: error: "
                                          "connection lost"):
        services.backup_create()
    assert backup_files(archive.backup_dir()) == []


def test_an_empty_pg_dump_output_is_an_error(backup_settings, tmp_path, monkeypatch, student):
    real = real_tool("pg_dump")
    fake_dir = tmp_path / "fake-bin"
    fake_tool(fake_dir, "pg_dump", f"""
if [ "$1" = "--version" ]; then exec {shlex.quote(real)} --version; fi
exit 0
""")
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BackupError, match="wrote 0 bytes that are not a custom-format dump"):
        services.backup_create()
    assert backup_files(archive.backup_dir()) == []


def test_tool_versions_are_read():
    assert pg_tool_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)") == 15
    assert pg_tool_major("pg_restore (PostgreSQL) 9.6.24") == 9
    assert pg_tool_major("psql (PostgreSQL) 17beta1") == 17
    assert pg_tool_major("nonsense") is None


def test_a_restore_script_cut_short_is_never_committed(backup_settings, tmp_path, monkeypatch,
                                                       student):
    """pg_restore dies half-way through writing the script, right after its DROP statements (a
    clean cut: what psql got is valid SQL): psql must not reach the end of its input, where it
    would commit what it got, every table dropped."""
    from django.contrib.auth.models import Group

    from maintenance.tests.test_backups_helpers import table_digests

    record = services.backup_create()
    assert services.backup_verify(record.name).ok
    Group.objects.create(name="after the backup")
    before = table_digests(exclude={"maintenance_backuprecord"})
    real = real_tool("pg_restore")
    fake_dir = tmp_path / "fake-bin"
    fake_tool(fake_dir, "pg_restore", f"""
case " $* " in
  *" --file=- "*)
    {shlex.quote(real)} "$@" | sed '/^CREATE TABLE/,$d'
    echo "pg_restore: error: could not read from input file" >&2
    exit 1;;
  *) exec {shlex.quote(real)} "$@";;
esac
""")
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(BackupError, match="pg_restore failed .*rolled back, nothing changed: "
                                          "pg_restore: error: could not read"):
        services.backup_restore(record.name)

    assert table_digests(exclude={"maintenance_backuprecord"}) == before
    assert Group.objects.filter(name="after the backup").exists()
