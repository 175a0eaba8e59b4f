"""The daily system report (06:30 UTC, on the UTC day that just ended): measured figures only.

- counts and growth: students, questions and attempts in all at the end of the day, added on
  the day and on the day before;
- jobs: runs started on the day, by job, from our JobRun records (django-q's results are
  pruned and know nothing of retries): success rate and durations (mean, median, p95, max);
- as they are when the report is built: queue depth (core.jobs.liveness), database size
  (PostgreSQL: pg_database_size; SQLite: the file and its WAL), disk use under var/, the last
  backups (BackupRecord), health (the latest stored health check run if it is fresh, else the
  checks run now), the AI backlog (pending question steps), open alerts;
- email: the send ledger's rows created on the day, by status.

Stored as one SystemReport per day (built again, it is updated, never doubled), shown in the
admin (maintenance/system_report_admin.py), mailed to the staff through the notifications
ledger, whose one row per recipient, kind and period makes a second send a no-op.
A fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

import datetime
import math
import shutil
from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from core.jobs import liveness
from core.jobs.models import JobRun
from core.models import Attempt, Question, QuestionStep, StudentProfile
from maintenance.health import health_report
from maintenance.models import BackupRecord, HealthCheckRun, OpsAlert, SystemReport
from notifications.models import Notification
from notifications.services import staff_email_queue

UTC = datetime.UTC
# A stored health check run younger than this stands for "now" (the job runs every 5 minutes);
# an older one means the job is not running, and the report runs the checks itself.
HEALTH_FRESH = datetime.timedelta(minutes=15)
STATUS_WORDS = {"pass": "healthy", "warn": "degraded", "fail": "critical"}
ALERTS_LISTED = 10


def _day_start(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=UTC)


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _percentile(ordered: list[int], percent: float) -> int | None:
    """Nearest rank: the smallest value with at least `percent` % of the values at or below."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


# --- Figures --------------------------------------------------------------------------------


def growth_figures(day: datetime.date) -> dict:
    """Students, questions and attempts: in all at the end of `day`, added on it and on the day
    before (UTC days). Three queries."""
    start = _day_start(day)
    end, previous = start + datetime.timedelta(days=1), start - datetime.timedelta(days=1)

    def counted(model, field: str, **extra) -> dict:
        return model.objects.aggregate(
            total=Count("pk", filter=Q(**{f"{field}__lt": end})),
            day=Count("pk", filter=Q(**{f"{field}__gte": start, f"{field}__lt": end})),
            previous_day=Count("pk", filter=Q(**{f"{field}__gte": previous,
                                                 f"{field}__lt": start})),
            **extra)

    students = counted(StudentProfile, "created_at")
    questions = counted(Question, "created_at",
                        active=Count("pk", filter=Q(status=Question.Status.ACTIVE)))
    attempts = counted(Attempt, "answered_at", active_students=Count(
        "student", distinct=True, filter=Q(answered_at__gte=start, answered_at__lt=end)))
    return {"students": students, "questions": questions, "attempts": attempts}


def queue_figures(now: datetime.datetime) -> list[dict]:
    return [{"queue": s.queue, "liveness": s.liveness, "waiting": s.waiting,
             "oldest_waiting_s": round(s.oldest_waiting_s, 1) if s.oldest_waiting_s else None,
             "running": s.running, "retries_pending": s.delayed}
            for s in liveness.queue_states(now)]


def job_figures(day: datetime.date) -> dict:
    """Runs started on `day`, by job: outcomes, success rate (succeeded over succeeded and
    failed: running and interrupted runs are neither) and durations of the successful runs.
    One query; a day holds a few thousand runs at most (the periodic table)."""
    start = _day_start(day)
    runs = (JobRun.objects.filter(started_at__gte=start,
                                  started_at__lt=start + datetime.timedelta(days=1))
            .values_list("job", "outcome", "duration_ms"))
    jobs: dict[str, dict] = defaultdict(lambda: {"runs": 0, "succeeded": 0, "failures": 0,
                                                 "outcomes": defaultdict(int), "ms": []})
    for name, outcome, duration_ms in runs:
        entry = jobs[name]
        entry["runs"] += 1
        entry["outcomes"][outcome] += 1
        if outcome == JobRun.Outcome.SUCCEEDED:
            entry["succeeded"] += 1
            if duration_ms is not None:
                entry["ms"].append(duration_ms)
        elif outcome in JobRun.FAILURES:
            entry["failures"] += 1

    def rate(succeeded: int, failures: int) -> float | None:
        ended = succeeded + failures
        return round(succeeded / ended, 4) if ended else None

    by_job = []
    for name, entry in jobs.items():
        ms = sorted(entry["ms"])
        by_job.append({
            "job": name, "runs": entry["runs"], "succeeded": entry["succeeded"],
            "failures": entry["failures"], "outcomes": dict(sorted(entry["outcomes"].items())),
            "success_rate": rate(entry["succeeded"], entry["failures"]),
            "duration_ms": {"mean": round(sum(ms) / len(ms), 1) if ms else None,
                            "p50": _percentile(ms, 50), "p95": _percentile(ms, 95),
                            "max": ms[-1] if ms else None},
        })
    by_job.sort(key=lambda e: (-e["failures"], e["job"]))
    succeeded = sum(e["succeeded"] for e in by_job)
    failures = sum(e["failures"] for e in by_job)
    return {"runs": sum(e["runs"] for e in by_job), "succeeded": succeeded,
            "failures": failures, "success_rate": rate(succeeded, failures), "by_job": by_job}


