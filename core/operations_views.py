"""The admin's operations page (installed by pastq.admin.PastqAdminSite): thin views over
core.selectors (reads) and core.ops (actions).

Every view takes the admin site as its second argument (for the admin's page context and URL
names). The page runs a fixed number of queries: it only calls selectors, and the template
touches nothing that would query per row (not Schedule.last_run() nor Schedule.success(),
which do).
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from core import ops, selectors
from core.jobs import broker_key_for
from core.models import JobRun

RUN_PERMISSION = "core.run_job"
TASKS_SHOWN = 200  # queued tasks listed (payloads are unpickled one by one)


def _duration(seconds: float | None) -> str | None:
    """An age or a length of time as a person reads it: "45 s", "12 min", "3 h 5 min"."""
    if seconds is None:
        return None
    total = max(0, round(seconds))
    if total < 120:
        return f"{total} s"
    minutes = total // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def _queue_rows(now: datetime.datetime) -> list[dict]:
    rows = []
    for health in selectors.queue_health(now):
        rows.append({
            "health": health,
            # Every queue a health row serves shares its broker key (see queue_health).
            "key": broker_key_for(health.serves[0]),
            "oldest": _duration(health.oldest_waiting_s),
            "heartbeats": [(queue, _duration(age)) for queue, age in health.heartbeats.items()],
        })
    return rows


def _back(site) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:operations", current_app=site.name))


def _require_run_permission(request) -> None:
    if not request.user.has_perm(RUN_PERMISSION):
        raise PermissionDenied("Running, pausing and cancelling jobs needs core.run_job.")


def _context(request, site, **extra) -> dict:
    request.current_app = site.name
    return {**site.each_context(request), "can_run": request.user.has_perm(RUN_PERMISSION),
            **extra}


def dashboard(request, site):
    now = timezone.now()
    context = _context(
        request, site,
        title="Operations",
        now=now,
        stall_seconds=settings.PASTQ_STALL_SECONDS,
        heartbeat_stale_seconds=ops.HEARTBEAT_STALE_SECONDS,
        queues=_queue_rows(now),
        clusters=selectors.cluster_stats(),
        alerts=selectors.open_alerts(),
        failures=selectors.failures_since(now - datetime.timedelta(hours=24)),
        failure_outcomes=JobRun.FAILURES,
        failure_outcomes_param=",".join(JobRun.FAILURES),
        schedules=selectors.schedule_rows(),
        retries=selectors.pending_retries(),
        tasks=selectors.queued_tasks(limit=TASKS_SHOWN),
        tasks_limit=TASKS_SHOWN,
    )
    return TemplateResponse(request, "admin/operations/dashboard.html", context)


# --- Actions: POST only, core.run_job, then back to the page with a message -------------------


def _schedule(request, schedule_id: int):
    from django_q.models import Schedule

    schedule = Schedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        messages.error(request, f"There is no schedule #{schedule_id} (deleted meanwhile?).")
    return schedule


def _label(schedule) -> str:
    return schedule.name or f"#{schedule.pk} {schedule.func}"


@require_POST
def schedule_run(request, site, schedule_id: int):
    _require_run_permission(request)
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        try:
            task_id = ops.schedule_run_now(schedule)
        except (ValueError, SyntaxError) as exc:  # hand-made schedule, unreadable arguments
            messages.error(request, f"Not run: the arguments of {_label(schedule)} cannot be "
                                    f"read ({exc}).")
        else:
            messages.success(request, f"Enqueued {_label(schedule)} now (task {task_id}); "
                                      "its timetable is unchanged.")
    return _back(site)


@require_POST
def schedule_pause(request, site, schedule_id: int):
    _require_run_permission(request)
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        if ops.schedule_pause(schedule, by=request.user.email):
            messages.success(request, f"Paused {_label(schedule)}.")
        else:
            messages.error(request, f"Nothing done: {_label(schedule)} was already paused.")
    return _back(site)


@require_POST
def schedule_resume(request, site, schedule_id: int):
    _require_run_permission(request)
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        if ops.schedule_resume(schedule):
            messages.success(request, f"Resumed {_label(schedule)}; next run "
                                      f"{schedule.next_run:%Y-%m-%d %H:%M} UTC.")
        else:
            messages.error(request, f"Nothing done: {_label(schedule)} was not paused.")
    return _back(site)


@require_POST
def task_cancel(request, site, task_id: int):
    _require_run_permission(request)
    if ops.queued_task_cancel(task_id):
        messages.success(request, f"Queued task #{task_id} cancelled.")
    else:
        messages.error(request, f"Queued task #{task_id} was not cancelled: it is not waiting "
                                "(a worker has taken it, or it is gone).")
    return _back(site)


@require_http_methods(["GET", "POST"])
def queue_purge(request, site, key: str):
    """GET asks for confirmation, POST with confirm=yes purges (as the admin's delete does)."""
    _require_run_permission(request)
    row = next((r for r in _queue_rows(timezone.now()) if r["key"] == key), None)
    if row is None:
        messages.error(request, f"There is no queue with the broker key {key!r}.")
        return _back(site)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        purged = ops.queue_purge(key)
        messages.success(request, f"Purged {purged} waiting tasks from {key!r}.")
        return _back(site)
    context = _context(request, site, title="Purge a queue", key=key, health=row["health"])
    return TemplateResponse(request, "admin/operations/purge_confirm.html", context)
