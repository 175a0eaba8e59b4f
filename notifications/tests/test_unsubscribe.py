"""Unsubscribe links: tokens, the one-click endpoint (RFC 8058) and the page behind the link."""

from unittest import mock

import pytest
from django.core import signing
from django.db import DatabaseError
from django.test import Client, override_settings
from django.urls import reverse

from core.services import student_create
from notifications.models import NotificationPreference
from notifications.unsubscribe import (
    PREFERENCE_FIELDS,
    InvalidUnsubscribeToken,
    list_unsubscribe_headers,
    unsubscribe_apply,
    unsubscribe_token,
    unsubscribe_token_read,
    unsubscribe_url,
)

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
ALL_ON = {"email_enabled": True, "daily_summary": True, "study_reminder": True,
          "weekly_report": True, "achievements": True}


@pytest.fixture
def user(db):
    return student_create(email="ada@example.com").user


def preferences(user) -> dict:
    return NotificationPreference.objects.filter(user=user).values(*ALL_ON).get()


def path_of(token: str) -> str:
    return reverse("notifications:unsubscribe", kwargs={"token": token})


@pytest.fixture
def one_click():
    # What a mail client sends: no cookies, no CSRF token, and CSRF checks as in production.
    client = Client(enforce_csrf_checks=True)

    def post(token: str, **kwargs):
        return client.post(path_of(token), ONE_CLICK, content_type=FORM, **kwargs)

    return post


# --- Tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PREFERENCE_FIELDS)
def test_a_token_reads_back_as_its_user_and_kind(kind):
    assert unsubscribe_token_read(unsubscribe_token(42, kind)) == (42, kind)


def test_a_token_has_no_timestamp_so_it_never_expires():
    # The same token every time: nothing in it depends on when it was made.
    assert unsubscribe_token(7, "all") == unsubscribe_token(7, "all")
    # The signed payload is just (user, kind): no signing time that a max_age could expire.
    assert signing.Signer(salt="notifications.unsubscribe").unsign_object(
        unsubscribe_token(7, "all")) == [7, "all"]


def test_a_kind_without_an_unsubscribe_link_has_no_token():
    with pytest.raises(ValueError, match="admin_report"):
        unsubscribe_token(1, "admin_report")


@pytest.mark.parametrize("token", [
    "", "x", ":", "not-a-token", "a" * 5000,
    signing.Signer(salt="another.salt", key="k").sign_object([1, "all"]),
])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(InvalidUnsubscribeToken):
        unsubscribe_token_read(token)


def test_a_token_signed_under_another_salt_is_refused():
    forged = signing.Signer(salt="core.something.else").sign_object([1, "all"])
    with pytest.raises(InvalidUnsubscribeToken):
        unsubscribe_token_read(forged)
    with pytest.raises(InvalidUnsubscribeToken):  # nor signing.dumps, sessions' signer
        unsubscribe_token_read(signing.dumps([1, "all"]))


def test_a_correctly_signed_token_for_an_unknown_kind_is_refused():
    token = signing.Signer(salt="notifications.unsubscribe").sign_object([1, "admin_report"])
    with pytest.raises(InvalidUnsubscribeToken):
        unsubscribe_token_read(token)


def test_an_old_key_in_secret_key_fallbacks_still_unsubscribes():
    with override_settings(SECRET_KEY="the-old-key-" + "x" * 40):
        token = unsubscribe_token(5, "weekly_report")
    with override_settings(SECRET_KEY="the-new-key-" + "y" * 40,
                           SECRET_KEY_FALLBACKS=["the-old-key-" + "x" * 40]):
        assert unsubscribe_token_read(token) == (5, "weekly_report")
    with override_settings(SECRET_KEY="the-new-key-" + "y" * 40, SECRET_KEY_FALLBACKS=[]), \
            pytest.raises(InvalidUnsubscribeToken):
        unsubscribe_token_read(token)


@override_settings(PUBLIC_BASE_URL="https://pastq.example.com")
def test_the_url_and_the_one_click_headers_are_absolute():
    url = unsubscribe_url(3, "daily_summary")
    assert url == "https://pastq.example.com" + path_of(unsubscribe_token(3, "daily_summary"))
    assert list_unsubscribe_headers(3, "daily_summary") == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


# --- The service ----------------------------------------------------------------------------


def test_apply_switches_one_kind_off_once(user, django_assert_num_queries):
    with django_assert_num_queries(1):  # one UPDATE
        assert unsubscribe_apply(user.pk, "achievement") is True
    assert preferences(user) == ALL_ON | {"achievements": False}
    assert unsubscribe_apply(user.pk, "achievement") is False
    assert preferences(user) == ALL_ON | {"achievements": False}


