"""Deleting what has served its time: job records, task results, presences, resolved alerts."""

from __future__ import annotations

import datetime

from django.utils import timezone
from django_q.models import Task

from core.jobs.models import ClusterPresence, JobRun
from maintenance.models import OpsAlert


def job_records_prune(*, days: int) -> dict:
    """JobRun rows finished more than `days` ago, django-q's task results as old (it keeps them
    all: save_limit 0), presences of clusters last seen that long ago, and resolved alerts."""
    if days < 1:
        raise ValueError("Keep at least one day of job records.")
    cutoff = timezone.now() - datetime.timedelta(days=days)
    runs, _ = JobRun.objects.filter(finished_at__lt=cutoff).delete()
    results, _ = Task.objects.filter(stopped__lt=cutoff).delete()
    presences, _ = ClusterPresence.objects.filter(last_seen_at__lt=cutoff).delete()
    alerts, _ = OpsAlert.objects.filter(resolved_at__lt=cutoff).delete()
    return {"job_runs_deleted": runs, "task_results_deleted": results,
            "presences_deleted": presences, "alerts_deleted": alerts}
