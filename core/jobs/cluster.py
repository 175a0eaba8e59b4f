"""django-q2's cluster, hardened. `manage.py qcluster` (core/management/commands/qcluster.py)
runs this instead of django-q2's own.

What it changes, each for a trap met in django-q2 1.11 (docs/job-system.md tells the stories):

- Signals. django-q's handler in the qcluster process calls `stop()`, which blocks on a
  multiprocessing Event; a second signal arriving meanwhile (a terminal's Ctrl-C reaches the
  whole process group, a process manager's SIGTERM comes too) runs the handler again inside
  itself and deadlocks on the Event's lock: the cluster never stops. Here a second signal is
  ignored. The sentinel's own SIGTERM (a process manager signals the whole group) only sets a
  flag, for the same reason, and starts the graceful stop below.
- Presence. The sentinel writes a `ClusterPresence` row every `PASTQ_PRESENCE_SECONDS`,
  however busy the workers are: liveness never waits for a free worker.
- Wedged workers. A worker killed while idle (the out-of-memory killer) dies holding the lock of
  the cluster's multiprocessing task queue; every other worker then waits for it for ever, and
  django-q's replacement worker too. The sentinel notices tasks waiting in that queue while
  every worker has been idle for `PASTQ_WEDGE_SECONDS`, and restarts the workers and the pusher
  around a new queue. Tasks that were in the old one come back when their leases run out.
- Stopping. Workers finish their current job for up to `PASTQ_STOP_GRACE_SECONDS`, then are
  sent SIGTERM, which interrupts the job and hands its task back to the queue
  (core.jobs.execution), so one Ctrl-C stops everything within seconds, not after a
  30-minute backup.
- The scheduler runs every `PASTQ_SCHEDULER_SECONDS` (django-q hard-codes 30).
"""

from __future__ import annotations

import logging
import signal
import socket
import uuid
from multiprocessing import Event, current_process
from time import monotonic, sleep

from django import db
from django.conf import settings
from django.utils import timezone
from django_q.cluster import Cluster, Sentinel, get_mp_context
from django_q.conf import Conf
from django_q.humanhash import humanize
from django_q.monitor import monitor
from django_q.pusher import pusher
from django_q.queues import Queue
from django_q.scheduler import scheduler
from django_q.status import Stat

import core.jobs.queues as queues
from core.jobs.models import ClusterPresence

logger = logging.getLogger("pastq.jobs")

_STATUS = {Conf.STARTING: ClusterPresence.Status.STARTING,
           Conf.IDLE: ClusterPresence.Status.RUNNING,
           Conf.WORKING: ClusterPresence.Status.RUNNING,
           Conf.STOPPING: ClusterPresence.Status.STOPPING,
           Conf.STOPPED: ClusterPresence.Status.STOPPED}


class PastqCluster(Cluster):
    """The qcluster process: starts the sentinel and stops it on the first signal."""

    def __init__(self, broker=None):
        self._stopping = False
        super().__init__(broker)

    def sig_handler(self, signum, frame):
        if self._stopping:
            logger.info("%s received again while stopping: ignored.",
                        Conf.SIGNAL_NAMES.get(signum, signum))
            return
        self._stopping = True
        super().sig_handler(signum, frame)

    def start(self) -> int:
        # django-q's Cluster.start, with this module's sentinel.
        self.stop_event = Event()
        self.start_event = Event()
        self.sentinel = get_mp_context().Process(
            target=PastqSentinel, name=f"Process-{uuid.uuid4().hex}",
            args=(self.stop_event, self.start_event, self.cluster_id, self.broker,
                  self.timeout),
        )
        self.sentinel.start()
        logger.info("Q Cluster %s starting.", self.name)
        while self.start_event and not self.start_event.is_set():
            if not self.sentinel.is_alive():
                if self.sentinel.exitcode == 0:
                    break  # stopped by a signal while starting
                raise RuntimeError(f"Q Cluster {self.name} failed to start: sentinel exited "
                                   f"with code {self.sentinel.exitcode}")
            sleep(0.1)
        return self.pid


def _pusher_process(task_queue, event, broker):
    # The pusher keeps no state a stop could lose: SIGTERM ends it at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pusher(task_queue, event, broker)


def _monitor_process(result_queue, broker):
    # The monitor saves results and acknowledges tasks: it drains its queue until the
    # sentinel's STOP, even when a process manager signals the whole group.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    monitor(result_queue, broker)


