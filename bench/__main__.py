"""`make bench` (`python -m bench [NAME ...] [--postgres]`): run the benchmarks, each printing
its figures beside its limit. Results are recorded in bench/RESULTS.md.

Names: seed, queue, lease, embedders, processing, analytics, analytics_questions, review,
reports, notifications, backup (default: all). --postgres runs those that take it on PostgreSQL
(a scratch database pastq_bench, bench_bk_* for backup, on BENCH_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432).
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "seed": ["seed.py"],
    "queue": ["queue.py"],
    "lease": ["lease.py"],
    "embedders": ["embedders.py"],
    "processing": ["processing.py"],
    "analytics": ["analytics.py"],
    "analytics_questions": ["analytics_questions.py"],
    "review": ["review.py"],
    "reports": ["reports.py"],
    "notifications": ["notifications.py"],
    "backup": ["backup.py"],
}
TAKES_POSTGRES = {"queue", "lease", "processing", "analytics", "analytics_questions", "review",
                  "reports", "notifications", "backup"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or BENCHMARKS:
        command = [sys.executable, str(HERE / BENCHMARKS[name][0])]
        if args.postgres and name in TAKES_POSTGRES:
            command.append("--postgres")
        print(f"\n== {name}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command).returncode:
            failed.append(name)
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
