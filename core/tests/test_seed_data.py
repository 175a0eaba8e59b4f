import datetime
import hashlib
import json
import shutil
from unittest import mock

import pytest

from core import seeding
from core.models import Attempt, PracticeSession, Question, SeedRecord, User

END = "2024-03-10"
SMALL = ("--users", "2", "--days", "5", "--end-date", END, "--seed", "7", "--force")


def world_counts():
    return (Question.objects.count(), User.objects.count(), PracticeSession.objects.count(),
            Attempt.objects.count())


def fingerprint():
    """A digest of every seeded fact, independent of database ids."""
    rows = Attempt.objects.order_by(
        "student__email", "answered_at", "question__content_hash").values_list(
        "student__email", "question__content_hash", "choice__label", "is_correct",
        "time_taken_ms", "answered_at", "local_date", "attempt_number",
        "session__started_at", "session__status")
    text = "\n".join("|".join(str(v) for v in row) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def test_seed_builds_a_world_and_a_second_run_changes_nothing(catalogue, run_command):
    code, out, err = run_command("seed_data", *SMALL)
    assert code == 0, err
    first = world_counts()
    assert first[0] >= 60 and first[1] == 5 and first[3] > 0
    code, out, _ = run_command("seed_data", *SMALL)
    assert code == 0
    assert "nothing changed" in out
    assert world_counts() == first


def test_seed_world_properties(catalogue, run_command):
    run_command("seed_data", "--users", "12", "--days", "20", "--end-date", END, "--force")
    named = User.objects.filter(email__in=[f"{n[0]}@example.com" for n in seeding.NAMED_STUDENTS])
    assert named.count() == 3
    assert User.objects.filter(is_demo=True).count() == 15
    # Nothing a student could log in to exists yet: no demo student has a password.
    assert not any(u.has_usable_password() for u in User.objects.filter(is_demo=True))
    zones = set(User.objects.values_list("profile__timezone", flat=True))
    assert {"Pacific/Auckland", "Pacific/Honolulu"} <= zones
    last = datetime.date.fromisoformat(END)
    assert not Attempt.objects.filter(local_date__gt=last + datetime.timedelta(days=1)).exists()
    # Every question answered in the seed has the right choice marked as correct.
    wrong = Attempt.objects.exclude(is_correct=models_f("choice__is_correct"))
    assert not wrong.exists()
    # The latent-ability model shows: easy questions are answered correctly more often.
    def accuracy(level):
        attempts = Attempt.objects.filter(question__difficulty=level)
        return attempts.filter(is_correct=True).count() / attempts.count()
    assert accuracy("easy") > accuracy("hard")


def models_f(name):
    from django.db.models import F
    return F(name)


def test_same_seed_and_end_date_give_the_same_data(catalogue, run_command):
    run_command("seed_data", *SMALL)
    first = fingerprint()
    code, out, err = run_command("seed_data", "--reset", "--no-input", *SMALL)
    assert code == 0, err
    assert "Deleted" in out
    assert fingerprint() == first


def test_seeded_data_is_the_same_on_every_database(catalogue, run_command):
    """CI runs this on SQLite and on PostgreSQL: both must produce exactly these rows. If the
    seed bank or the activity model changes on purpose, update the digest."""
    run_command("seed_data", *SMALL)
    assert (Attempt.objects.count(), fingerprint()) == EXPECTED_SMALL_WORLD


EXPECTED_SMALL_WORLD = (143, "b49ff15e8dbe3aa66d3c63db665615fd38a890c82d6ac7ef25e98e1385639323")


def test_different_flags_without_a_terminal_exit_2_and_point_to_reset(catalogue, run_command):
    run_command("seed_data", *SMALL)
    before = world_counts()
    code, _, err = run_command("seed_data", "--users", "3", "--days", "5", "--end-date", END,
                               "--seed", "7", "--force")
    assert code == 2
    assert "--reset" in err and "users 2 → 3" in err
    assert world_counts() == before


def test_reset_without_terminal_or_no_input_refuses(catalogue, run_command):
    run_command("seed_data", *SMALL)
    before = world_counts()
    code, _, err = run_command("seed_data", "--reset", *SMALL)
    assert code == 2 and "--no-input" in err
    assert world_counts() == before


def test_reset_dry_run_counts_and_changes_nothing(catalogue, run_command):
    run_command("seed_data", *SMALL)
    before = world_counts()
    code, out, _ = run_command("seed_data", "--reset", "--dry-run", *SMALL)
    assert code == 0
    assert f"Would delete 5 demo students with {before[2]} sessions and {before[3]} attempts" in out
    assert world_counts() == before


def test_reset_keeps_questions_real_students_answered(catalogue, run_command, student):
    run_command("seed_data", *SMALL)
    from core.services import attempt_record
    question = Question.objects.order_by("content_hash").first()
    attempt_record(student=student, question=question, choice=question.choices.first(),
                   time_taken_ms=1)
    code, out, _ = run_command("seed_data", "--reset", "--no-input", "--only", "users", *SMALL)
    assert code == 0
    assert "1 seed-bank questions that real students answered are kept" in out
    assert Question.objects.filter(pk=question.pk).exists()
    assert Attempt.objects.filter(student=student).count() == 1


@pytest.mark.parametrize("argv, message", [
    (("--users", "-1"), "invalid non-negative whole number value: '-1'"),
    (("--days", "0"), "invalid positive whole number value: '0'"),
    (("--only", "everything"), "invalid choice: 'everything'"),
    (("--end-date", "yesterday"), "invalid fromisoformat value"),
    (("--dry-run",), "--dry-run goes with --reset"),
])
def test_bad_flags_are_usage_errors_and_write_nothing(catalogue, run_command, argv, message):
    code, _, err = run_command("seed_data", "--force", *argv)
    assert code == 2
    assert message in err
    assert world_counts() == (0, 0, 0, 0)


def test_refuses_with_debug_off_unless_forced(catalogue, run_command, settings):
    settings.DEBUG = False
    code, _, err = run_command("seed_data")
    assert code == 1 and "DEBUG off" in err
    assert not Question.objects.exists()


def test_malformed_seed_bank_names_file_entry_and_problem(catalogue, run_command, tmp_path,
                                                          monkeypatch):
    bank = tmp_path / "bank"
    shutil.copytree(seeding.SEED_BANK_DIR, bank)
    math = json.loads((bank / "MATH.json").read_text())
    del math["questions"][2]["text"]
    (bank / "MATH.json").write_text(json.dumps(math))
    monkeypatch.setattr(seeding, "SEED_BANK_DIR", bank)
    code, _, err = run_command("seed_data", *SMALL)
    assert code == 1
    assert "MATH.json, entry 3, field 'text': is required" in err
    assert world_counts() == (0, 0, 0, 0)
    assert not SeedRecord.objects.exists()


def test_activity_needs_users_first(catalogue, run_command):
    code, _, err = run_command("seed_data", "--only", "activity", *SMALL)
    assert code == 1 and "--only users" in err


def test_if_empty_skips_when_questions_exist(catalogue, run_command):
    run_command("seed_data", "--only", "questions", "--force")
    code, out, _ = run_command("seed_data", "--if-empty", "--force")
    assert code == 0 and "nothing to seed" in out
    assert not User.objects.exists()


def test_output_says_what_the_demo_students_are_for_and_prints_no_password(
        catalogue, run_command):
    code, out, err = run_command("seed_data", *SMALL)
    assert code == 0, err
    assert "password" not in out.lower()
    assert "amara.okafor@example.com" in out
    assert "cannot log in" in out
    assert "analytics, the emails and the read API" in out
    assert "API tokens" in out  # how an operator acts as one of them


def test_help_says_what_the_demo_students_are_for(run_command):
    code, out, _ = run_command("seed_data", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "analytics, the emails and the read API" in text
    assert "--password" not in text


def test_there_is_no_password_flag(catalogue, run_command):
    code, _, err = run_command("seed_data", *SMALL, "--password", "demo-Pass-2024")
    assert code == 2 and "unrecognized arguments: --password" in err
    assert world_counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("end_date_flags", [(), ("--end-date", "2024-03-10")],
                         ids=["default end date", "end date today"])
def test_the_same_flags_give_the_same_world_at_any_hour_of_the_day(
        catalogue, run_command, end_date_flags):
    flags = ("--users", "3", "--days", "3", "--seed", "7", "--force", *end_date_flags)
    digests, latest = [], []
    for hour, minute in [(0, 20), (23, 50)]:
        now = datetime.datetime(2024, 3, 10, hour, minute, tzinfo=datetime.UTC)
        with mock.patch("django.utils.timezone.now", return_value=now):
            code, out, err = run_command("seed_data", *flags)
        assert code == 0, err
        digests.append(fingerprint())
        latest.append(Attempt.objects.order_by("-answered_at").values_list(
            "answered_at", flat=True).first())
        seeding.seed_reset(dry_run=False)
    assert digests[0] == digests[1]
    # Never the future, nor even today: the world stands at 00:00 UTC of the day it is seeded.
    assert latest[0] < datetime.datetime(2024, 3, 10, tzinfo=datetime.UTC)


def test_the_default_end_date_is_yesterday_utc(catalogue, run_command):
    now = datetime.datetime(2024, 3, 10, 12, 0, tzinfo=datetime.UTC)
    with mock.patch("django.utils.timezone.now", return_value=now):
        code, out, err = run_command("seed_data", "--users", "1", "--days", "2", "--force")
    assert code == 0, err
    assert "2 days to 2024-03-09" in out
    assert seeding.seed_recorded_end_date() == datetime.date(2024, 3, 9)


def test_on_a_terminal_different_flags_ask_before_reseeding(catalogue, run_command, monkeypatch):
    from core.management.commands import seed_data

    run_command("seed_data", *SMALL)
    monkeypatch.setattr(seed_data, "is_interactive", lambda: True)
    changed = ("--users", "1", "--days", "5", "--end-date", END, "--seed", "7", "--force")
    code, _, err = run_command("seed_data", *changed, stdin_text="n\n")
    assert code == 1 and "Nothing changed" in err
    assert User.objects.filter(is_demo=True).count() == 5
    code, _, _ = run_command("seed_data", *changed, stdin_text="y\n")
    assert code == 0
    assert User.objects.filter(is_demo=True).count() == 4
