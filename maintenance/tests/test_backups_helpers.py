"""Fixtures and helpers shared by the backup tests (no tests here).

Backups are made and restored by other connections than the test's (pg_dump, psql, a second
sqlite3 connection), so the tests that use them run with `transaction=True`: those processes
must see committed rows.
"""

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from django.db import connection

from maintenance.backups import archive, crypto

KEY = "Cb3Ry8kQ9yVv0x7mBz3Q1m2pS8aT0nL5uE6wF4gH2jI="
OTHER_KEY = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
# Tables a restore changes on purpose after putting the backup's rows back: the backup
# catalogue is carried over (it describes files, which a restore does not roll back), student
# email is paused, embedding steps become pending.
CHANGED_BY_DESIGN = {"maintenance_backuprecord", "notifications_emaildelivery",
                     "core_questionstep"}


@pytest.fixture
def backup_settings(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_ENCRYPTION_KEY = KEY
    settings.BACKUP_DECRYPTION_KEYS = []
    settings.BACKUP_TOOL_TIMEOUT_SECONDS = 120
    settings.BACKUP_RESTORE_LOCK_TIMEOUT_SECONDS = 1
    settings.BACKUP_OFFSITE_STORAGE = ""
    # The vector index a restore resets: a Chroma file store of the test's own.
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.CHROMA_URL = ""
    return settings


def table_digests(exclude=()) -> dict[str, tuple[int, str]]:
    """Each table's row count and a SHA-256 of its rows (sorted, so row order, which a restore
    may change, does not matter)."""
    digests = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if table in exclude:
                continue
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows = sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else v
                                     for v in row)) for row in cursor.fetchall())
            digests[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return digests


def backup_files(directory: Path) -> list[str]:
    """Everything in the backup directory but the lock file and the (empty) work directory."""
    names = sorted(p.name for p in directory.iterdir() if p.name not in (".lock", ".work"))
    work = directory / ".work"
    if work.exists():
        names += [f".work/{p.name}" for p in work.iterdir()]
    return names


def rewrite_manifest(path: Path, **changes) -> dict:
    """Change a backup's manifest as an attacker or a mistake would (and, with
    `fix_checksum=True`, make its size and SHA-256 match the file again, so only the backup's
    own authentication stands in the way)."""
    fix = changes.pop("fix_checksum", False)
    manifest_file = archive.manifest_path(path)
    manifest = json.loads(manifest_file.read_text())
    manifest.update(changes)
    if fix:
        manifest["size_bytes"] = path.stat().st_size
        manifest["sha256"] = archive.file_sha256(path)
    manifest_file.write_text(json.dumps(manifest))
    return manifest


def chunks_of(path: Path) -> tuple[bytes, list[bytes]]:
    """An encrypted backup's header and its chunks (ciphertext with tag each)."""
    data = path.read_bytes()
    with path.open("rb") as file:
        header = crypto.header_read(file)
    body, size = data[crypto.HEADER_SIZE:], header.chunk_size + crypto.TAG_SIZE
    return data[:crypto.HEADER_SIZE], [body[i:i + size] for i in range(0, len(body), size)]


def sqlite_write_lock(path: str):
    """Another connection holding SQLite's write lock (a busy worker); close it to release."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def fake_tool(directory: Path, name: str, script: str) -> Path:
    """An executable `name` in `directory` (put first on PATH by the test)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def real_tool(name: str) -> str:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and "fake" not in folder:
            return str(candidate)
    raise RuntimeError(f"{name} is not installed")