def test_apply_creates_the_row_of_a_student_who_has_none(user):
    NotificationPreference.objects.filter(user=user).delete()
    assert unsubscribe_apply(user.pk, "study_reminder") is True
    assert preferences(user) == ALL_ON | {"study_reminder": False}
    assert NotificationPreference.objects.filter(user=user).count() == 1


def test_apply_for_a_deleted_account_changes_nothing(db):
    assert unsubscribe_apply(999_999, "all") is False
    assert not NotificationPreference.objects.exists()


# --- The page and the one-click endpoint ----------------------------------------------------


def test_get_shows_what_would_stop_and_does_not_unsubscribe(user, client):
    # Mail scanners fetch every link in a message: a GET must change nothing.
    token = unsubscribe_token(user.pk, "daily_summary")
    response = client.get(path_of(token))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<meta name="robots" content="noindex">' in page
    assert "daily summary emails" in page and '<form method="post">' in page
    assert response["X-Robots-Tag"] == "noindex"
    assert "no-store" in response["Cache-Control"]
    assert client.head(path_of(token)).status_code == 200
    assert preferences(user) == ALL_ON


def test_one_click_post_without_csrf_or_login_unsubscribes_just_that_kind(user, one_click):
    response = one_click(unsubscribe_token(user.pk, "daily_summary"))
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert "notification settings" in response.content.decode()  # how to undo it
    assert preferences(user) == ALL_ON | {"daily_summary": False}


def test_one_click_as_multipart_works_too(user):
    # RFC 8058 allows multipart/form-data as well.
    response = Client(enforce_csrf_checks=True).post(
        path_of(unsubscribe_token(user.pk, "weekly_report")), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert preferences(user) == ALL_ON | {"weekly_report": False}


def test_the_pages_own_button_unsubscribes(user):
    client = Client(enforce_csrf_checks=True)
    path = path_of(unsubscribe_token(user.pk, "study_reminder"))
    client.get(path)
    response = client.post(path, {"confirm": "yes"})
    assert response.status_code == 200
    assert preferences(user) == ALL_ON | {"study_reminder": False}


def test_all_turns_the_master_switch_off(user, one_click):
    assert one_click(unsubscribe_token(user.pk, "all")).status_code == 200
    assert preferences(user) == ALL_ON | {"email_enabled": False}


def test_a_second_one_click_post_is_harmless(user, one_click):
    token = unsubscribe_token(user.pk, "achievement")
    one_click(token)
    response = one_click(token)
    assert response.status_code == 200
    assert "already unsubscribed" in response.content.decode()
    assert preferences(user) == ALL_ON | {"achievements": False}
    assert NotificationPreference.objects.filter(user=user).count() == 1


def tampered(token: str) -> str:
    payload, signature = token.rsplit(":", 1)
    return f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}:{signature}"


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_is_refused_and_changes_nothing(user, method):
    token = tampered(unsubscribe_token(user.pk, "daily_summary"))
    response = getattr(Client(enforce_csrf_checks=True), method)(path_of(token))
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert '<meta name="robots" content="noindex">' in response.content.decode()
    assert preferences(user) == ALL_ON


def test_another_users_signature_on_this_users_payload_is_refused(user, one_click):
    other = student_create(email="grace@example.com").user
    mine_payload = unsubscribe_token(user.pk, "all").rsplit(":", 1)[0]
    other_signature = unsubscribe_token(other.pk, "all").rsplit(":", 1)[1]
    assert one_click(f"{mine_payload}:{other_signature}").status_code == 400
    assert preferences(user) == ALL_ON and preferences(other) == ALL_ON


def test_a_token_forged_with_another_salt_is_refused(user, one_click):
    forged = signing.Signer(salt="forged").sign_object([user.pk, "all"])
    assert one_click(forged).status_code == 400
    assert preferences(user) == ALL_ON


def test_a_token_of_a_deleted_account_is_answered_not_failed(user, one_click):
    token = unsubscribe_token(user.pk, "all")
    user.delete()
    assert one_click(token).status_code == 200
    assert not NotificationPreference.objects.exists()


def test_a_database_failure_is_a_page_saying_try_again_not_a_500(user, one_click):
    with mock.patch("notifications.views.unsubscribe_apply", side_effect=DatabaseError("down")):
        response = one_click(unsubscribe_token(user.pk, "all"))
    assert response.status_code == 503
    assert "try the link again" in response.content.decode()


def test_other_methods_are_not_allowed(user):
    assert Client().put(path_of(unsubscribe_token(user.pk, "all"))).status_code == 405
    assert preferences(user) == ALL_ON
