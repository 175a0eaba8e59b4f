"""`manage.py qcluster`: django-q2's worker, hardened (core/jobs/cluster.py).

It takes the place of django-q2's own `qcluster` because `core` comes before `django_q` in
INSTALLED_APPS; same options."""

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django_q.management.commands.qcluster import Command as DjangoQCommand

from core.ai.vectors import vector_index_require_configuration
from core.jobs.cluster import PastqCluster


class Command(DjangoQCommand):
    help = (
        "Start a worker cluster: it runs queued and scheduled jobs. With PASTQ_QUEUE_ROUTING "
        "off one cluster serves every queue; with it on, name the queue: "
        "Q_CLUSTER_NAME=<queue> manage.py qcluster. One Ctrl-C (or SIGTERM) stops it: running "
        "jobs get PASTQ_STOP_GRACE_SECONDS to finish, then are interrupted and handed back to "
        "the queue."
    )

    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018  (signing needs it: fail early, as django-q does)
        try:
            vector_index_require_configuration()  # with DEBUG off: CHROMA_URL, or no start
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = PastqCluster()
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
