"""The daily system report: figures equal to hand-computed ones for seeded rows, one row per day,
mailed to the staff once through the ledger, the job, the admin."""

import datetime
import shutil
import uuid
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from core.jobs.models import JobRun
from core.models import Attempt, Question, QuestionStep, StudentProfile, Subject
from core.services import student_create
from core.tests.conftest import deliver
from maintenance.models import BackupRecord, HealthCheckRun, OpsAlert, SystemReport
from maintenance.system_report import (
    system_report_build,
    system_report_figures,
    system_report_send,
)
from maintenance.tests.conftest import make_presence, make_run
from notifications import sending
from notifications.models import Notification

pytestmark = pytest.mark.django_db

H = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@pytest.fixture
def clock():
    """Now, and the UTC day the report is about (yesterday) with its start."""
    now = timezone.now()
    day = (now - DAY).date()
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    return now, day, start


def _questions(n: int) -> list[Question]:
    subject, _ = Subject.objects.get_or_create(code="SR", defaults={"name": "Reports"})
    return [Question.objects.create(subject=subject, question_type=Question.Type.NUMERIC,
                                    text=f"Question {i}", content_hash=uuid.uuid4().hex)
            for i in range(n)]


def seed(now, start) -> dict:
    """Rows around the day [start, start + 1 day); returns the users and questions made."""
    # Students: 2 long ago, 1 the day before, 3 on the day, 1 after it.
    when = [start - 5 * DAY, start - 3 * DAY, start - 12 * H, start + H, start + 2 * H,
            start + 23 * H, start + DAY + H]
    profiles = [student_create(email=f"s{i}@example.org") for i in range(len(when))]
    for profile, moment in zip(profiles, when, strict=True):
        StudentProfile.objects.filter(pk=profile.pk).update(created_at=moment)

    # Questions: 1 long ago (retired), 2 the day before, 1 on the day; the day before had 2.
    questions = _questions(4)
    for question, moment in zip(questions, [start - 9 * DAY, start - 2 * H, start - H,
                                            start + 5 * H], strict=True):
        Question.objects.filter(pk=question.pk).update(created_at=moment)
    Question.objects.filter(pk=questions[0].pk).update(status=Question.Status.RETIRED)

    # Attempts: 4 on the day by 2 students, 2 the day before, 1 long ago, 1 after the day.
    users = [p.user for p in profiles]
    for n, (user, question, moment) in enumerate([
            (users[0], questions[0], start - 4 * DAY),
            (users[0], questions[1], start - 3 * H), (users[1], questions[1], start - 2 * H),
            (users[0], questions[2], start + H), (users[0], questions[3], start + 2 * H),
            (users[1], questions[2], start + 3 * H), (users[1], questions[3], start + 23 * H),
            (users[2], questions[1], start + DAY + H)]):
        Attempt.objects.create(student=user, question=question, is_correct=n % 2 == 0,
                               time_taken_ms=5000, answered_at=moment,
                               local_date=moment.date(), attempt_number=1)

    # Job runs started on the day: A 4 succeeded (100, 200, 300, 1000 ms), 1 failed,
    # 1 interrupted; B 1 gave up. One run of A the day before does not count.
    a, b = "maintenance.tasks.job_records_prune", "core.tasks.process_pending_questions"
    for ms in (300, 100, 1000, 200):
        make_run(a, JobRun.Outcome.SUCCEEDED, started_at=start + H, duration_ms=ms)
    make_run(a, JobRun.Outcome.FAILED, started_at=start + 2 * H, duration_ms=50)
    make_run(a, JobRun.Outcome.INTERRUPTED, started_at=start + 3 * H, duration_ms=70)
    make_run(b, JobRun.Outcome.GAVE_UP, queue="question_processing", started_at=start + 4 * H,
             duration_ms=0)
    make_run(a, JobRun.Outcome.FAILED, started_at=start - H, duration_ms=10)

    # Queues: every one served; two tasks wait on maintenance, the oldest for 2 minutes.
    make_presence()
    OrmQ.objects.create(key="maintenance", payload="x", lock=now - 120 * datetime.timedelta(
        seconds=1))
    OrmQ.objects.create(key="maintenance", payload="x", lock=now - datetime.timedelta(seconds=5))

    BackupRecord.objects.create(name="a.dump.zst", engine=connection.vendor, status="verified",
                                created_at=now - 30 * H, verified_at=now - 29 * H,
                                size_bytes=1_000_000, encrypted=True)
    BackupRecord.objects.create(name="b.dump.zst", engine=connection.vendor, status="created",
                                created_at=now - 2 * H, size_bytes=2_500_000)
    BackupRecord.objects.create(name="c.dump.zst", engine=connection.vendor, status="failed",
                                created_at=start + 4 * H)

    HealthCheckRun.objects.create(checked_at=now - datetime.timedelta(minutes=4), source="job",
                                  status="warn", checks=[
                                      {"name": "database", "status": "pass", "critical": True,
                                       "output": "sqlite answered"},
                                      {"name": "backup", "status": "warn", "critical": False,
                                       "output": "the last verified backup is 29 h old"}])

    step_questions = _questions(3)
    for question, step, status in [(step_questions[0], "embedding", "pending"),
                                   (step_questions[1], "embedding", "pending"),
                                   (step_questions[2], "embedding", "done"),
                                   (step_questions[0], "explanation", "failed"),
                                   (step_questions[1], "metadata", "running")]:
        QuestionStep.objects.create(question=question, step=step, status=status)

    OpsAlert.objects.create(key="x", summary="Queue analytics: work has stopped moving")
    OpsAlert.objects.create(key="y", summary="resolved", resolved_at=now)

    for status, moment in [("sent", start + H), ("sent", start + 2 * H), ("failed", start + H),
                           ("sent", start - H)]:
        address = f"{uuid.uuid4().hex[:8]}@example.org"
        Notification.objects.create(address=address, recipient=address, kind="daily_summary",
                                    period=str(moment.date()), status=status, due_at=moment,
                                    send_after=moment, created_at=moment)
    return {"users": users}


