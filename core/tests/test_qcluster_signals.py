"""Stopping a cluster: django-q2's re-entrant signal handler (reproduced), and our qcluster
stopping on SIGINT and SIGTERM arriving together, at every moment of its life."""

import multiprocessing
import os
import signal
import threading
import time

import pytest
from django_q.cluster import Cluster

from core.jobs.cluster import PastqCluster
from core.jobs.models import ClusterPresence, JobRun
from core.tests.conftest import wait_for

SLEEP = "core.tests.jobs_for_tests.sleep_for"


class _AliveSentinel:
    """Stands in for the sentinel process: alive, and joined at once."""

    def is_alive(self):
        return True

    def join(self, timeout=None):
        return None


@pytest.fixture
def restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def _handler_returns(cluster, seconds=2.0) -> bool:
    """Whether cluster.sig_handler returns while the stop Event's lock is held, as it is when
    a second signal interrupts the first handler inside Event.set()."""
    event = multiprocessing.Event()
    cluster.stop_event, cluster.start_event = event, multiprocessing.Event()
    cluster.sentinel = _AliveSentinel()
    event._cond.acquire()  # the first handler is inside stop_event.set()
    try:
        thread = threading.Thread(target=cluster.sig_handler, args=(signal.SIGTERM, None),
                                  daemon=True)
        thread.start()
        thread.join(seconds)
        return not thread.is_alive()
    finally:
        event._cond.release()
        thread.join(5)


def test_django_q_s_handler_blocks_when_a_second_signal_interrupts_the_first(
        restore_signal_handlers):
    """The bug: the handler stops the cluster by setting a multiprocessing Event; a signal
    arriving while the first handler holds the Event's lock runs the handler again, which
    waits for that lock for ever (in the real process, the lock its own interrupted frame
    holds: "stopping." twice in the log, then nothing)."""
    assert not _handler_returns(Cluster())


def test_our_handler_ignores_a_second_signal(restore_signal_handlers):
    cluster = PastqCluster()
    cluster._stopping = True  # the first signal is being handled
    assert _handler_returns(cluster)


def _group_gone(process) -> bool:
    process.poll()  # reap the qcluster process itself: a zombie still counts in its group
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def _interrupt_like_a_terminal_and_a_manager(process) -> float:
    """SIGINT (Ctrl-C) and SIGTERM (a process manager) to the qcluster process at once; the
    seconds until every process of its group has ended."""
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    wait_for(lambda: _group_gone(process), timeout=15, interval=0.1,
             what="every process of the cluster to end")
    return time.monotonic() - started


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("moment", ["starting", "idle", "running a job"])
def test_sigint_and_sigterm_together_stop_every_process_within_15s(qcluster, moment):
    for attempt in range(2):
        process = qcluster(f"cluster-{attempt}")
        if moment == "starting":
            time.sleep(0.3)
        else:
            wait_for(lambda p=process: ClusterPresence.objects.filter(
                pid=p.pid, status="running").exists(), timeout=30, what="the cluster")
        if moment == "running a job":
            from core.jobs import enqueue

            enqueue(SLEEP, args=[60])
            wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="running").exists(),
                     timeout=30, what="the job to start")
        took = _interrupt_like_a_terminal_and_a_manager(process)
        assert took < 15, f"{moment}: stopped after {took:.1f}s"
        if moment == "running a job":
            run = JobRun.objects.get(job=SLEEP, outcome="interrupted")
            assert "handed back" in run.error
            JobRun.objects.all().delete()
            from django_q.models import OrmQ

            OrmQ.objects.all().delete()
        if moment != "starting":
            assert ClusterPresence.objects.get(pid=process.pid).status == "stopped"
