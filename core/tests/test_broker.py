"""The broker (core/jobs/broker.py) without a cluster: per-queue keys, fair taking, leases,
delayed tasks, and tasks signed with a rotated key."""

import datetime

import pytest
from django.utils import timezone
from django_q import core_signing
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import PickleSerializer, SignedPackage

from core.jobs.broker import PastqBroker
from core.jobs.models import JobRun
from maintenance.models import OpsAlert

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_broker(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 0)
    monkeypatch.setattr(Conf, "WORKERS", 3)


def put(queue: str, n: int = 1, **package) -> list[int]:
    broker = PastqBroker(list_key=queue)
    return [broker.enqueue(SignedPackage.dumps({"id": f"{queue}-{i}", "func": "x", **package}))
            for i in range(n)]


def take_all(broker: PastqBroker) -> list[str]:
    """What the broker gives a cluster until it gives nothing: the queues, in order."""
    taken = []
    while (batch := broker.dequeue()) is not None:
        taken += [OrmQ.objects.get(pk=pk).key for pk, _ in batch]
    return taken


def test_one_cluster_keeps_a_worker_for_each_idle_queue():
    put("analytics", 5)
    put("notifications", 1)
    broker = PastqBroker(list_key="pastq")  # the default cluster: every queue
    # 3 workers, 4 queues: analytics gets one, notifications its own; the third stays free for
    # question_processing or maintenance, should work arrive there.
    assert take_all(broker) == ["analytics", "notifications"]
    put("maintenance", 1)
    assert take_all(broker) == ["maintenance"]
    assert take_all(broker) == []  # every worker busy


def test_a_queue_takes_more_workers_when_no_other_queue_needs_one(monkeypatch):
    monkeypatch.setattr(Conf, "WORKERS", 6)
    put("analytics", 5)
    # 6 workers: one kept for each of the three idle queues, three for analytics.
    assert take_all(PastqBroker(list_key="pastq")) == ["analytics"] * 3


def test_a_routed_cluster_takes_only_its_queue_and_up_to_its_workers():
    put("analytics", 5)
    put("notifications", 2)
    assert take_all(PastqBroker(list_key="analytics")) == ["analytics"] * 3
    assert OrmQ.objects.filter(key="notifications", lock__lte=timezone.now()).count() == 2


def test_a_task_whose_lease_ran_out_frees_its_worker_and_is_taken_again():
    [pk] = put("analytics", 1)
    broker = PastqBroker(list_key="analytics")
    assert take_all(broker) == ["analytics"]
    row = OrmQ.objects.get(pk=pk)
    assert row.lock > timezone.now() + datetime.timedelta(seconds=30)  # the lease (45 s)
    OrmQ.objects.filter(pk=pk).update(lock=timezone.now() - datetime.timedelta(seconds=1))
    assert take_all(broker) == ["analytics"]  # its worker died: delivered again


def test_a_delayed_task_is_invisible_until_its_time():
    broker = PastqBroker(list_key="analytics")
    later = timezone.now() + datetime.timedelta(minutes=5)
    broker.enqueue(SignedPackage.dumps({"id": "later", "func": "x"}), not_before=later)
    assert take_all(broker) == []
    OrmQ.objects.update(lock=timezone.now() - datetime.timedelta(seconds=1))
    assert take_all(broker) == ["analytics"]


def test_a_task_sent_without_a_queue_goes_to_its_jobs_queue():
    PastqBroker(list_key="pastq").enqueue(SignedPackage.dumps(
        {"id": "resubmitted", "func": "core.tests.jobs_for_tests.session_insert_slowly"}))
    assert OrmQ.objects.get().key == "notifications"


def _signed_with(key: str, package: dict) -> str:
    return core_signing.dumps(package, key=key, salt=Conf.PREFIX, serializer=PickleSerializer)


def test_a_task_signed_with_a_fallback_key_is_resigned_and_runs(settings):
    settings.SECRET_KEY_FALLBACKS = ["the-old-key"]
    OrmQ.objects.create(key="analytics", payload=_signed_with("the-old-key", {"id": "old"}),
                        lock=timezone.now())
    [(pk, payload)] = PastqBroker(list_key="analytics").dequeue()
    assert SignedPackage.loads(payload) == {"id": "old"}  # verifies with the current key
    assert not JobRun.objects.exists()


def test_a_task_signed_with_an_unknown_key_is_recorded_and_alerted_never_lost(
        settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SECRET_KEY_FALLBACKS = []
    payload = _signed_with("a-key-nobody-kept", {"id": "orphan"})
    OrmQ.objects.create(key="analytics", payload=payload, lock=timezone.now())
    assert PastqBroker(list_key="analytics").dequeue() is None
    assert not OrmQ.objects.exists()
    run = JobRun.objects.get()
    assert run.outcome == "failed" and run.kwargs == {"payload": payload}
    assert "SECRET_KEY_FALLBACKS" in run.error
    assert OpsAlert.objects.get(resolved_at__isnull=True).key == "task-undeliverable:analytics"
    assert len(mailoutbox) == 1


def test_never_more_tasks_than_free_workers_even_with_every_queue_waiting(monkeypatch):
    monkeypatch.setattr(Conf, "WORKERS", 3)
    for queue in ("question_processing", "analytics", "maintenance", "notifications"):
        put(queue, 2)
    taken = take_all(PastqBroker(list_key="pastq"))
    assert len(taken) == 3 and len(set(taken)) == 3  # three queues, one task each
