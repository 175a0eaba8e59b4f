"""`manage.py send_notifications`: one kind of student email now, with every rule applied;
--dry-run says to whom and why not, and records nothing; bad input exits 2 with a sentence."""


import pytest
from django.utils import timezone

from analytics.models import StudentAchievement
from core.models import Achievement
from notifications.models import Notification, UndeliverableAddress
from notifications.services import student_email_pause
from notifications.tests.conftest import ledger

Kind = Notification.Kind
Status = Notification.Status
Reason = Notification.Reason

pytestmark = pytest.mark.django_db


@pytest.fixture
def students(make_student):
    made = {
        "ready": make_student(email="ready@example.com"),
        "opted_out": make_student(email="opted-out@example.com", daily_summary=False),
        "idle": make_student(email="idle@example.com", review_due=False),
        "bounced": make_student(email="bounced@example.com"),
    }
    UndeliverableAddress.objects.create(address="bounced@example.com", reason="bounced")
    return made


def lines_of(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if "@" in line.split()[0]}


def test_dry_run_says_to_whom_and_why_not_and_records_nothing(run_command, students, outbox):
    code, out, err = run_command("send_notifications", "--kind", "daily_summary",
                                 "--date", "2026-12-08", "--dry-run")

    assert (code, err) == (0, "")
    lines = lines_of(out)
    assert lines["ready@example.com"].endswith("2026-12-08               would send")
    assert lines["opted-out@example.com"].endswith("skipped: opted out")
    assert lines["idle@example.com"].endswith(
        "skipped: nothing to say (no answers that day and nothing due for review)")
    assert lines["bounced@example.com"].endswith("skipped: undeliverable address")
    assert out.splitlines()[-1] == (
        "daily_summary: 1 send, 3 skipped (dry run: nothing sent or recorded)")
    assert ledger().count() == 0
    assert outbox == []


def test_a_real_run_sends_and_records_and_a_second_one_sends_nothing_more(
        run_command, students, outbox):
    code, out, err = run_command("send_notifications", "--kind", "daily_summary",
                                 "--date", "2026-12-08")

    assert (code, err) == (0, "")
    assert [m.to for m in outbox] == [["ready@example.com"]]
    assert "Outcome: " in out and "1 sent" in out
    # The ledger says what the command said.
    assert {row.address: (row.status, row.reason) for row in ledger()} == {
        "ready@example.com": (Status.SENT, ""),
        "opted-out@example.com": (Status.SKIPPED, Reason.OPTED_OUT),
        "idle@example.com": (Status.SKIPPED, Reason.NOTHING_TO_SAY),
        "bounced@example.com": (Status.SKIPPED, Reason.UNDELIVERABLE),
    }
    assert set(ledger().values_list("period", flat=True)) == {"2026-12-08"}

    code, out, _ = run_command("send_notifications", "--kind", "daily_summary",
                               "--date", "2026-12-08", "--user", "READY@example.com")

    assert code == 0
    assert lines_of(out)["ready@example.com"].endswith("already in the ledger: sent")
    assert len(outbox) == 1 and ledger().count() == 4


def test_achievements_are_only_claimed_by_a_real_run(run_command, make_student, outbox):
    student = make_student(email="winner@example.com")
    achievement = Achievement.objects.order_by("id").first()
    earned = StudentAchievement.objects.create(
        student=student, achievement=achievement, earned_at=timezone.now(),
        earned_on=timezone.now().date(), value=achievement.threshold)

    code, out, _ = run_command("send_notifications", "--kind", "achievement", "--dry-run",
                               "--json")
    earned.refresh_from_db()
    assert code == 0 and '"outcome": "would send"' in out
    assert earned.announced_at is None and ledger().count() == 0

    code, out, _ = run_command("send_notifications", "--kind", "achievement")
    earned.refresh_from_db()
    assert code == 0
    assert earned.announced_at is not None
    assert ledger(kind=Kind.ACHIEVEMENT).get().status == Status.SENT
    assert [m.to for m in outbox] == [["winner@example.com"]]


def test_while_student_email_is_paused_it_says_so_and_sends_nothing(
        run_command, students, outbox):
    student_email_pause()
    code, out, _ = run_command("send_notifications", "--kind", "daily_summary",
                               "--date", "2026-12-08", "--user", "ready@example.com")

    assert code == 0
    assert lines_of(out)["ready@example.com"].endswith("waits: student email is paused")
    assert outbox == []
    assert ledger().get().status == Status.QUEUED  # it goes when email is resumed


def test_a_send_that_fails_exits_1(run_command, students, settings, closed_port):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port

    code, out, err = run_command("send_notifications", "--kind", "daily_summary",
                                 "--date", "2026-12-08", "--user", "ready@example.com")

    assert code == 1
    assert "Outcome: 1 failed" in out
    assert "Some emails were not sent" in err and "Traceback" not in err
    assert ledger().get().status == Status.FAILED


@pytest.mark.parametrize(("argv", "message"), [
    (["--date", "2026-13-01"], "--date '2026-13-01' is not a date (YYYY-MM-DD)."),
    (["--date", "yesterday"], "--date 'yesterday' is not a date (YYYY-MM-DD)."),
    (["--user", "nobody@example.com"], "No student with the email nobody@example.com."),
    (["--user", "not-an-address"], "--user 'not-an-address' is not an email address."),
])
def test_bad_input_exits_2_with_a_sentence_and_changes_nothing(
        run_command, students, outbox, argv, message):
    code, out, err = run_command("send_notifications", "--kind", "daily_summary", *argv)

    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert ledger().count() == 0 and outbox == []


def test_a_kind_is_required_and_must_be_a_student_kind(run_command, db):
    assert run_command("send_notifications")[0] == 2
    code, _, err = run_command("send_notifications", "--kind", "admin_report")
    assert code == 2 and "invalid choice: 'admin_report'" in err


def test_help(run_command):
    code, out, _ = run_command("send_notifications", "--help")

    assert code == 0
    for words in ("--kind", "--date", "--user", "--dry-run", "--json", "daily_summary",
                  "study_reminder", "weekly_report", "achievement", "once per student"):
        assert words in " ".join(out.split()), words
