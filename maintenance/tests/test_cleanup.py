"""Cleanup (maintenance/cleanup.py, its jobs and `manage.py cleanup`): what has served its time
goes, in batches; a dry run counts exactly what a real run does and changes nothing; attempts
are never deleted, not even through a session's CASCADE."""

import datetime
import itertools
import json
import os
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.db.models.deletion import CASCADE
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import Report
from core.jobs.models import JobRun
from core.models import ApiToken, Attempt, PracticeSession
from core.tests.conftest import deliver
from core.tests.factories import make_question
from maintenance import cleanup, pruning
from maintenance.cleanup import (
    PARTS,
    cleanup_run,
    practice_sessions_cleanup,
    stored_email_cleanup,
    tmp_files_cleanup,
    tokens_cleanup,
)
from maintenance.models import HealthCheckRun
from notifications.models import Notification

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
HOUR, DAY = datetime.timedelta(hours=1), datetime.timedelta(days=1)
Status = PracticeSession.Status
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def no_pause_between_batches(monkeypatch):
    monkeypatch.setattr(pruning, "SQLITE_PAUSE_S", 0)


@pytest.fixture
def question(catalogue):
    return make_question()


def session(student, *, status=Status.STARTED, idle=HOUR, now=NOW,
            **fields) -> PracticeSession:
    return PracticeSession.objects.create(student=student, status=status,
                                          started_at=now - idle - HOUR,
                                          last_activity_at=now - idle, **fields)


def answer(student, question, the_session, *, at) -> Attempt:
    """An attempt written as an import or a seed would: it does not move the session's
    last_activity_at (attempt_record does)."""
    return Attempt.objects.create(student=student, question=question, session=the_session,
                                  is_correct=False, time_taken_ms=1000, answered_at=at,
                                  local_date=at.date(), attempt_number=next(_numbers))


def states() -> dict:
    return dict(PracticeSession.objects.values_list("pk", "status"))


# --- Practice sessions ----------------------------------------------------------------------


def test_idle_open_sessions_are_abandoned_and_active_ones_stay(student, question):
    idle_started = session(student, idle=7 * HOUR)
    idle_in_progress = session(student, status=Status.IN_PROGRESS, idle=7 * HOUR)
    active = session(student, idle=5 * HOUR)
    # Its own stamp is old, but its latest attempt is recent: still in use.
    answered_lately = session(student, status=Status.IN_PROGRESS, idle=2 * DAY)
    answer(student, question, answered_lately, at=NOW - HOUR)
    completed = session(student, status=Status.COMPLETED, idle=40 * DAY,
                        completed_at=NOW - 40 * DAY)

    assert practice_sessions_cleanup(now=NOW) == {"abandoned": 2, "deleted": 0}

    assert states() == {idle_started.pk: Status.ABANDONED, idle_in_progress.pk: Status.ABANDONED,
                        active.pk: Status.STARTED, answered_lately.pk: Status.IN_PROGRESS,
                        completed.pk: Status.COMPLETED}
    assert practice_sessions_cleanup(now=NOW) == {"abandoned": 0, "deleted": 0}


def test_only_old_abandoned_sessions_without_attempts_are_deleted(student, question):
    old_empty = session(student, status=Status.ABANDONED, idle=31 * DAY)
    old_with_attempts = session(student, status=Status.ABANDONED, idle=31 * DAY)
    kept_attempts = [answer(student, question, old_with_attempts, at=NOW - 32 * DAY)
                     for _ in range(3)]
    recent_empty = session(student, status=Status.ABANDONED, idle=29 * DAY)
    # Open and idle for 40 days: abandoned, then deleted in the same run.
    forgotten = session(student, idle=40 * DAY)
    completed_empty = session(student, status=Status.COMPLETED, idle=40 * DAY)

    assert practice_sessions_cleanup(now=NOW) == {"abandoned": 1, "deleted": 2}

    assert states() == {old_with_attempts.pk: Status.ABANDONED,
                        recent_empty.pk: Status.ABANDONED, completed_empty.pk: Status.COMPLETED}
    assert not PracticeSession.objects.filter(pk__in=[old_empty.pk, forgotten.pk]).exists()
    assert sorted(old_with_attempts.attempts.values_list("pk", flat=True)) == sorted(
        a.pk for a in kept_attempts)


