"""The read-only JSON API under /api/v1/ (django-ninja), authenticated with the foundation's API
tokens (`Authorization: Bearer pq_…`; core.services.api_token_verify). docs/api.md.

Every endpoint exists twice: under /me/ for the token's own student, and under
/students/<id>/ for a token whose user holds `analytics.read_any_student` (the app's own
server, acting for its students). Each request costs a fixed number of queries, whatever the
amount of data: the token (and, at most once a minute, its last_used_at), the permission (for
/students/ only), the student's profile, then one or two queries for the endpoint (a page and
its count for the paginated lists).

base.py: the NinjaAPI object, authentication, errors, pagination; endpoints.py: the routes
(importing it registers them on `api`). pastq/urls.py mounts `api.urls` at /api/v1/."""

from analytics.api import endpoints  # noqa: F401  (registers the routes)
from analytics.api.base import api

__all__ = ["api"]
