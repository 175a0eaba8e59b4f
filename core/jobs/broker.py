"""django-q2's ORM broker, with three changes (configured as Q_CLUSTER["broker_class"]):

1. Per-queue keys and fair taking. Tasks are stored under their queue's name. A cluster takes
   work only for a worker that is free, oldest first, and while a queue already has work running
   it leaves one free worker for each other queue that has none: so on the default single
   cluster a 30-minute backup and an analytics backfill never starve the notification
   dispatcher (a job due on an idle queue starts at the next poll).
2. Leases. A taken task is locked for `PASTQ_LEASE_SECONDS` (not for several time limits, as
   django-q's `retry` would need to be); the running job renews the lock (core.jobs.execution),
   so a task whose worker died is delivered again within a lease, whatever its length.
3. Signatures after a key rotation. django-q's pusher drops, with only a log line, a task whose
   signature it cannot verify. Here a task signed with a key in `SECRET_KEY_FALLBACKS` is
   re-signed with the current key and runs; one signed with an unknown key is taken out of the
   queue, recorded as a failed JobRun and announced (signals.task_undeliverable): never lost
   silently.
"""

from __future__ import annotations

import datetime
import logging
import socket
from time import sleep

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q import core_signing
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import BadSignature, PickleSerializer, SignedPackage

import core.jobs.queues as queues
import core.jobs.signals as signals
from core.jobs.definitions import job_spec
from core.jobs.models import JobRun

logger = logging.getLogger("pastq.jobs")


class PastqBroker(ORM):
    def __init__(self, list_key: str | None = None):
        super().__init__(list_key=list_key)
        self.queues = queues.served_queues(self.list_key)
        # Tasks this process took and that may still be running: ORM id → queue.
        self._taken: dict[int, str] = {}

    # --- Storing ------------------------------------------------------------------------------

    def enqueue(self, task: str, not_before: datetime.datetime | None = None) -> int:
        """Store a signed package under its queue's key, visible from `not_before` (a retry's
        backoff) or at once."""
        key = self.list_key if self.list_key in settings.PASTQ_QUEUES else self._queue_of(task)
        now = timezone.now()
        return OrmQ.objects.using(Conf.ORM).create(
            key=key, payload=task, lock=max(now, not_before) if not_before else now).pk

    @staticmethod
    def _queue_of(payload: str) -> str:
        """The queue of a package sent without one (django-q's own admin resubmits, hand-made
        schedules): its job's queue, else the first queue, so it still runs somewhere."""
        try:
            package = SignedPackage.loads(payload)
        except (BadSignature, TypeError, ValueError):
            return queues.queue_names()[0]
        meta = package.get("pastq") or {}
        if meta.get("queue"):
            return meta["queue"]
        try:
            return job_spec(str(package.get("func"))).queue
        except ValueError:
            return queues.queue_names()[0]

    # --- Taking -------------------------------------------------------------------------------

    def timeout(self, task=None) -> datetime.datetime:
        return timezone.now() + datetime.timedelta(seconds=queues.lease_seconds())

    def _running_by_queue(self, now) -> dict[str, int]:
        """How many tasks this cluster took are still leased (running), per queue: one query,
        none when it took nothing."""
        if self._taken:
            alive = set(OrmQ.objects.using(Conf.ORM).filter(
                pk__in=list(self._taken), lock__gt=now).values_list("pk", flat=True))
            self._taken = {pk: q for pk, q in self._taken.items() if pk in alive}
        running = dict.fromkeys(self.queues, 0)
        for queue in self._taken.values():
            running[queue] = running.get(queue, 0) + 1
        return running

    def _allowances(self, running: dict[str, int]) -> tuple[int, dict[str, int], int]:
        """The free workers; of them, one kept for each queue with nothing running, and the
        rest shared by every queue, oldest task first."""
        free = max(0, Conf.WORKERS - sum(running.values()))
        idle = [q for q in self.queues if not running.get(q)]
        kept = dict.fromkeys(idle, 1) if free else {}
        return free, kept, max(0, free - len(idle))

    def dequeue(self):
        now = timezone.now()
        self.get_connection()  # closes a stale connection first, as django-q's broker does
        running = self._running_by_queue(now)
        free, kept, shared = self._allowances(running)
        takeable = [q for q in self.queues if kept.get(q) or shared]
        candidates = list(
            OrmQ.objects.using(Conf.ORM).filter(key__in=takeable, lock__lt=now)
            .order_by("id")[:free]) if takeable else []
        taken = []
        for task in candidates:
            if len(taken) == free:
                break
            if kept.get(task.key):
                kept[task.key] -= 1
            elif shared:
                shared -= 1
            else:
                continue
            # The optimistic claim of django-q's broker: another cluster may be faster.
            if OrmQ.objects.using(Conf.ORM).filter(id=task.id, lock=task.lock).update(
                    lock=self.timeout()):
                payload = self._verified(task)
                if payload is not None:
                    self._taken[task.pk] = task.key
                    taken.append((task.pk, payload))
        if not taken:
            # Nothing to take. While our jobs run a worker may free up any moment: look again
            # soon; with nothing running, spare the database.
            sleep(min(Conf.POLL, 0.01) if self._taken else Conf.POLL)
        return taken or None

    def _verified(self, task: OrmQ) -> str | None:
        """The payload, re-signed with the current key when a fallback key signed it; None (the
        task recorded and removed) when no key we know signed it."""
        try:
            SignedPackage.loads(task.payload)
            return task.payload
        except (BadSignature, TypeError):
            pass
        for key in settings.SECRET_KEY_FALLBACKS:
            try:
                package = core_signing.loads(task.payload, key=key, salt=Conf.PREFIX,
                                             serializer=PickleSerializer)
            except (BadSignature, TypeError):
                continue
            logger.warning("event=resigned task_id=%s: signed with a fallback key",
                           package.get("id"))
            return SignedPackage.dumps(package)
        self._undeliverable(task)
        return None

    @staticmethod
    def _undeliverable(task: OrmQ) -> None:
        now = timezone.now()
        # The record and the removal from the queue commit together (a crash between them would
        # record it again on the next delivery); the announcement (an alert, an email) follows
        # the commit.
        with transaction.atomic():
            run = JobRun.objects.create(
                job="(unverifiable task)", queue=task.key, chain=f"orm-{task.pk}", attempt=1,
                kwargs={"payload": task.payload}, host=socket.gethostname(), started_at=now,
                finished_at=now, duration_ms=0, outcome=JobRun.Outcome.FAILED,
                identity=f"unverifiable:{task.key}",
                error="Its signature matches neither SECRET_KEY nor any of SECRET_KEY_FALLBACKS "
                      "(the key was rotated without keeping the old one, or another deployment "
                      "queued it). It was taken out of the queue; its signed payload is kept here.")
            OrmQ.objects.using(Conf.ORM).filter(pk=task.pk).delete()
        logger.error("event=undeliverable queue=%s orm_id=%s", task.key, task.pk)
        signals.task_undeliverable.send(sender=PastqBroker, run=run)