def test_the_settings_set_the_idle_time_and_the_age(student, settings):
    settings.CLEANUP_SESSION_IDLE_HOURS = 48
    settings.CLEANUP_ABANDONED_SESSION_DAYS = 60
    session(student, idle=30 * HOUR)
    session(student, status=Status.ABANDONED, idle=40 * DAY)
    assert practice_sessions_cleanup(now=NOW) == {"abandoned": 0, "deleted": 0}
    settings.CLEANUP_SESSION_IDLE_HOURS = 24
    settings.CLEANUP_ABANDONED_SESSION_DAYS = 30
    assert practice_sessions_cleanup(now=NOW) == {"abandoned": 1, "deleted": 1}


@pytest.mark.parametrize("bad", [dict(idle_hours=0), dict(abandoned_days=0)])
def test_a_retention_under_its_minimum_is_refused(student, bad):
    session(student, status=Status.ABANDONED, idle=40 * DAY)
    with pytest.raises(ValueError, match="at least 1"):
        practice_sessions_cleanup(now=NOW, **bad)
    assert PracticeSession.objects.count() == 1


def test_an_abandoned_session_answered_since_its_keys_were_read_keeps_its_attempt(student,
                                                                                   question):
    """The delete statement itself checks for attempts: an attempt written between reading a
    batch's keys and deleting it keeps its session, instead of going with it by CASCADE."""
    late = session(student, status=Status.ABANDONED, idle=40 * DAY)
    keys = [late.pk]  # read while it had no attempt
    attempt = answer(student, question, late, at=NOW - 40 * DAY)

    assert cleanup._sessions_delete_without_attempts(keys, NOW - 30 * DAY) == 0

    assert Attempt.objects.filter(pk=attempt.pk, session=late).exists()


def test_nothing_but_attempts_references_a_session():
    """The session delete is one SQL statement that runs no cascade (so that it cannot delete
    attempts). If this fails, a model now points at PracticeSession: make the cleanup deal
    with its rows before you change this test."""
    relations = [(r.related_model, r.field.name, r.on_delete)
                 for r in PracticeSession._meta.get_fields(include_hidden=True)
                 if r.auto_created and not r.concrete]
    assert relations == [(Attempt, "session", CASCADE)]


def test_cleanup_never_deletes_an_attempt(student, question, tmp_path, settings):
    """Every part, over sessions of every status and age, with and without attempts: not one
    attempt goes, whatever CASCADE would have done."""
    settings.VAR_DIR = tmp_path
    for status, idle in itertools.product(Status.values, [HOUR, 7 * HOUR, 29 * DAY, 400 * DAY]):
        for with_attempts in (False, True):
            the_session = session(student, status=status, idle=idle)
            if with_attempts:
                answer(student, question, the_session, at=NOW - idle)
                answer(student, question, the_session, at=NOW - idle - HOUR)
    answer(student, question, None, at=NOW - 400 * DAY)  # outside any session
    attempts = sorted(Attempt.objects.values_list("pk", "session_id"))

    report = cleanup_run(now=NOW, batch_size=3)
    report_again = cleanup_run(now=NOW + 400 * DAY, batch_size=3)

    assert not report.errors and not report_again.errors
    assert report.parts["sessions"]["deleted"] > 0
    assert sorted(Attempt.objects.values_list("pk", "session_id")) == attempts


def test_a_dry_run_counts_what_the_real_run_does_and_changes_nothing(student, question):
    for idle in (HOUR, 7 * HOUR, 2 * DAY, 31 * DAY, 45 * DAY):
        session(student, idle=idle)
        session(student, status=Status.ABANDONED, idle=idle)
        with_attempt = session(student, status=Status.IN_PROGRESS, idle=idle)
        answer(student, question, with_attempt, at=NOW - idle)
    before = states()

    dry = practice_sessions_cleanup(now=NOW, dry_run=True)

    assert states() == before
    assert dry == practice_sessions_cleanup(now=NOW, batch_size=2)
    assert dry == {"abandoned": 8, "deleted": 4}