def _database_size() -> int:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
    name = connection.settings_dict["NAME"]
    wal = Path(f"{name}-wal")
    return Path(name).stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_the_figures_equal_hand_computed_ones(clock, settings):
    now, day, start = clock
    seed(now, start)

    figures = system_report_figures(day, now)
    database_size = _database_size()
    disk = shutil.disk_usage(settings.VAR_DIR)

    assert figures["day"] == day.isoformat()
    assert figures["growth"] == {
        "students": {"total": 6, "day": 3, "previous_day": 1},
        "questions": {"total": 4, "day": 1, "previous_day": 2, "active": 3 + 3},
        "attempts": {"total": 7, "day": 4, "previous_day": 2, "active_students": 2},
    }

    jobs = figures["jobs"]
    assert (jobs["runs"], jobs["succeeded"], jobs["failures"]) == (7, 4, 2)
    assert jobs["success_rate"] == round(4 / 6, 4)
    by_job = {entry["job"]: entry for entry in jobs["by_job"]}
    a, b = by_job["maintenance.tasks.job_records_prune"], \
        by_job["core.tasks.process_pending_questions"]
    assert a == {"job": "maintenance.tasks.job_records_prune", "runs": 6, "succeeded": 4,
                 "failures": 1, "outcomes": {"failed": 1, "interrupted": 1, "succeeded": 4},
                 "success_rate": 0.8,
                 "duration_ms": {"mean": 400.0, "p50": 200, "p95": 1000, "max": 1000}}
    assert (b["runs"], b["failures"], b["success_rate"]) == (1, 1, 0.0)
    assert b["duration_ms"] == {"mean": None, "p50": None, "p95": None, "max": None}

    queues = {q["queue"]: q for q in figures["queues"]}
    assert queues["maintenance"]["liveness"] == "running"
    assert queues["maintenance"]["waiting"] == 2
    assert queues["maintenance"]["oldest_waiting_s"] == 120.0
    assert queues["analytics"]["waiting"] == 0

    assert figures["database"]["vendor"] == connection.vendor
    assert figures["database"]["size_bytes"] == database_size
    assert figures["disk"]["path"] == str(settings.VAR_DIR)
    assert figures["disk"]["total_bytes"] == disk.total
    assert abs(figures["disk"]["free_bytes"] - disk.free) < disk.total / 100

    backups = figures["backups"]
    assert backups["latest"]["name"] == "b.dump.zst"
    assert backups["latest"]["age_s"] == 2 * 3600
    assert backups["latest_verified"]["name"] == "a.dump.zst"
    assert backups["latest_verified"]["encrypted"] is True
    assert backups["failed_on_day"] == 1

    health = figures["health"]
    assert health["status"] == "warn"
    assert health["source"].startswith("stored run #")
    assert health["problems"] == [{"name": "backup", "status": "warn", "critical": False,
                                   "output": "the last verified backup is 29 h old"}]

    ai = figures["ai_backlog"]
    assert (ai["pending"], ai["running"], ai["failed"]) == (2, 1, 1)
    assert ai["by_step"]["embedding"] == {"pending": 2, "running": 0, "failed": 0}
    assert ai["by_step"]["explanation"] == {"pending": 0, "running": 0, "failed": 1}

    assert figures["alerts"]["open"] == 1
    assert [a["summary"] for a in figures["alerts"]["newest"]] == [
        "Queue analytics: work has stopped moving"]
    assert figures["emails"] == {"total": 3, "by_status": {"failed": 1, "sent": 2}}