def database_figures() -> dict:
    """The database's size on disk: PostgreSQL's own figure; SQLite's file and its WAL."""
    vendor = connection.vendor
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = cursor.fetchone()[0]
        return {"vendor": vendor, "size_bytes": int(size), "detail": "pg_database_size"}
    if vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        path = Path(name)
        if name == ":memory:" or name.startswith("file:") or not path.exists():
            return {"vendor": vendor, "size_bytes": None, "detail": "in memory"}
        wal = Path(f"{name}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        return {"vendor": vendor, "size_bytes": path.stat().st_size + wal_size,
                "wal_bytes": wal_size, "detail": str(path)}
    return {"vendor": vendor, "size_bytes": None, "detail": "not measured for this engine"}


def disk_figures() -> dict:
    """The file system holding var/ (database file, vectors, backups by default, mail)."""
    usage = shutil.disk_usage(settings.VAR_DIR)
    return {"path": str(settings.VAR_DIR), "total_bytes": usage.total, "used_bytes": usage.used,
            "free_bytes": usage.free,
            # As df counts it: of the space a user may fill (root's reserve left out).
            "used_percent": round(usage.used / (usage.used + usage.free) * 100, 1)
            if usage.used + usage.free else None}


def _backup(record: BackupRecord | None, now: datetime.datetime) -> dict | None:
    if record is None:
        return None
    return {"name": record.name, "status": record.status, "engine": record.engine,
            "created_at": _iso(record.created_at), "verified_at": _iso(record.verified_at),
            "age_s": round((now - record.created_at).total_seconds()),
            "size_bytes": record.size_bytes, "encrypted": record.encrypted,
            "offsite": bool(record.offsite_name)}


def backup_figures(day: datetime.date, now: datetime.datetime) -> dict:
    """The newest backup written (verified or not), the newest verified one, and how many
    failed on the day. Three queries."""
    Status = BackupRecord.Status
    start = _day_start(day)
    good = BackupRecord.objects.filter(status__in=[Status.CREATED, Status.VERIFIED])
    return {
        "latest": _backup(good.order_by("-created_at", "-id").first(), now),
        "latest_verified": _backup(good.filter(status=Status.VERIFIED)
                                   .order_by("-created_at", "-id").first(), now),
        "failed_on_day": BackupRecord.objects.filter(
            status=Status.FAILED, created_at__gte=start,
            created_at__lt=start + datetime.timedelta(days=1)).count(),
    }


def health_figures(now: datetime.datetime) -> dict:
    """The latest stored health check run when it is fresh; else the checks, run now."""
    latest = HealthCheckRun.objects.order_by("-checked_at", "-id").first()
    if latest is not None and now - latest.checked_at <= HEALTH_FRESH:
        checks = [c for c in (latest.checks if isinstance(latest.checks, list) else [])
                  if isinstance(c, dict)]
        return {"status": latest.status, "checked_at": _iso(latest.checked_at),
                "source": f"stored run #{latest.pk}, from the {latest.source}",
                "problems": [{"name": str(c.get("name", "?")), "status": c.get("status"),
                              "critical": bool(c.get("critical")),
                              "output": str(c.get("output", ""))}
                             for c in checks if c.get("status") != "pass"]}
    report = health_report(now)
    return {"status": report.status, "checked_at": _iso(report.checked_at),
            "source": "checks run for this report (no health check run in the last "
                      f"{int(HEALTH_FRESH.total_seconds() // 60)} minutes)",
            "problems": [{"name": c.name, "status": c.status, "critical": c.critical,
                          "output": c.output} for c in report.checks if c.status != "pass"]}