class PastqSentinel(Sentinel):
    def __init__(self, stop_event, start_event, cluster_id, broker=None, timeout=None,
                 start=True):
        self._terminate = False
        self._wedged_since: float | None = None
        self.recoveries = 0
        self._last_presence = 0.0
        super().__init__(stop_event, start_event, cluster_id, broker, timeout, start=False)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if start:
            self.start()

    def _on_sigterm(self, signum, frame):
        # Only a flag: calling Event.set() from a handler can deadlock (see the module's doc).
        self._terminate = True

    # --- Processes ----------------------------------------------------------------------------

    def spawn_pusher(self):
        return self.spawn_process(_pusher_process, self.task_queue, self.event_out, self.broker)

    def spawn_monitor(self):
        return self.spawn_process(_monitor_process, self.result_queue, self.broker)

    def start(self):
        self.broker.ping()
        self.spawn_cluster()
        self._write_presence(force=True)
        self.guard()

    def _stop_requested(self) -> bool:
        return self._terminate or self.stop_event.is_set()

    def guard(self):
        # django-q's guard loop, plus presence, wedge detection and a configurable scheduler
        # tick; it sleeps instead of waiting on the stop Event (see _on_sigterm).
        logger.info("%s guarding cluster %s [%s]", current_process().name,
                    humanize(self.cluster_id.hex), self.queue_name())
        self.start_event.set()
        Stat(self).save()
        logger.info("Q Cluster %s [%s] running.", humanize(self.cluster_id.hex),
                    self.queue_name())
        counter = 0.0
        cycle = Conf.GUARD_CYCLE
        while True:
            for process in list(self.pool):
                with process.timer.get_lock():
                    if not process.is_alive() or process.timer.value == 0:
                        self.reincarnate(process)
                        continue
                    if process.timer.value > 0:
                        process.timer.value -= cycle
            if not self.monitor.is_alive():
                self.reincarnate(self.monitor)
            if not self.pusher.is_alive():
                self.reincarnate(self.pusher)
            self._recover_if_wedged()
            counter += cycle
            if counter >= settings.PASTQ_SCHEDULER_SECONDS and Conf.SCHEDULER:
                counter = 0.0
                scheduler(broker=self.broker)
            Stat(self).save()
            self._write_presence()
            if self._stop_requested():
                break
            sleep(cycle)
            if self._stop_requested():
                break
        self.stop()

    # --- Presence -----------------------------------------------------------------------------

    def _write_presence(self, *, force: bool = False, status: str | None = None) -> None:
        now_monotonic = monotonic()
        if not force and now_monotonic - self._last_presence < settings.PASTQ_PRESENCE_SECONDS:
            return
        self._last_presence = now_monotonic
        now = timezone.now()
        fields = {
            "name": Conf.CLUSTER_NAME, "queues": queues.served_queues(Conf.CLUSTER_NAME),
            "host": socket.gethostname(), "pid": self.parent_pid,
            "status": status or _STATUS.get(self.status(), ClusterPresence.Status.RUNNING),
            "last_seen_at": now, "workers": len(self.pool),
            "worker_pids": [p.pid for p in self.pool],
            "busy_workers": sum(1 for p in self.pool if p.timer.value > 0),
            "local_queue": self._local_queue_size(), "reincarnations": self.reincarnations,
            "recoveries": self.recoveries,
        }
        if fields["status"] == ClusterPresence.Status.STOPPED:
            fields["stopped_at"] = now
        try:
            db.close_old_connections()
            if not ClusterPresence.objects.filter(cluster_id=self.cluster_id).update(**fields):
                ClusterPresence.objects.create(cluster_id=self.cluster_id, started_at=now,
                                               **fields)
        except Exception:  # the database is down: the next cycle tries again
            logger.warning("Could not record the cluster's presence.", exc_info=True)

    def _local_queue_size(self) -> int:
        try:
            return self.task_queue.qsize()
        except NotImplementedError:
            return 0

    # --- Wedged workers -----------------------------------------------------------------------

    def _recover_if_wedged(self) -> None:
        idle = self.pool and all(p.timer.value == -1 for p in self.pool)
        if not (idle and self._local_queue_size()):
            self._wedged_since = None
            return
        self._wedged_since = self._wedged_since or monotonic()
        if monotonic() - self._wedged_since < settings.PASTQ_WEDGE_SECONDS:
            return
        logger.critical(
            "Cluster %s wedged: %s tasks waiting in its local queue while every worker has been "
            "idle for %ss (a worker died holding the queue's lock). Restarting the workers and "
            "the pusher; the waiting tasks come back when their leases run out.",
            humanize(self.cluster_id.hex), self._local_queue_size(),
            settings.PASTQ_WEDGE_SECONDS)
        self.pusher.kill()
        for process in self.pool:
            process.kill()
        for process in [self.pusher, *self.pool]:
            process.join(timeout=5)
        self.pool = []
        self.task_queue = Queue(maxsize=Conf.QUEUE_LIMIT) if Conf.QUEUE_LIMIT else Queue()
        if not Conf.SYNC:
            db.connections.close_all()
        for _ in range(self.pool_size):
            self.spawn_worker()
        self.pusher = self.spawn_pusher()
        self.recoveries += 1
        self._wedged_since = None
        self._write_presence(force=True)

    # --- Stopping -----------------------------------------------------------------------------

    def stop(self):
        name = current_process().name
        logger.info("%s stopping cluster processes", name)
        self._write_presence(force=True, status=ClusterPresence.Status.STOPPING)
        self.event_out.set()
        _wait(lambda: not self.pusher.is_alive(), 5)
        if self.pusher.is_alive():
            self.pusher.kill()
        for _ in self.pool:
            self.task_queue.put("STOP")  # each worker takes one after its current job
        _wait(lambda: not any(p.is_alive() for p in self.pool),
              settings.PASTQ_STOP_GRACE_SECONDS)
        busy = [p for p in self.pool if p.is_alive()]
        if busy:
            logger.warning("%s: %s workers still busy after %ss; interrupting their jobs "
                           "(their tasks go back to the queue).", name, len(busy),
                           settings.PASTQ_STOP_GRACE_SECONDS)
            for process in busy:
                process.terminate()
            _wait(lambda: not any(p.is_alive() for p in busy), 3)
            for process in busy:
                if process.is_alive():
                    process.kill()
        self.pool = []
        self.result_queue.put("STOP")
        _wait(lambda: not self.monitor.is_alive(), 5)
        if self.monitor.is_alive():
            self.monitor.kill()
        Stat(self).save()
        self._write_presence(force=True, status=ClusterPresence.Status.STOPPED)
        logger.info("%s stopped the cluster", name)


def _wait(predicate, seconds: float) -> None:
    deadline = monotonic() + seconds
    while not predicate() and monotonic() < deadline:
        sleep(0.1)
