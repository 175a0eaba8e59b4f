import pytest

from core.models import Achievement, Subject, Topic, User


@pytest.fixture(autouse=True)
def _no_env_password(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)


def counts():
    return (Subject.objects.count(), Topic.objects.count(), Achievement.objects.count(),
            User.objects.count())


@pytest.mark.django_db
def test_init_db_twice_gives_the_same_state(run_command):
    code, out, _ = run_command("init_db", "--admin-email", "Admin@Example.com")
    assert code == 0, out
    assert "generated password, shown this once" in out
    first = counts()
    assert first == (5, 18, 8, 1)
    password_hash = User.objects.get().password

    code, out, _ = run_command("init_db", "--admin-email", "admin@example.com")
    assert code == 0
    assert counts() == first
    assert User.objects.get().password == password_hash
    assert "keeps its password" in out and "changepassword admin@example.com" in out
    assert "shown this once" not in out
    assert "Verified" in out


@pytest.mark.django_db
def test_explicit_env_password_sets_and_updates(run_command, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-Secret-42")
    run_command("init_db", "--admin-email", "admin@example.com")
    assert User.objects.get().check_password("first-Secret-42")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "second-Secret-42")
    run_command("init_db", "--admin-email", "admin@example.com")
    admin = User.objects.get()
    assert admin.is_superuser and admin.check_password("second-Secret-42")


@pytest.mark.django_db
def test_no_fixed_default_password(run_command):
    run_command("init_db", "--admin-email", "a@example.com")
    run_command("init_db", "--admin-email", "b@example.com")
    a, b = User.objects.order_by("email")
    for weak in ("admin123", "admin", "password", "password123"):
        assert not a.check_password(weak)
    assert a.password != b.password


@pytest.mark.django_db
def test_invalid_admin_email_is_a_usage_error_and_writes_nothing(run_command):
    code, _, err = run_command("init_db", "--admin-email", "not-an-email")
    assert code == 2
    assert "not a valid email address" in err
    assert not Subject.objects.exists()


@pytest.mark.django_db
def test_existing_non_superuser_is_not_promoted(run_command, catalogue):
    User.objects.create_user(email="someone@example.com", password="x")
    code, _, err = run_command("init_db", "--admin-email", "someone@example.com")
    assert code == 1
    assert "is not a superuser" in err
    assert not User.objects.get().is_superuser


@pytest.mark.django_db
def test_on_a_terminal_the_password_is_asked_twice_and_validated(run_command, monkeypatch):
    from core.management.commands import init_db

    answers = iter(["short", "short", "a-Long-enough-pass-9", "different", "a-Long-enough-pass-9",
                    "a-Long-enough-pass-9"])
    monkeypatch.setattr(init_db, "is_interactive", lambda: True)
    monkeypatch.setattr(init_db.getpass, "getpass", lambda prompt="": next(answers))
    code, out, err = run_command("init_db", "--admin-email", "admin@example.com")
    assert code == 0
    assert "too short" in err and "differ" in err
    assert User.objects.get().check_password("a-Long-enough-pass-9")
    assert "shown this once" not in out
