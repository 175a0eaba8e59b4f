"""How fast seed_data loads activity: target 100,000 attempts well under a minute on SQLite.

Runs init_db and seed_data in a throw-away var/ directory (or against DATABASE_URL when set:
careful, that database is written to) and prints attempts per second.

    .venv/bin/python bench/seed.py [--users 240 --days 60]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=240)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pastq-bench-") as var:
        env = dict(os.environ, DEBUG="on", PASTQ_VAR_DIR=var)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "init_db"], env=env, check=True, capture_output=True)
        subprocess.run([*manage, "seed_data", "--only", "questions"], env=env, check=True,
                       capture_output=True)
        subprocess.run([*manage, "seed_data", "--only", "users", "--users", str(args.users)],
                       env=env, check=True, capture_output=True)
        started = time.perf_counter()
        done = subprocess.run(
            [*manage, "seed_data", "--only", "activity", "--users", str(args.users),
             "--days", str(args.days), "--end-date", "2024-06-30"],
            env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    attempts = int(re.search(r"(\d+) attempts \(seed", done.stdout).group(1))
    database = os.environ.get("DATABASE_URL", "sqlite (file, WAL)").split("@")[-1]
    print(f"seed_data activity on {database}: {attempts:,} attempts in {seconds:.1f}s "
          f"= {attempts / seconds:,.0f} attempts/s (whole command, including start-up)")


if __name__ == "__main__":
    main()