def ai_backlog_figures() -> dict:
    """Question steps waiting (pending), running and failed, by step. One query."""
    wanted = [QuestionStep.Status.PENDING, QuestionStep.Status.RUNNING,
              QuestionStep.Status.FAILED]
    by_step = {step: dict.fromkeys(wanted, 0) for step in QuestionStep.Step.values}
    for step, status, n in (QuestionStep.objects.filter(status__in=wanted)
                            .values("step", "status").annotate(n=Count("id")).order_by()
                            .values_list("step", "status", "n")):
        by_step.setdefault(step, dict.fromkeys(wanted, 0))[status] = n
    return {"pending": sum(s["pending"] for s in by_step.values()),
            "running": sum(s["running"] for s in by_step.values()),
            "failed": sum(s["failed"] for s in by_step.values()), "by_step": by_step}


def alert_figures() -> dict:
    open_ = OpsAlert.objects.filter(resolved_at__isnull=True)
    newest = list(open_.order_by("-opened_at").values("summary", "opened_at",
                                                      "acknowledged_at")[:ALERTS_LISTED])
    return {"open": open_.count(),
            "newest": [{"summary": a["summary"], "opened_at": _iso(a["opened_at"]),
                        "acknowledged": a["acknowledged_at"] is not None} for a in newest]}


def email_figures(day: datetime.date) -> dict:
    """Ledger rows created on the day, by their status now. One query."""
    start = _day_start(day)
    by_status = dict(Notification.objects.filter(
        kind__in=Notification.Kind.values, created_at__gte=start,
        created_at__lt=start + datetime.timedelta(days=1))
        .values("status").annotate(n=Count("id")).order_by().values_list("status", "n"))
    return {"total": sum(by_status.values()), "by_status": dict(sorted(by_status.items()))}


def system_report_figures(day: datetime.date, now: datetime.datetime) -> dict:
    """Every figure of the report on `day`, measured now: a JSON-ready dict."""
    return {
        "day": day.isoformat(), "generated_at": now.isoformat(),
        "growth": growth_figures(day),
        "queues": queue_figures(now),
        "jobs": job_figures(day),
        "database": database_figures(),
        "disk": disk_figures(),
        "backups": backup_figures(day, now),
        "health": health_figures(now),
        "ai_backlog": ai_backlog_figures(),
        "alerts": alert_figures(),
        "emails": email_figures(day),
    }


# --- Sections: the figures as a person reads them (the email and the admin) -----------------


