"""The API's frame: the NinjaAPI object, token authentication, the JSON error shape and its
exception handlers, whose data a request reads, and the pagination (docs/api.md)."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import LimitOffsetPagination
from ninja.security import HttpBearer

from core.models import ApiToken, StudentProfile
from core.services import api_token_verify

READ_ANY_STUDENT = "analytics.read_any_student"
DEFAULT_LIMIT, MAX_LIMIT = 50, 100  # page sizes of the paginated lists

# --- Errors: {"error": {"code": ..., "message": ...}} ---------------------------------------


class ApiError(Exception):
    """An error the API answers with, as JSON with a machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_CODE_OF_STATUS = {401: "not_authenticated", 403: "forbidden", 404: "not_found",
                   429: "throttled"}


class ErrorDetail(Schema):
    code: str = Field(..., examples=["not_authenticated"])
    message: str
    details: list[dict[str, Any]] | None = Field(
        None, description="invalid_request only: what was wrong, where.")


class ErrorOut(Schema):
    error: ErrorDetail


ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}


# --- Authentication -------------------------------------------------------------------------


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`: an active token of an active user (api_token_verify
    rejects unknown, revoked and expired tokens and marks the token used at most once a
    minute). The token becomes request.auth."""

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        # As HttpBearer's, without its DEBUG log line, which would write the header (a secret
        # sent with the wrong scheme) to the log.
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return api_token_verify(token.strip())


api = NinjaAPI(
    title="pastq API", version="1", urls_namespace="api-v1", auth=TokenAuth(),
    description="Read-only access to a student's analytics: insights, daily figures, "
                "questions due for review, recommendations and achievements. See docs/api.md.",
)


def _error_response(request: HttpRequest, status: int, code: str, message: str,
                    details: list[dict] | None = None) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = api.create_response(request, {"error": body}, status=status)
    if status == 401:
        challenge = 'Bearer realm="pastq"'
        if request.headers.get("Authorization"):
            challenge += ', error="invalid_token"'
        response["WWW-Authenticate"] = challenge
    return response


@api.exception_handler(ApiError)
def _on_api_error(request, exc: ApiError):
    return _error_response(request, exc.status, exc.code, exc.message)


@api.exception_handler(AuthenticationError)
def _on_not_authenticated(request, exc):
    return _error_response(request, 401, "not_authenticated",
                           "A valid API token is required: Authorization: Bearer <token>. "
                           "Unknown, revoked and expired tokens are refused.")


@api.exception_handler(HttpError)
def _on_http_error(request, exc: HttpError):
    code = _CODE_OF_STATUS.get(exc.status_code, "invalid_request")
    return _error_response(request, exc.status_code, code, exc.message)


@api.exception_handler(Http404)
def _on_not_found(request, exc):
    return _error_response(request, 404, "not_found", "Not found.")


@api.exception_handler(ValidationError)
def _on_invalid(request, exc: ValidationError):
    details = [{"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")),
                "type": str(error.get("type", ""))} for error in exc.errors]
    return _error_response(request, 422, "invalid_request",
                           "The request's parameters are not valid.", details)


# --- Whose data -----------------------------------------------------------------------------


def own_student(request) -> StudentProfile:
    profile = StudentProfile.objects.filter(user_id=request.auth.user_id).first()
    if profile is None:
        raise ApiError(404, "not_a_student", "This token's user is not a student; use "
                       "/api/v1/students/<id>/… with the permission to read any student.")
    return profile


def any_student(request, student_id: int) -> StudentProfile:
    # The permission first: without it nobody learns which ids are students.
    if not request.auth.user.has_perm(READ_ANY_STUDENT):
        raise ApiError(403, "forbidden", "This token may read only its own student's data "
                       "(/api/v1/me/…).")
    profile = StudentProfile.objects.filter(user_id=student_id).first()
    if profile is None:
        raise ApiError(404, "not_found", f"No student with id {student_id}.")
    return profile


# --- Pagination -----------------------------------------------------------------------------


class Pagination(LimitOffsetPagination):
    """limit/offset, {"items": [...], "count": n}; a limit above MAX_LIMIT is a 422."""

    class Input(Schema):
        limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT,
                           description=f"Items per page, 1–{MAX_LIMIT}.")
        offset: int = Field(0, ge=0, description="Items to skip.")

    def __init__(self, **kwargs):
        super().__init__(max_limit=MAX_LIMIT, **kwargs)

