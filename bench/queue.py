"""Throughput of the ORM broker: enqueue rate and end-to-end rate of no-op and 10 ms tasks with
2 workers, beside the bare cost of the same calls in one process.

    .venv/bin/python bench/queue.py                     # SQLite (a scratch file)
    .venv/bin/python bench/queue.py --postgres          # PostgreSQL (scratch database pastq_bench)
    .venv/bin/python bench/queue.py --tasks 3000 --workers 2

For each kind of task: "bare" calls the function N times in this process; "enqueue" is the rate
at which N tasks are put on the queue; "end-to-end" is N divided by the time from the first
enqueue until the queue is empty again (every task run, its result saved and acknowledged) with
a qcluster of --workers workers already running. Ratios are end-to-end / bare.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scratch_database(postgres: bool, var: str) -> str:
    if not postgres:
        return f"sqlite:///{var}/bench.sqlite3"
    base = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    for sql in ("DROP DATABASE IF EXISTS pastq_bench", "CREATE DATABASE pastq_bench"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)
    return f"{base}/pastq_bench"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="pastq-bench-")
    url = scratch_database(args.postgres, var)
    env = {**os.environ, "DATABASE_URL": url, "PASTQ_VAR_DIR": var, "DEBUG": "on",
           "PASTQ_WORKERS": str(args.workers), "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    subprocess.run([*manage, "createcachetable"], env=env, check=True)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pastq.settings")
    import django

    django.setup()
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    from bench import tasks
    from core.jobs import enqueue

    cluster = subprocess.Popen([*manage, "qcluster"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)  # the cluster starts its workers
        kinds = [
            ("django-q no-op", tasks.noop, lambda: async_task("bench.tasks.noop")),
            ("django-q 10 ms", tasks.sleep_10ms, lambda: async_task("bench.tasks.sleep_10ms")),
            ("pastq job no-op", tasks.job_noop.__wrapped__,
             lambda: enqueue("bench.tasks.job_noop")),
            ("pastq job 10 ms", tasks.job_sleep_10ms.__wrapped__,
             lambda: enqueue("bench.tasks.job_sleep_10ms")),
        ]
        database = "PostgreSQL" if args.postgres else "SQLite"
        print(f"{database}, {args.tasks} tasks, {args.workers} workers")
        print(f"{'task':<18}{'bare/s':>10}{'enqueue/s':>12}{'end-to-end/s':>15}{'ratio':>8}")
        for name, function, send in kinds:
            started = time.perf_counter()
            for _ in range(args.tasks):
                function()
            bare = args.tasks / (time.perf_counter() - started)

            started = time.perf_counter()
            for _ in range(args.tasks):
                send()
            enqueued = time.perf_counter()
            while OrmQ.objects.exists():
                time.sleep(0.02)
            finished = time.perf_counter()
            enqueue_rate = args.tasks / (enqueued - started)
            end_to_end = args.tasks / (finished - started)
            print(f"{name:<18}{bare:>10,.0f}{enqueue_rate:>12,.0f}{end_to_end:>15,.0f}"
                  f"{end_to_end / bare:>8.2f}")
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)


if __name__ == "__main__":
    main()
