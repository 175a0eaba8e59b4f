"""`manage.py api_token issue|list|revoke`: what it prints, what it stores, its exit codes."""

import datetime as dt
import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.models import ApiToken
from core.services import api_token_issue, api_token_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def server_user(db):
    return get_user_model().objects.create_user(email="server@example.com")


def test_issue_prints_the_token_once_and_stores_only_its_digest(run_command, student):
    code, out, err = run_command("api_token", "issue", "--user", "STUDENT@example.com",
                                 "--name", "mobile app", "--expires-days", "30")
    assert code == 0, err
    lines = out.splitlines()
    raw = lines[0]
    token = ApiToken.objects.get()
    assert raw.startswith("pq_") and raw.startswith(token.prefix)
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in "".join(lines[1:])  # shown once
    assert token.user == student and token.name == "mobile app"
    expected = timezone.now() + dt.timedelta(days=30)
    assert abs((token.expires_at - expected).total_seconds()) < 60
    assert f"prefix {token.prefix}" in out
    assert f"expires {token.expires_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" in out
    assert api_token_verify(raw) == token  # the printed token works


def test_issue_without_expiry_never_expires(run_command, server_user):
    code, out, _ = run_command("api_token", "issue", "--user", "server@example.com",
                               "--name", "web server")
    assert code == 0
    assert ApiToken.objects.get().expires_at is None
    assert "expires never." in out


@pytest.mark.parametrize("argv, message", [
    (["--user", "nobody@example.com", "--name", "x"], "No user with the email address"),
    (["--user", "server@example.com", "--name", "x", "--expires-days", "0"],
     "--expires-days must be at least 1, not 0"),
    (["--user", "server@example.com", "--name", "x", "--expires-days", "-3"],
     "--expires-days must be at least 1, not -3"),
    (["--user", "server@example.com", "--name", "   "], "A token needs a name"),
    (["--user", "server@example.com", "--name", "x", "--expires-days", "soon"],
     "invalid int value"),
    (["--name", "x"], "the following arguments are required: --user"),
])
def test_issue_refuses_bad_input_with_exit_2(run_command, server_user, argv, message):
    code, out, err = run_command("api_token", "issue", *argv)
    assert code == 2
    assert message in err
    assert not ApiToken.objects.exists()
    assert "pq_" not in out


def test_no_action_is_a_usage_error(run_command):
    code, _, err = run_command("api_token")
    assert code == 2 and "ACTION" in err


def test_list_shows_every_token_with_its_state(run_command, student, server_user):
    active, _ = api_token_issue(user=student, name="phone")
    revoked, _ = api_token_issue(user=student, name="old laptop")
    revoked.revoked_at = timezone.now()
    revoked.save()
    expired, _ = api_token_issue(user=server_user, name="web server",
                                 expires_at=timezone.now() + dt.timedelta(days=1))
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(1))
    used_at = dt.datetime(2026, 3, 1, 9, 5, tzinfo=dt.UTC)
    ApiToken.objects.filter(pk=active.pk).update(last_used_at=used_at)

    code, out, _ = run_command("api_token", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["PREFIX", "NAME", "USER", "CREATED", "(UTC)", "EXPIRES",
                              "LAST", "USED", "STATE"]
    by_prefix = {row.split()[0]: row for row in rows}
    assert set(by_prefix) == {active.prefix, revoked.prefix, expired.prefix}
    assert by_prefix[active.prefix].endswith("active")
    assert "2026-03-01 09:05" in by_prefix[active.prefix]
    assert "phone" in by_prefix[active.prefix] and "student@example.com" in by_prefix[active.prefix]
    assert by_prefix[revoked.prefix].endswith("revoked")
    assert by_prefix[expired.prefix].endswith("expired")
    assert "server@example.com" in by_prefix[expired.prefix]
    assert [row.split()[0] for row in rows] == [expired.prefix, revoked.prefix, active.prefix]

    code, out, _ = run_command("api_token", "list", "--user", "server@example.com")
    assert code == 0
    assert [row.split()[0] for row in out.splitlines()[1:]] == [expired.prefix]


def test_list_of_nothing_and_of_an_unknown_user(run_command, server_user):
    assert run_command("api_token", "list") == (0, "No tokens.\n", "")
    code, _, err = run_command("api_token", "list", "--user", "ghost@example.com")
    assert code == 2 and "No user" in err


def test_revoke_by_prefix(run_command, student):
    token, raw = api_token_issue(user=student, name="phone")
    other, other_raw = api_token_issue(user=student, name="tablet")
    code, out, err = run_command("api_token", "revoke", token.prefix)
    assert code == 0, err
    assert out == f"Revoked {token.prefix} ('phone', student@example.com).\n"
    token.refresh_from_db()
    assert token.revoked_at is not None and api_token_verify(raw) is None
    assert api_token_verify(other_raw) is not None  # the other one still works

    code, _, err = run_command("api_token", "revoke", token.prefix)  # not active any more
    assert code == 2 and "No active token" in err


def test_revoke_refuses_an_unknown_or_expired_or_ambiguous_prefix(run_command, student):
    first, _ = api_token_issue(user=student, name="one")
    second, _ = api_token_issue(user=student, name="two")
    # Give both the same beginning, so a short prefix matches both.
    ApiToken.objects.filter(pk=first.pk).update(prefix="pq_AAAA1111")
    ApiToken.objects.filter(pk=second.pk).update(prefix="pq_AAAA2222")

    code, _, err = run_command("api_token", "revoke", "pq_AAAA")
    assert code == 2 and "matches 2 active tokens" in err
    assert "pq_AAAA1111" in err and "pq_AAAA2222" in err
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()

    code, _, err = run_command("api_token", "revoke", "pq_zzzz")
    assert code == 2 and "No active token" in err

    # Too short to be deliberate, even when it would match.
    for too_short in ("pq_", "pq_AAA", "AAAA1111"):
        code, _, err = run_command("api_token", "revoke", too_short)
        assert code == 2 and "Give at least 7 characters" in err
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()

    # The comparison is exact: a prefix in the wrong case matches nothing (SQLite's LIKE would).
    code, _, err = run_command("api_token", "revoke", "pq_aaaa1111")
    assert code == 2 and "No active token" in err

    ApiToken.objects.filter(pk=first.pk).update(expires_at=timezone.now() - dt.timedelta(1))
    code, _, _ = run_command("api_token", "revoke", "pq_AAAA1111")
    assert code == 2
    code, out, _ = run_command("api_token", "revoke", "pq_AAAA")  # now only one is active
    assert code == 0 and "pq_AAAA2222" in out
