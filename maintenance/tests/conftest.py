"""Builders shared by the maintenance app's tests: cluster presences, queued tasks, run records,
and staff users holding exactly the permissions a test names."""

import datetime
import uuid
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_q.models import OrmQ

from core.jobs import enqueue
from core.jobs.models import ClusterPresence, JobRun

PAGE = "/admin/operations/"
VIEW = "maintenance.view_operations"
RUN = "maintenance.run_job"


def make_presence(*, queues=None, age_s: float = 1, status="running", name="pastq",
                  host="worker-1", pid=4242, up_s: float = 600, **fields) -> ClusterPresence:
    """A cluster as its sentinel reports it: last seen `age_s` ago (stale past
    PASTQ_PRESENCE_STALE_SECONDS), serving `queues` (default: every queue)."""
    now = timezone.now()
    last_seen = now - datetime.timedelta(seconds=age_s)
    return ClusterPresence.objects.create(
        cluster_id=uuid.uuid4(), name=name,
        queues=list(settings.PASTQ_QUEUES) if queues is None else queues, host=host, pid=pid,
        status=status, started_at=last_seen - datetime.timedelta(seconds=up_s),
        last_seen_at=last_seen, **{"workers": 5, **fields})


def stale_age() -> float:
    return settings.PASTQ_PRESENCE_STALE_SECONDS + 60


def make_run(job="maintenance.tasks.job_records_prune", outcome=JobRun.Outcome.FAILED,
             **fields) -> JobRun:
    now = timezone.now()
    chain = fields.pop("chain", None) or uuid.uuid4().hex
    defaults = dict(job=job, queue="maintenance", chain=chain, attempt=1, started_at=now,
                    finished_at=now, duration_ms=12, outcome=outcome, error="boom")
    return JobRun.objects.create(**{**defaults, **fields})


def grant(user, *perms: str):
    """Give `user` the permissions named "app_label.codename"; returns it fresh from the
    database (Django caches permissions on the instance)."""
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def queued(django_capture_on_commit_callbacks):
    """enqueue() with the test's transaction standing in for a commit: returns the OrmQ row."""

    def put(path="maintenance.tasks.job_records_prune", **options) -> OrmQ:
        with django_capture_on_commit_callbacks(execute=True):
            enqueue(path, **options)
        return OrmQ.objects.order_by("-id").first()

    return put


@pytest.fixture
def staff_user(django_user_model):
    """A staff member with no permission at all."""
    return django_user_model.objects.create_user(email="staff@example.com", password="pw",
                                                 is_staff=True)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def viewer_client(client, staff_user):
    """Staff who may look at the operations page but not act."""
    client.force_login(grant(staff_user, VIEW))
    return client


@pytest.fixture
def operator_client(client, staff_user):
    """Staff who may look and act."""
    client.force_login(grant(staff_user, VIEW, RUN))
    return client


class _RowCells(HTMLParser):
    def __init__(self, row_id: str):
        super().__init__()
        self.row_id, self.inside, self.cells = row_id, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "tr" and dict(attrs).get("id") == self.row_id:
            self.inside = True
        elif self.inside and tag in ("td", "th"):
            self.cells.append("")
        elif self.inside and tag == "br" and self.cells:
            self.cells[-1] += " "

    def handle_endtag(self, tag):
        if tag == "tr":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.cells:
            self.cells[-1] += data


def row_cells(html: str, row_id: str) -> list[str]:
    """The text of each cell of the table row `<tr id=row_id>`, whitespace collapsed."""
    parser = _RowCells(row_id)
    parser.feed(html)
    assert parser.cells, f"no row with id {row_id!r} on the page"
    return [" ".join(cell.split()) for cell in parser.cells]
