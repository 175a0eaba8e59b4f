"""Throughput of the ORM broker: enqueue rate and end-to-end rate of no-op and 10 ms tasks with
2 workers, beside the bare cost of the same calls in one process.

    .venv/bin/python bench/queue.py                     # SQLite (a scratch file)
    .venv/bin/python bench/queue.py --postgres          # PostgreSQL (scratch database pastq_bench)
    .venv/bin/python bench/queue.py --tasks 3000 --workers 2

For each kind of task: "bare" calls the function N times in this process; "enqueue" is the rate
at which N tasks are put on the queue (no cluster running); "drain" is the rate at which a
qcluster of --workers workers empties that full queue (every task run, its result saved and
acknowledged); "end-to-end" is N divided by the time from the first enqueue until the queue is
empty again, enqueueing while the warm cluster consumes. e2e/bare says what the queue costs.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would
# shadow the standard library's `queue`: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


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
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=0,
                        help="workers of the cluster (default: the production default, one "
                             "per queue plus one)")
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="pastq-bench-")
    url = scratch_database(args.postgres, var)
    env = {**os.environ, "DATABASE_URL": url, "PASTQ_VAR_DIR": var, "DEBUG": "on",
           "LOG_LEVEL": "WARNING"}
    if args.workers:
        env["PASTQ_WORKERS"] = str(args.workers)
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

    def start_cluster():
        return subprocess.Popen([*manage, "qcluster"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_cluster(cluster):
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)

    kinds = [
        ("django-q no-op", tasks.noop, lambda: async_task("bench.tasks.noop")),
        ("django-q 10 ms", tasks.sleep_10ms, lambda: async_task("bench.tasks.sleep_10ms")),
        ("pastq job no-op", tasks.job_noop.__wrapped__, lambda: enqueue("bench.tasks.job_noop")),
        ("pastq job 10 ms", tasks.job_sleep_10ms.__wrapped__,
         lambda: enqueue("bench.tasks.job_sleep_10ms")),
    ]
    database = "PostgreSQL" if args.postgres else "SQLite"
    from django.conf import settings

    workers = args.workers or len(settings.PASTQ_QUEUES) + 1
    print(f"{database}, {args.tasks} tasks on one queue, a cluster of {workers} workers "
          f"serving every queue (one queue may use {workers - len(settings.PASTQ_QUEUES) + 1})")
    print(f"{'task':<18}{'bare/s':>12}{'enqueue/s':>11}{'drain/s':>9}{'end-to-end/s':>14}"
          f"{'e2e/bare':>10}")
    for name, function, send in kinds:
        started = time.perf_counter()
        for _ in range(args.tasks):
            function()
        bare = args.tasks / (time.perf_counter() - started)

        # Enqueue with no cluster running, then drain the full queue: from the first task
        # acknowledged to the last, so the cluster's start-up is not counted.
        started = time.perf_counter()
        for _ in range(args.tasks):
            send()
        enqueue_rate = args.tasks / (time.perf_counter() - started)
        cluster = start_cluster()
        while OrmQ.objects.count() == args.tasks:
            time.sleep(0.005)
        first = time.perf_counter()
        while OrmQ.objects.exists():
            time.sleep(0.01)
        drain = (args.tasks - 1) / (time.perf_counter() - first)

        # End to end: enqueue while the (warm) cluster consumes, until the queue is empty.
        started = time.perf_counter()
        for _ in range(args.tasks):
            send()
        while OrmQ.objects.exists():
            time.sleep(0.01)
        end_to_end = args.tasks / (time.perf_counter() - started)
        stop_cluster(cluster)
        print(f"{name:<18}{bare:>12,.0f}{enqueue_rate:>11,.0f}{drain:>9,.0f}{end_to_end:>14,.0f}"
              f"{end_to_end / bare:>10.3f}")

if __name__ == "__main__":
    main()
