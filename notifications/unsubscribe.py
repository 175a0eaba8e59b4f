"""Unsubscribe links: signed tokens, the RFC 8058 one-click headers, and the service that
switches an email kind off.

A token says "user U may switch off kind K" and nothing else. It carries no timestamp and never
expires, because a link in an email from last year must still work (RFC 8058 receivers and
people alike use old mail). It is signed with SECRET_KEY under its own salt, so no other signed
value of the project (a session, a password-reset link) can pass for it; after a key rotation
the old key in SECRET_KEY_FALLBACKS keeps old links working (Django's Signer tries them).
"""

import binascii
import json
import zlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from notifications.models import NotificationPreference

# Ledger kind (Notification.Kind) -> the NotificationPreference field that switches it off.
# "all" is the master switch. Staff kinds have no unsubscribe link: staff email goes to the
# addresses in settings.
PREFERENCE_FIELDS = {
    "daily_summary": "daily_summary",
    "study_reminder": "study_reminder",
    "achievement": "achievements",
    "weekly_report": "weekly_report",
    "all": "email_enabled",
}

# What stops, in the words of the pages ("You will no longer receive …").
KIND_DESCRIPTIONS = {
    "daily_summary": "daily summary emails",
    "study_reminder": "study reminder emails",
    "achievement": "achievement emails",
    "weekly_report": "weekly report emails",
    "all": "any email from pastq",
}

_SALT = "notifications.unsubscribe"
# A real token is about 80 characters; anything much longer is not worth an HMAC.
_TOKEN_MAX_LENGTH = 256


class InvalidUnsubscribeToken(Exception):
    """The token was not made by unsubscribe_token with one of this site's keys."""


def _signer() -> signing.Signer:
    # Made per call: Signer reads SECRET_KEY and SECRET_KEY_FALLBACKS when it is created.
    return signing.Signer(salt=_SALT)


def _kind_check(kind: str) -> None:
    if kind not in PREFERENCE_FIELDS:
        raise ValueError(
            f"{kind!r} has no unsubscribe link; kinds that do: {', '.join(PREFERENCE_FIELDS)}")


def unsubscribe_token(user_id: int, kind: str) -> str:
    _kind_check(kind)
    return _signer().sign_object([int(user_id), kind])


def unsubscribe_token_read(token: str) -> tuple[int, str]:
    """(user id, kind) of a token, or InvalidUnsubscribeToken for anything forged, tampered
    with, signed under another salt or key, or naming a kind this site does not know."""
    if not isinstance(token, str) or not token or len(token) > _TOKEN_MAX_LENGTH:
        raise InvalidUnsubscribeToken("not an unsubscribe token")
    try:
        payload = _signer().unsign_object(token)
    except (signing.BadSignature, ValueError, binascii.Error, zlib.error,
            json.JSONDecodeError) as exc:
        raise InvalidUnsubscribeToken("bad signature") from exc
    match payload:
        # bool is an int too; a signed payload is ours, but check its shape all the same.
        case [int() as user_id, str() as kind] if (
            not isinstance(user_id, bool) and kind in PREFERENCE_FIELDS
        ):
            return user_id, kind
    raise InvalidUnsubscribeToken("unknown payload")


def unsubscribe_url(user_id: int, kind: str) -> str:
    """The absolute link for emails: PUBLIC_BASE_URL, where students reach this site."""
    path = reverse("notifications:unsubscribe", kwargs={"token": unsubscribe_token(user_id, kind)})
    return settings.PUBLIC_BASE_URL + path


def list_unsubscribe_headers(user_id: int, kind: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: mail clients show an Unsubscribe button that POSTs
    `List-Unsubscribe=One-Click` to the link. Both headers must be covered by the DKIM
    signature, which the sending service does."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(user_id, kind)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe_apply(user_id: int, kind: str) -> bool:
    """Switch `kind` off for the user ("all": the master switch). Returns whether anything
    changed: False when it was off already, or when the account no longer exists. Idempotent
    and safe under concurrent requests (one-click receivers may POST twice)."""
    _kind_check(kind)
    field = PREFERENCE_FIELDS[kind]
    preferences = NotificationPreference.objects.filter(user_id=user_id)
    # One UPDATE that changes the row only if it is on: its row count says whether it did.
    # update() skips auto_now, so updated_at is set here.
    if preferences.filter(**{field: True}).update(**{field: False, "updated_at": timezone.now()}):
        return True
    if preferences.exists():
        return False  # off already
    if not get_user_model().objects.filter(pk=user_id).exists():
        return False  # the account is gone: nothing is sent to it anyway
    # A student made before preferences existed has no row: create it with the kind off.
    try:
        with transaction.atomic():
            NotificationPreference.objects.create(user_id=user_id, **{field: False})
    except IntegrityError:
        # Made by a concurrent request (or deleted with its user) in between: apply to it.
        return bool(preferences.filter(**{field: True}).update(
            **{field: False, "updated_at": timezone.now()}))
    return True
