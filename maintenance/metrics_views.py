"""`/metrics`: the Prometheus scrape endpoint (maintenance/metrics.py has what it exposes,
docs/metrics.md how to scrape it).

Protected like the health details: staff with `maintenance.view_operations`, or
`Authorization: Bearer $HEALTH_TOKEN` (what a Prometheus scrape config sends). Without either:
401 with a `WWW-Authenticate: Bearer` challenge when nobody is logged in (or a wrong token was
given), 403 for a logged-in user without the permission.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from maintenance.metrics import REGISTRY
from maintenance.views import VIEW_PERMISSION
from maintenance.views import _may_see_details as may_see_details

logger = logging.getLogger(__name__)


def _refused(request) -> HttpResponse:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return HttpResponse(f"The metrics need the permission {VIEW_PERMISSION}.\n",
                            status=403, content_type="text/plain; charset=utf-8")
    response = HttpResponse("The metrics need a staff session or the HEALTH_TOKEN as a bearer "
                            "token.\n", status=401, content_type="text/plain; charset=utf-8")
    if request.headers.get("Authorization", "").startswith("Bearer "):
        response["WWW-Authenticate"] = 'Bearer realm="pastq metrics", error="invalid_token"'
    else:
        response["WWW-Authenticate"] = 'Bearer realm="pastq metrics"'
    return response


@never_cache
@require_GET
def metrics(request):
    """The text format Prometheus asked for (its Accept header: OpenMetrics or the classic
    text format), every figure read from the database now."""
    if not may_see_details(request):
        return _refused(request)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encode(REGISTRY)
    except DatabaseError as exc:
        # Prometheus records the failed scrape (up == 0); the body says why to a person.
        logger.warning("event=metrics_unavailable error=%s", exc)
        return HttpResponse(f"The database could not be read: {exc}\n", status=503,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=content_type)