def test_without_a_fresh_health_run_the_checks_run_now(clock):
    now, day, _start = clock
    HealthCheckRun.objects.create(checked_at=now - H, source="job", status="pass", checks=[])

    report = system_report_build(day=day, now=now)

    # No cluster was ever started: every queue check fails, which is critical.
    assert report.data["health"]["source"].startswith("checks run for this report")
    assert report.data["health"]["status"] == "fail"
    assert report.status == "critical"
    assert {p["name"] for p in report.data["health"]["problems"]} >= {"queue:maintenance"}


def test_the_day_defaults_to_the_utc_day_that_ended(clock):
    now, day, _start = clock
    assert system_report_build(now=now).day == day


def test_built_twice_it_is_one_row_with_the_new_figures(clock):
    now, day, start = clock
    system_report_build(day=day, now=now)
    make_run("maintenance.tasks.job_records_prune", JobRun.Outcome.SUCCEEDED,
             started_at=start + H)

    report = system_report_build(day=day, now=now + H)

    assert SystemReport.objects.count() == 1
    assert report.data["jobs"]["runs"] == 1
    assert SystemReport.objects.get().created_at == now + H


def test_the_queries_do_not_grow_with_the_data(clock):
    now, day, start = clock
    HealthCheckRun.objects.create(checked_at=now, source="job", status="pass", checks=[])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            system_report_figures(day, now)
        return len(captured)

    before = queries()
    seed(now, start)
    for i in range(30):
        make_run(f"maintenance.tasks.job_{i}", JobRun.Outcome.SUCCEEDED, started_at=start + H)
    assert queries() == before


# --- Mail -------------------------------------------------------------------------------


def test_mailed_to_the_staff_once(clock, settings):
    now, day, start = clock
    settings.NOTIFICATIONS_STAFF_EMAILS = ["ops@example.org", "CTO@example.org"]
    seed(now, start)
    mail.outbox = []

    report = system_report_build(day=day, now=now)
    rows = system_report_send(report)
    sending.send_due(now=now)
    system_report_send(system_report_build(day=day, now=now + H))  # built and sent again
    sending.send_due(now=now + H)

    assert len(rows) == 2
    assert Notification.objects.filter(kind="system_report").count() == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["cto@example.org", "ops@example.org"]
    message = mail.outbox[0]
    assert message.subject.endswith(f"System report {day.isoformat()}: degraded")
    assert f"Growth on {day.isoformat()} (UTC)" in message.body
    assert "- Attempts: 7 in all; +4 answered on the day, +2 the day before (+100%)" in \
        message.body
    assert "- maintenance.tasks.job_records_prune: 6 runs, 1 failed, 80.0% succeeded; took " \
           "200 ms median, 1.0 s p95, 1.0 s max" in message.body
    assert "- backup: warn: the last verified backup is 29 h old" in message.body
    assert "Queue analytics: work has stopped moving" in message.body
    html = message.alternatives[0][0]
    assert "a.dump.zst" in html and "status-warn" in html


def test_no_staff_address_means_no_mail(clock, settings):
    now, day, _start = clock
    settings.NOTIFICATIONS_STAFF_EMAILS = []
    assert system_report_send(system_report_build(day=day, now=now)) == []
    assert not Notification.objects.exists()


def test_the_job_builds_and_mails(clock, settings):
    now, day, _start = clock
    settings.NOTIFICATIONS_STAFF_EMAILS = ["ops@example.org"]

    result = deliver({"id": "r" * 32, "func": "maintenance.tasks.system_report",
                      "args": [day.isoformat()]})

    assert result["day"] == day.isoformat() and result["mailed_to"] == 1
    assert SystemReport.objects.get().day == day
    assert Notification.objects.get(kind="system_report").period == f"system:{day.isoformat()}"
    run = JobRun.objects.get(job="maintenance.tasks.system_report")
    assert run.outcome == JobRun.Outcome.SUCCEEDED and run.queue == "maintenance"


# --- Admin -------------------------------------------------------------------------------


@pytest.mark.urls("maintenance.tests.metrics_urls")
def test_the_admin_shows_the_figures_read_only(clock, admin_client):
    now, day, start = clock
    seed(now, start)
    report = system_report_build(day=day, now=now)

    listing = admin_client.get("/admin/maintenance/systemreport/")
    page = admin_client.get(f"/admin/maintenance/systemreport/{report.pk}/change/")

    assert listing.status_code == 200
    assert day.strftime("%b") in listing.content.decode() or str(day) in listing.content.decode()
    assert page.status_code == 200
    body = page.content.decode()
    assert f"Growth on {day.isoformat()} (UTC)" in body
    assert "maintenance.tasks.job_records_prune" in body and "degraded" in body
    assert admin_client.get("/admin/maintenance/systemreport/add/").status_code == 403
