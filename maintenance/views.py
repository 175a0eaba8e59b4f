"""The operations page (/admin/operations/) and the health endpoints (/health/, /health/live).

The operations views are thin: reads come from maintenance.selectors and core.jobs.liveness,
actions go to maintenance.operations and maintenance.alerts. The page runs a fixed number of
queries: the template touches nothing that would query per row (not Schedule.last_run() nor
Schedule.success(), which do).
"""

from __future__ import annotations

import datetime
import hmac

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_q.models import Schedule

from core.jobs import liveness
from core.jobs.models import JobRun
from maintenance import operations, selectors
from maintenance.alerts import alert_acknowledge
from maintenance.health import FAIL, PROBES, health_report
from maintenance.models import OpsAlert
from maintenance.system_report import seconds_text

VIEW_PERMISSION = "maintenance.view_operations"
RUN_PERMISSION = "maintenance.run_job"
TASKS_SHOWN = 200  # queued tasks listed (payloads are unpickled one by one)
ALERTS_SHOWN = 20


def duration(seconds: float | None) -> str | None:
    """An age or a length of time as a person reads it ("45 s", "12 min", "3 h 5 min"), or
    None (the templates show a dash)."""
    return None if seconds is None else seconds_text(seconds)


def _require(request, permission: str, what: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"{what} needs the permission {permission}.")


def _context(request, **extra) -> dict:
    return {**admin.site.each_context(request), "can_run": request.user.has_perm(RUN_PERMISSION),
            **extra}


def _back() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("operations:dashboard"))


@never_cache
@require_GET
def dashboard(request):
    _require(request, VIEW_PERMISSION, "Viewing the operations page")
    now = timezone.now()
    presences = liveness.cluster_presences(now)
    states = liveness.queue_states(now, presences=presences)
    alerts, alerts_open = selectors.open_alerts(ALERTS_SHOWN)
    context = _context(
        request,
        title="Operations",
        now=now,
        stall_seconds=settings.PASTQ_STALL_SECONDS,
        presence_stale_seconds=settings.PASTQ_PRESENCE_STALE_SECONDS,
        queues=[{"row": row, "oldest": duration(row.state.oldest_waiting_s),
                 "last_seen_ago": duration((now - row.state.last_seen.last_seen_at)
                                           .total_seconds()) if row.state.last_seen else None}
                for row in selectors.queue_rows(states, now)],
        clusters=[{"presence": p, "live": live,
                   "seen_ago": duration((now - p.last_seen_at).total_seconds()),
                   "uptime": duration((p.last_seen_at - p.started_at).total_seconds())}
                  for p, live in selectors.clusters_shown(presences, now)],
        alerts=alerts, alerts_open=alerts_open, alerts_shown=ALERTS_SHOWN,
        failures=selectors.failures_since(now - datetime.timedelta(hours=24)),
        failure_outcomes=JobRun.FAILURES,
        failure_outcomes_param=",".join(JobRun.FAILURES),
        schedules=selectors.schedule_rows(),
        retries=selectors.pending_retries(now),
        tasks=selectors.queued_tasks(limit=TASKS_SHOWN),
        tasks_limit=TASKS_SHOWN,
    )
    return TemplateResponse(request, "maintenance/operations/dashboard.html", context)


# --- Actions: POST only, maintenance.run_job, then back to the page with a message ------------


def _schedule(request, schedule_id: int) -> Schedule | None:
    schedule = Schedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        messages.error(request, f"There is no schedule #{schedule_id} (deleted meanwhile?).")
    return schedule


def _label(schedule: Schedule) -> str:
    return schedule.name or f"#{schedule.pk} {schedule.func}"


@require_POST
def schedule_run(request, schedule_id: int):
    _require(request, RUN_PERMISSION, "Running a job")
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        try:
            task_id = operations.schedule_run_now(schedule)
        except ValueError as exc:
            messages.error(request, f"Not run: {_label(schedule)}: {exc}.")
        else:
            messages.success(request, f"Enqueued {_label(schedule)} now (task {task_id}); "
                                      "its timetable is unchanged.")
    return _back()


