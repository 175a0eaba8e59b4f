"""The unsubscribe page: a link in every student email, and the RFC 8058 one-click endpoint.

GET only shows what the link would switch off, with a button: mail scanners and link previews
fetch every link in a message, so a GET that unsubscribed would switch people off who never
asked. POST switches it off, whether it comes from that button or from a mail client's
one-click Unsubscribe (body `List-Unsubscribe=One-Click`, no cookies, no CSRF token: the signed
token in the URL is the only credential, so the view is CSRF-exempt and needs no login).
"""

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications.unsubscribe import (
    KIND_DESCRIPTIONS,
    InvalidUnsubscribeToken,
    unsubscribe_apply,
    unsubscribe_token_read,
)

logger = logging.getLogger(__name__)

_TEMPLATES = "notifications/unsubscribe/"


def _page(request, name: str, context: dict | None = None, status: int = 200):
    response = render(request, _TEMPLATES + name, context or {}, status=status)
    response["X-Robots-Tag"] = "noindex"
    return response


@csrf_exempt
@login_not_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    try:
        user_id, kind = unsubscribe_token_read(token)
    except InvalidUnsubscribeToken:
        return _page(request, "invalid.html", status=400)
    context = {"kind": kind, "what": KIND_DESCRIPTIONS[kind], "everything": kind == "all"}
    if request.method != "POST":
        return _page(request, "confirm.html", context)
    try:
        changed = unsubscribe_apply(user_id, kind)
    except DatabaseError:
        # A one-click receiver retries on an error; a person gets a sentence, not a 500.
        logger.exception("Could not unsubscribe user %s from %s", user_id, kind)
        return _page(request, "unavailable.html", status=503)
    # The body (`List-Unsubscribe=One-Click`, or the page's form) is not read: any POST with a
    # valid token unsubscribes, and a malformed multipart body cannot turn that into an error.
    logger.info("User %s unsubscribed from %s%s", user_id, kind, "" if changed else " (already off)")
    return _page(request, "done.html", {**context, "changed": changed})
