"""A scratch database for a benchmark run as a script: SQLite in a temporary folder, or a
PostgreSQL database dropped and created on BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432); migrated (or set up with init_db), Django set up in this
process, and removed at the end unless kept."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _postgres_base() -> str:
    return os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def _psql(sql: str) -> None:
    subprocess.run(["psql", f"{_postgres_base()}/postgres", "-qc", sql], check=True)


@contextlib.contextmanager
def scratch_django(*, postgres: bool, name: str = "pastq_bench", keep: bool = False,
                   reuse: str | None = None, init_db: bool = False):
    """Yield the scratch database's URL with Django set up on it. `reuse`: a database URL an
    earlier run loaded (neither created, migrated nor dropped). `init_db`: set it up with
    init_db (the catalogue included) instead of a bare migrate."""
    var = tempfile.mkdtemp(prefix="pastq-bench-")
    if reuse:
        url = reuse
    elif postgres:
        _psql(f"DROP DATABASE IF EXISTS {name}")
        _psql(f"CREATE DATABASE {name}")
        url = f"{_postgres_base()}/{name}"
    else:
        url = f"sqlite:///{var}/bench.sqlite3"
    env = {**os.environ, "DATABASE_URL": url, "PASTQ_VAR_DIR": var, "DEBUG": "on",
           "LOG_LEVEL": "WARNING", "CHROMA_URL": "", "GEMINI_API_KEY": ""}
    os.environ.update(env)
    if not reuse:
        command = ["init_db", "--no-input", "-v0"] if init_db else ["migrate", "-v0"]
        subprocess.run([sys.executable, str(ROOT / "manage.py"), *command], env=env,
                       check=True, stdout=subprocess.DEVNULL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pastq.settings")
    import django

    django.setup()
    try:
        yield url
    finally:
        from django.db import connections

        connections.close_all()
        if keep or reuse:
            print(f"kept: {url}")
        else:
            shutil.rmtree(var, ignore_errors=True)
            if postgres:
                _psql(f"DROP DATABASE IF EXISTS {name}")