@require_POST
def schedule_pause(request, schedule_id: int):
    _require(request, RUN_PERMISSION, "Pausing a schedule")
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        if operations.schedule_pause(schedule, by=request.user.email):
            messages.success(request, f"Paused {_label(schedule)}.")
        else:
            messages.error(request, f"Nothing done: {_label(schedule)} was already paused or "
                                    "has no run left.")
    return _back()


@require_POST
def schedule_resume(request, schedule_id: int):
    _require(request, RUN_PERMISSION, "Resuming a schedule")
    schedule = _schedule(request, schedule_id)
    if schedule is not None:
        if operations.schedule_resume(schedule):
            when = f"{schedule.next_run:%Y-%m-%d %H:%M} UTC" if schedule.next_run else "soon"
            messages.success(request, f"Resumed {_label(schedule)}; next run {when}.")
        else:
            messages.error(request, f"Nothing done: {_label(schedule)} was not paused.")
    return _back()


@require_POST
def task_cancel(request, task_id: int):
    _require(request, RUN_PERMISSION, "Cancelling a task")
    if operations.queued_task_cancel(task_id):
        messages.success(request, f"Queued task #{task_id} cancelled.")
    else:
        messages.error(request, f"Queued task #{task_id} was not cancelled: it is not waiting "
                                "(it runs, waits for its retry, or is gone).")
    return _back()


@require_http_methods(["GET", "POST"])
def queue_purge(request, queue: str):
    """GET asks for confirmation, POST with confirm=yes purges (as the admin's delete does)."""
    _require(request, RUN_PERMISSION, "Purging a queue")
    state = next((s for s in liveness.queue_states() if s.queue == queue), None)
    if state is None:
        messages.error(request, f"There is no queue {queue!r}.")
        return _back()
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        purged = operations.queue_purge(queue)
        messages.success(request, f"Purged {purged} waiting tasks from {queue!r}.")
        return _back()
    return TemplateResponse(request, "maintenance/operations/purge_confirm.html",
                            _context(request, title="Purge a queue", state=state))


@require_POST
def alert_acknowledge_view(request, alert_id: int):
    _require(request, RUN_PERMISSION, "Acknowledging an alert")
    alert = get_object_or_404(OpsAlert, pk=alert_id)
    if alert_acknowledge(alert, by=request.user.email):
        messages.success(request, f"Acknowledged: {alert.summary}. It stays listed until the "
                                  "problem clears.")
    else:
        messages.error(request, "Nothing done: the alert was already acknowledged or resolved.")
    return _back()


# --- Health ---------------------------------------------------------------------------------


def _may_see_details(request) -> bool:
    token = settings.HEALTH_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if given and hmac.compare_digest(given, token):
            return True
    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_staff
                and user.has_perm(VIEW_PERMISSION))


@never_cache
@require_GET
def health(request):
    """Readiness, for load balancers: 503 only when this web process cannot serve (its
    database); every other check is in the body, so a dead worker never takes the web servers
    out of rotation. Details (outputs, figures) for staff or with HEALTH_TOKEN. It writes
    nothing and calls no other service: Chroma, Gemini and email are shown as the latest
    stored run (the health-checks job, health_check) found them."""
    report = health_report(probes=False)
    details = _may_see_details(request)
    checks = {}
    for check in report.checks:
        entry = {"status": check.status, "critical": check.critical}
        if details:
            # A probe of another service (Chroma, Gemini, email) comes from the latest stored
            # run: its time is when that run checked it.
            checked_at = (check.details or {}).get("checked_at") if check.name in PROBES else None
            entry.update(output=check.output, observedValue=check.observed,
                         observedUnit=check.unit, durationMs=check.duration_ms,
                         time=checked_at or report.checked_at.isoformat(),
                         details=check.details)
        checks[check.name] = [entry]
    body = {"status": FAIL if not report.database_ok else report.status, "checks": checks}
    if not details:
        body["notes"] = ["Details need a staff session or the HEALTH_TOKEN."]
    return JsonResponse(body, status=200 if report.database_ok else 503,
                        content_type="application/health+json",
                        json_dumps_params={"default": str})


@never_cache
@require_GET
def health_live(request):
    """Liveness: this process answers (no database, no other check)."""
    return JsonResponse({"status": "pass"}, content_type="application/health+json")