def test_sessions_go_in_batches_of_keys(student):
    for _ in range(5):
        session(student, status=Status.ABANDONED, idle=40 * DAY)
    with CaptureQueriesContext(connection) as queries:
        result = practice_sessions_cleanup(now=NOW, batch_size=2)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert result["deleted"] == 5 and len(deletes) == 3  # 2 + 2 + 1
    # Each batch in its own transaction (a savepoint inside this test's own transaction).
    assert sum("SAVEPOINT" in q["sql"] and "RELEASE" not in q["sql"] and "ROLLBACK" not in
               q["sql"] for q in queries.captured_queries) >= 3


def test_the_number_of_queries_does_not_grow_with_the_sessions(student, question):
    def queries_for(n: int) -> int:
        PracticeSession.objects.all().delete()
        for _ in range(n):
            session(student, idle=7 * HOUR)
            session(student, status=Status.ABANDONED, idle=40 * DAY)
        with CaptureQueriesContext(connection) as queries:
            result = practice_sessions_cleanup(now=NOW)
        assert result == {"abandoned": n, "deleted": n}
        return len(queries)

    assert queries_for(3) == queries_for(30)


# --- Tokens and login sessions --------------------------------------------------------------


def _token(user, name, **fields) -> ApiToken:
    number = next(_numbers)
    token = ApiToken.objects.create(user=user, name=name, prefix=f"pq_{number}",
                                    digest=f"{number:064d}")
    ApiToken.objects.filter(pk=token.pk).update(**fields)
    return token


def test_tokens_expired_or_revoked_past_the_grace_period_go(student):
    _token(student, "expired long ago", expires_at=NOW - 31 * DAY)
    _token(student, "revoked long ago", revoked_at=NOW - 31 * DAY,
           expires_at=NOW + 300 * DAY)
    _token(student, "expired lately", expires_at=NOW - 29 * DAY)
    _token(student, "revoked lately", revoked_at=NOW - DAY)
    _token(student, "active")
    _token(student, "active until next year", expires_at=NOW + 365 * DAY)
    Session.objects.create(session_key="a" * 32, session_data="x", expire_date=NOW - HOUR)
    Session.objects.create(session_key="b" * 32, session_data="x", expire_date=NOW - 9 * DAY)
    Session.objects.create(session_key="c" * 32, session_data="x", expire_date=NOW + DAY)

    dry = tokens_cleanup(now=NOW, dry_run=True)
    assert ApiToken.objects.count() == 6 and Session.objects.count() == 3
    assert dry == tokens_cleanup(now=NOW, batch_size=1) == {"api_tokens_deleted": 2,
                                                             "login_sessions_deleted": 2}
    assert set(ApiToken.objects.values_list("name", flat=True)) == {
        "expired lately", "revoked lately", "active", "active until next year"}
    assert list(Session.objects.values_list("session_key", flat=True)) == ["c" * 32]


def test_a_session_engine_without_a_table_clears_itself(settings, monkeypatch):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert tokens_cleanup(now=NOW) == {"api_tokens_deleted": 0, "login_sessions_deleted": None}


# --- Stored email and report HTML -----------------------------------------------------------


def _email(*, status, age, kind=Notification.Kind.TEST, user=None, period=None,
           **fields) -> Notification:
    number = next(_numbers)
    when = NOW - age
    address = user.email if user else f"ops{number}@example.com"
    return Notification.objects.create(
        user=user, address=address, recipient=f"user:{user.pk}" if user else address,
        kind=kind, period=period or f"p{number}", status=status, due_at=when, send_after=when,
        created_at=when, updated_at=when, subject=f"Email {number}",
        text=f"Text of email {number}", html=f"<p>Email {number}</p>", **fields)


def _report(*, age, student=None, label=None) -> Report:
    number = next(_numbers)
    when = NOW - age
    start = datetime.date(2020, 1, 1) + datetime.timedelta(days=7 * number)
    return Report.objects.create(
        kind=Report.Kind.STUDENT_WEEKLY if student else Report.Kind.ADMIN_DAILY,
        student=student, period_start=start, period_end=start + datetime.timedelta(days=6),
        label=label or f"label-{number}", data={"n": number}, html=f"<p>report {number}</p>",
        chart_png=b"\x89PNG chart", created_at=when, updated_at=when)


