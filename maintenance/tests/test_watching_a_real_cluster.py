"""health_check watching a real qcluster: a busy cluster is not taken for a dead one, and a
dead one is reported (exit status, one email) from outside it, within seconds."""

import os
import signal

import pytest

from core.jobs import enqueue
from core.jobs.models import ClusterPresence, JobRun
from core.tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLEEP = "core.tests.jobs_for_tests.sleep_for"


def test_a_busy_cluster_is_alive_and_a_killed_one_is_reported_once(
        qcluster, run_command, settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    # The vector index is the file store, as on a fresh install (with DEBUG off the critical
    # Chroma check requires CHROMA_URL); this test is about the cluster.
    settings.DEBUG = True
    settings.PASTQ_PRESENCE_STALE_SECONDS = 5  # the cluster reports every second (conftest)
    process = qcluster()
    wait_for(lambda: ClusterPresence.objects.filter(status="running").exists(), timeout=30,
             what="the cluster")
    # Every worker busy with a long job: liveness does not need a free worker.
    enqueue(SLEEP, args=[30], queue="maintenance")
    enqueue(SLEEP, args=[30], queue="analytics")
    wait_for(lambda: JobRun.objects.filter(job=SLEEP, outcome="running").count() == 2,
             timeout=30, what="both workers busy")
    code, out, _ = run_command("health_check")
    assert code == 0, out
    assert not mailoutbox

    os.killpg(process.pid, signal.SIGKILL)  # the whole cluster dies at once, no goodbye
    process.wait()
    last_seen = ClusterPresence.objects.get().last_seen_at
    wait_for(lambda: run_command("health_check")[0] == 1, timeout=15, interval=1,
             what="health_check to notice")
    assert len(mailoutbox) == 1
    assert "No live qcluster serves" in mailoutbox[0].subject
    assert f"{last_seen:%Y-%m-%d %H:%M}" in mailoutbox[0].subject
    code, out, _ = run_command("health_check")
    assert code == 1 and "stopped reporting" in out
    assert len(mailoutbox) == 1  # one email per outage, not one per check

    qcluster("again")
    wait_for(lambda: run_command("health_check")[0] == 0, timeout=30, interval=1,
             what="the new cluster to be seen")
    from maintenance.models import OpsAlert

    assert OpsAlert.objects.get(key="cluster-down:pastq").resolved_at is not None