def size_text(size: int | None) -> str:
    """Decimal units, as disks are sold and `df -H` shows them: "182.3 MB"."""
    if size is None:
        return "not measured"
    if size < 1000:
        return f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def seconds_text(seconds: float | None) -> str:
    """An age or a length of time: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    if seconds is None:
        return "–"
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


def _ms_text(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _runs_text(entry: dict) -> str:
    runs = entry["runs"]
    return (f"{runs:,} run{'' if runs == 1 else 's'}, {entry['failures']:,} failed, "
            f"{_rate_text(entry['success_rate'])}")


def _rate_text(rate: float | None) -> str:
    return "no finished run" if rate is None else f"{rate * 100:.1f}% succeeded"


def _moment_text(iso: str | None) -> str:
    if not iso:
        return "–"
    return f"{datetime.datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _growth_row(label: str, figures: dict, what: str) -> list[str]:
    day, before = figures["day"], figures["previous_day"]
    if before:
        change = f"{(day - before) / before * 100:+.0f}%"
    else:
        change = "no change" if day == 0 else "none the day before"
    return [label, f"{figures['total']:,} in all; {day:+,} {what} on the day, {before:+,} the "
                   f"day before ({change})"]


def _backup_text(backup: dict | None) -> str:
    if backup is None:
        return "none yet"
    parts = [backup["name"], f"{_moment_text(backup['created_at'])} "
                             f"({seconds_text(backup['age_s'])} ago)",
             size_text(backup["size_bytes"]), backup["status"],
             "encrypted" if backup["encrypted"] else "not encrypted"]
    if backup["offsite"]:
        parts.append("copied off-site")
    return ", ".join(parts)


def system_report_sections(data: dict) -> list[dict]:
    """The report's figures as headed lists of [label, value] (the email's `sections`)."""
    day = data["day"]
    growth, jobs, health = data["growth"], data["jobs"], data["health"]
    sections = [{"heading": f"Growth on {day} (UTC)", "rows": [
        _growth_row("Students", growth["students"], "joined"),
        _growth_row("Questions", growth["questions"], "added"),
        _growth_row("Attempts", growth["attempts"], "answered"),
        ["Active students", f"{growth['attempts']['active_students']:,} answered on the day"],
        ["Active questions", f"{growth['questions']['active']:,}"],
    ]}]

    queue_rows = []
    for q in data["queues"]:
        text = f"{q['liveness']}, {q['waiting']:,} waiting"
        if q["oldest_waiting_s"]:
            text += f" (oldest {seconds_text(q['oldest_waiting_s'])})"
        text += f", {q['running']} running"
        if q["retries_pending"]:
            text += f", {q['retries_pending']} retries pending"
        queue_rows.append([q["queue"], text])
    sections.append({"heading": "Queues (when the report was built)", "rows": queue_rows})

    job_rows = []
    if jobs["runs"]:
        job_rows.append(["All jobs", _runs_text(jobs)])
    for entry in jobs["by_job"]:
        d = entry["duration_ms"]
        text = _runs_text(entry)
        if d["p50"] is not None:
            text += (f"; took {_ms_text(d['p50'])} median, {_ms_text(d['p95'])} p95, "
                     f"{_ms_text(d['max'])} max")
        job_rows.append([entry["job"], text])
    sections.append({"heading": f"Jobs started on {day}", "rows": job_rows})

    database, disk = data["database"], data["disk"]
    sections.append({"heading": "Database and disk", "rows": [
        ["Database", f"{database['vendor']}, {size_text(database['size_bytes'])}"],
        [f"Disk under {disk['path']}",
         f"{size_text(disk['free_bytes'])} free, {size_text(disk['used_bytes'])} used "
         f"({disk['used_percent']}% full)"],
    ]})

    backups = data["backups"]
    backup_rows = [["Newest", _backup_text(backups["latest"])]]
    if backups["latest_verified"] != backups["latest"]:
        backup_rows.append(["Newest verified", _backup_text(backups["latest_verified"])])
    if backups["failed_on_day"]:
        backup_rows.append(["Failed on the day", f"{backups['failed_on_day']}"])
    sections.append({"heading": "Backups", "rows": backup_rows})

    health_rows = [["Status", f"{STATUS_WORDS.get(health['status'], health['status'])} "
                              f"({health['source']}, at {_moment_text(health['checked_at'])})"]]
    health_rows += [[p["name"], f"{p['status']}{' (critical)' if p['critical'] else ''}: "
                                f"{p['output']}"] for p in health["problems"]]
    sections.append({"heading": "Health", "rows": health_rows})

    ai = data["ai_backlog"]
    ai_rows = [["Pending steps", f"{ai['pending']:,} ({ai['running']:,} running, "
                                 f"{ai['failed']:,} failed)"]]
    ai_rows += [[step, f"{n['pending']:,} pending, {n['running']:,} running, "
                       f"{n['failed']:,} failed"]
                for step, n in ai["by_step"].items() if any(n.values())]
    sections.append({"heading": "AI processing backlog", "rows": ai_rows})

    emails = data["emails"]
    sections.append({"heading": f"Email queued on {day}", "rows": [
        [status, f"{n:,}"] for status, n in emails["by_status"].items()]})

    alerts = data["alerts"]
    alert_rows = [[_moment_text(a["opened_at"]),
                   a["summary"] + (" (acknowledged)" if a["acknowledged"] else "")]
                  for a in alerts["newest"]]
    if alerts["open"] > len(alerts["newest"]):
        alert_rows.append(["…", f"{alerts['open'] - len(alerts['newest'])} more open"])
    sections.append({"heading": f"Open alerts ({alerts['open']})", "rows": alert_rows})
    return sections


# --- Build, send, the job -------------------------------------------------------------------


def system_report_build(*, day: datetime.date | None = None,
                        now: datetime.datetime | None = None) -> SystemReport:
    """Measure and store the report on `day` (default: the UTC day that ended last). Built
    again for the same day, the one row is updated with fresh figures."""
    now = now or timezone.now()
    day = day or (now.astimezone(UTC) - datetime.timedelta(days=1)).date()
    data = system_report_figures(day, now)
    report, _created = SystemReport.objects.update_or_create(
        day=day, defaults={"created_at": now, "status": STATUS_WORDS.get(
            data["health"]["status"], data["health"]["status"]), "data": data})
    return report


def system_report_context(report: SystemReport) -> dict:
    """The system_report email's context (notifications/rendering.py documents it)."""
    return {"title": f"System report {report.day.isoformat()}",
            "generated_at": report.created_at, "status": report.status,
            "sections": system_report_sections(report.data)}


def system_report_send(report: SystemReport) -> list[Notification]:
    """Queue the report to each staff address (NOTIFICATIONS_STAFF_EMAILS) through the send
    ledger: once per address and day, however often it is called."""
    return staff_email_queue(kind=Notification.Kind.SYSTEM_REPORT,
                             period=f"system:{report.day.isoformat()}",
                             context=system_report_context(report))