def test_old_sent_email_loses_its_html_and_keeps_its_row(student):
    sent = Notification.Status
    emptied = [_email(status=sent.SENT, age=31 * DAY),
               _email(status=sent.SKIPPED, age=40 * DAY)]
    kept = [_email(status=sent.SENT, age=29 * DAY),
            _email(status=sent.FAILED, age=40 * DAY),  # may be resent from the admin
            _email(status=sent.UNKNOWN, age=40 * DAY),
            _email(status=sent.QUEUED, age=40 * DAY)]
    before = {row.pk: (row.status, row.subject, row.updated_at)
              for row in Notification.objects.all()}

    dry = stored_email_cleanup(now=NOW, dry_run=True)
    assert Notification.objects.exclude(html="").count() == 6
    assert dry == stored_email_cleanup(now=NOW, batch_size=1)
    assert dry["emails_emptied"] == 2

    for row in emptied:
        row.refresh_from_db()
        assert (row.html, row.text) == ("", "")
    for row in kept:
        row.refresh_from_db()
        assert row.html and row.text
    assert {row.pk: (row.status, row.subject, row.updated_at)
            for row in Notification.objects.all()} == before


def test_old_reports_lose_their_html_and_chart_unless_an_email_still_needs_them(student):
    old = _report(age=31 * DAY)
    recent = _report(age=29 * DAY)
    # An admin report whose email failed: a resend attaches its chart.
    failed_admin = _report(age=40 * DAY)
    _email(status=Notification.Status.FAILED, age=40 * DAY, report=failed_admin)
    sent_admin = _report(age=40 * DAY)
    _email(status=Notification.Status.SENT, age=40 * DAY, report=sent_admin)
    # A weekly report's email finds its report by student and week.
    weekly_unknown = _report(age=40 * DAY, student=student, label="2026-W40")
    _email(status=Notification.Status.UNKNOWN, age=40 * DAY, user=student, period="2026-W40",
           kind=Notification.Kind.WEEKLY_REPORT)

    dry = stored_email_cleanup(now=NOW, dry_run=True)
    assert dry == stored_email_cleanup(now=NOW) == {"emails_emptied": 1, "reports_emptied": 2}

    stored = {r.pk: (r.html != "", bytes(r.chart_png) != b"", r.data)
              for r in Report.objects.all()}
    assert stored == {old.pk: (False, False, old.data), recent.pk: (True, True, recent.data),
                      failed_admin.pk: (True, True, failed_admin.data),
                      sent_admin.pk: (False, False, sent_admin.data),
                      weekly_unknown.pk: (True, True, weekly_unknown.data)}


# --- Temporary files ------------------------------------------------------------------------


# File times are compared with the real clock's (a file made now is new), so these tests count
# ages back from the real now.


def _file(path: Path, *, age: datetime.timedelta, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    _age(path, age)
    return path


def _age(path: Path, age: datetime.timedelta) -> None:
    stamp = (timezone.now() - age).timestamp()
    os.utime(path, (stamp, stamp))


@pytest.fixture
def tmp_tree(tmp_path):
    """var/tmp with old and new files, nested directories, and links leading out of it."""
    root = tmp_path / "var" / "tmp"
    outside = tmp_path / "elsewhere"
    _file(outside / "precious.txt", age=400 * DAY)
    _file(outside / "dir" / "precious-too.txt", age=400 * DAY)
    _file(root / "old.part", age=25 * HOUR, size=100)
    _file(root / "new.part", age=23 * HOUR)
    _file(root / "job" / "a" / "old-1", age=3 * DAY, size=7)
    _file(root / "job" / "a" / "old-2", age=3 * DAY, size=8)
    _file(root / "keep" / "old", age=3 * DAY, size=5)
    _file(root / "keep" / "new", age=HOUR)
    (root / "empty-old").mkdir()
    (root / "empty-new").mkdir()
    (root / "link-to-file").symlink_to(outside / "precious.txt")
    (root / "link-to-dir").symlink_to(outside / "dir", target_is_directory=True)
    os.utime(root / "link-to-file", (0, 0), follow_symlinks=False)
    for directory in (root / "job" / "a", root / "job", root / "keep", root / "empty-old"):
        _age(directory, 3 * DAY)
    return root, outside


def _listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def test_old_temporary_files_go_and_links_lead_nowhere(tmp_tree):
    root, outside = tmp_tree
    everything, elsewhere = _listing(root), _listing(outside)

    now = timezone.now()
    dry = tmp_files_cleanup(now=now, root=root, dry_run=True)
    assert _listing(root) == everything
    assert dry == tmp_files_cleanup(now=now, root=root) == {
        "files_deleted": 4, "bytes_freed": 120, "directories_removed": 3}

    assert _listing(root) == {"new.part", "keep", "keep/new", "empty-new", "link-to-file",
                              "link-to-dir"}
    assert _listing(outside) == elsewhere  # nothing followed out of var/tmp
    assert root.is_dir()


def test_temporary_files_use_var_tmp_and_the_setting(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    settings.CLEANUP_TMP_HOURS = 48
    _file(tmp_path / "tmp" / "one-day", age=25 * HOUR)
    _file(tmp_path / "tmp" / "three-days", age=3 * DAY)
    assert tmp_files_cleanup()["files_deleted"] == 1
    assert _listing(tmp_path / "tmp") == {"one-day"}


def test_no_tmp_directory_is_nothing_to_do(tmp_path):
    assert tmp_files_cleanup(root=tmp_path / "missing") == {
        "files_deleted": 0, "bytes_freed": 0, "directories_removed": 0}
    (tmp_path / "real").mkdir()
    _file(tmp_path / "real" / "old", age=3 * DAY)
    (tmp_path / "tmp").symlink_to(tmp_path / "real", target_is_directory=True)
    assert tmp_files_cleanup(root=tmp_path / "tmp")["files_deleted"] == 0
    assert (tmp_path / "real" / "old").exists()


# --- Health-check history and job records ---------------------------------------------------


def test_old_health_check_runs_go(settings):
    settings.MAINTENANCE_HEALTH_RETENTION_DAYS = 14
    for age in (15 * DAY, 20 * DAY, 13 * DAY, HOUR):
        HealthCheckRun.objects.create(checked_at=NOW - age, source="job", status="pass")
    dry = cleanup.health_runs_cleanup(now=NOW, dry_run=True)
    assert HealthCheckRun.objects.count() == 4
    assert dry == cleanup.health_runs_cleanup(now=NOW, batch_size=1) == {
        "health_runs_deleted": 2}
    assert HealthCheckRun.objects.count() == 2


# --- Running the parts ----------------------------------------------------------------------


def test_a_failing_part_is_reported_and_the_others_still_run(student, monkeypatch, tmp_path,
                                                             settings):
    settings.VAR_DIR = tmp_path
    session(student, idle=7 * HOUR)
    HealthCheckRun.objects.create(checked_at=NOW - 30 * DAY, source="job", status="pass")

    def broken(**options):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(cleanup, "stored_email_cleanup", broken)
    report = cleanup_run(now=NOW)
    assert report.errors == {"email": "RuntimeError: the disk is on fire"}
    assert report.parts["sessions"]["abandoned"] == 1
    assert report.parts["health"] == {"health_runs_deleted": 1}
    with pytest.raises(RuntimeError, match="on fire"):
        report.raise_first_error()


def test_an_unknown_part_is_refused():
    with pytest.raises(ValueError, match="Unknown cleanup part"):
        cleanup_run(parts=["sessions", "attempts"])


def test_a_spent_time_budget_leaves_the_rest_for_the_next_run(student, monkeypatch, tmp_path,
                                                              settings):
    settings.VAR_DIR = tmp_path
    for _ in range(4):
        session(student, idle=7 * HOUR)
    clock = itertools.count(0, 100)  # a simulated monotonic clock: 100 s a reading
    monkeypatch.setattr(pruning.time, "monotonic", lambda: next(clock))
    report = cleanup_run(now=NOW, batch_size=1, time_limit_s=150)
    assert report.parts["sessions"]["abandoned"] < 4
    assert report.unfinished == ["sessions", "tokens", "jobs", "email", "tmp", "health"]


# --- The jobs -------------------------------------------------------------------------------


def test_the_jobs_run_their_parts_and_are_recorded(student, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    session(student, status=Status.ABANDONED, idle=40 * DAY, now=timezone.now())
    _token(student, "expired", expires_at=timezone.now() - 40 * DAY)
    _file(tmp_path / "tmp" / "old", age=400 * DAY)
    HealthCheckRun.objects.create(checked_at=timezone.now() - 30 * DAY, source="job",
                                  status="pass")
    results = {name: deliver({"id": f"{name:x<32}"[:32],
                              "func": f"maintenance.tasks.{name}"})
               for name in ("session_cleanup", "token_cleanup", "tmp_cleanup")}
    assert results["session_cleanup"] == {"parts": {"sessions": {"abandoned": 0,
                                                                 "deleted": 1}}}
    assert results["token_cleanup"]["parts"]["tokens"]["api_tokens_deleted"] == 1
    assert set(results["tmp_cleanup"]["parts"]) == {"tmp", "email", "health"}
    assert results["tmp_cleanup"]["parts"]["tmp"]["files_deleted"] == 1
    assert results["tmp_cleanup"]["parts"]["health"] == {"health_runs_deleted": 1}
    assert set(JobRun.objects.values_list("job", "outcome", "queue")) == {
        (f"maintenance.tasks.{name}", "succeeded", "maintenance") for name in results}


# --- The command ----------------------------------------------------------------------------


def test_the_command_explains_itself(run_command):
    code, out, _ = run_command("cleanup", "--help")
    assert code == 0
    for part in PARTS:
        assert part in out
    assert "--dry-run" in out and "--no-input" in out


def test_the_command_dry_run_prints_counts_and_changes_nothing(run_command, student):
    session(student, idle=400 * DAY, now=timezone.now())
    code, out, err = run_command("cleanup", "--dry-run", "--only", "sessions,health")
    assert code == 0, err
    assert "1 idle practice session would be abandoned; 1 empty abandoned session would be " \
           "deleted" in out
    assert "0 health-check runs would be deleted" in out
    assert "tokens" not in out
    assert "Dry run: nothing was changed" in out
    assert PracticeSession.objects.get().status == Status.STARTED


def test_the_command_needs_no_input_without_a_terminal(run_command, student):
    session(student, idle=400 * DAY, now=timezone.now())
    code, _, err = run_command("cleanup")
    assert code == 2 and "--no-input" in err
    assert PracticeSession.objects.get().status == Status.STARTED


def test_the_command_cleans_with_no_input_and_prints_json(run_command, student, tmp_path,
                                                          settings):
    settings.VAR_DIR = tmp_path
    session(student, idle=400 * DAY, now=timezone.now())
    code, out, err = run_command("cleanup", "--no-input", "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["dry_run"] is False and printed["errors"] == {}
    assert printed["parts"]["sessions"] == {"abandoned": 1, "deleted": 1}
    assert set(printed["parts"]) == set(PARTS)
    assert not PracticeSession.objects.exists()


@pytest.mark.parametrize(("answer_given", "code", "status"),
                         [("n\n", 1, Status.STARTED), ("y\n", 0, Status.ABANDONED)])
def test_on_a_terminal_the_command_shows_what_would_go_and_asks(run_command, student, monkeypatch,
                                                                answer_given, code, status):
    monkeypatch.setattr("maintenance.management.commands.cleanup.is_interactive", lambda: True)
    session(student, idle=7 * HOUR, now=timezone.now())
    exit_code, out, err = run_command("cleanup", "--only", "sessions", stdin_text=answer_given)
    assert exit_code == code
    assert "1 idle practice session would be abandoned" in out
    assert PracticeSession.objects.get().status == status
    if code:
        assert "Nothing changed." in err
    else:
        assert "1 idle practice session abandoned" in out and "Cleanup done" in out


@pytest.mark.parametrize("only", ["sessions,attempts", ",", "everything"])
def test_the_command_refuses_unknown_parts(run_command, only):
    code, _, err = run_command("cleanup", "--dry-run", "--only", only)
    assert code == 2 and "--only takes a comma list of sessions, tokens" in err


def test_the_command_exits_1_when_a_part_fails(run_command, monkeypatch, tmp_path, settings):
    settings.VAR_DIR = tmp_path

    def broken(**options):
        raise OSError("Permission denied: var/tmp/x")

    monkeypatch.setattr(cleanup, "tmp_files_cleanup", broken)
    code, out, _ = run_command("cleanup", "--no-input", "--only", "tmp,health")
    assert code == 1
    assert "tmp       failed: OSError: Permission denied" in out
    assert "health    0 health-check runs deleted" in out
    assert "Cleanup failed in tmp" in out

