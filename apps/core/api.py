"""API errors: one JSON shape for every status, saying what went wrong and what is accepted.

    {"error": {"code": "not_found", "message": "...", "fields": {"subject": ["..."]}}}

Views raise DRF exceptions (or the few below that DRF has no class for); exception_handler turns
each into that shape, and api_not_found answers the same way for paths under /api/ that no route
takes. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import redis.exceptions
from django import db
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# The database or Redis away for a moment: the request did nothing lasting, and the client
# should send it again.
UNAVAILABLE_ERRORS = (db.OperationalError, db.InterfaceError, redis.exceptions.ConnectionError,
                      redis.exceptions.TimeoutError)  # fmt: skip
RETRY_AFTER_SECONDS = 5


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is in a state that does not allow this request."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than accepted."
    default_code = "too_large"


class Unprocessable(exceptions.APIException):
    """422: the request was well formed, but what it carries cannot be processed. `resource`
    describes what was stored of it anyway, and is answered beside the error."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"

    def __init__(self, detail: str, *, code: str | None = None, resource: dict | None = None):
        super().__init__(detail, code)
        self.resource = resource or {}


class FieldError(exceptions.ValidationError):
    """400 about a field (or a few) of the body; the message says what is wrong and what is
    accepted, and `accepted` lists the accepted values where there are few."""

    def __init__(self, field: str | list[str], message: str, *, code: str = "invalid",
                 accepted: list[str] | None = None) -> None:  # fmt: skip
        names = [field] if isinstance(field, str) else field
        super().__init__({name: [message] for name in names}, code)
        self.message = message
        self.accepted = accepted


def unstorable(text: str) -> str | None:
    """What in text cannot be stored as text, or None: PostgreSQL takes no NUL, and UTF-8 no
    unpaired surrogate (which JSON can spell as an escape such as \\ud800)."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate"
    return None


def _messages(detail: Any) -> Iterator[exceptions.ErrorDetail | str]:
    """Every message in a DRF error detail, however nested."""
    if isinstance(detail, dict):
        for value in detail.values():
            yield from _messages(value)
    elif isinstance(detail, list):
        for value in detail:
            yield from _messages(value)
    else:
        yield detail


def _plain(value: Any) -> Any:
    """A DRF error detail as plain JSON: ErrorDetail strings become str."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value)


def error_body(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    codes = {getattr(m, "code", None) for m in _messages(detail)} - {None}
    # One code names the error; several different ones (a form's fields) are just "invalid".
    error: dict[str, Any] = {"code": codes.pop() if len(codes) == 1 else exc.default_code}
    if isinstance(detail, dict) and not isinstance(exc, exceptions.ValidationError):
        # A permission class, say, that tells more than a message: "detail" is the message,
        # and what else it tells goes beside it.
        error["code"] = getattr(detail.get("detail"), "code", None) or exc.default_code
        error["message"] = str(detail.get("detail") or exc.default_detail)
        error.update({key: _plain(value) for key, value in detail.items() if key != "detail"})
    elif isinstance(detail, dict):
        fields = {str(name): [str(m) for m in _messages(value)] for name, value in detail.items()}
        error["message"] = getattr(exc, "message", None) or " ".join(
            f"{name}: {' '.join(messages)}" for name, messages in fields.items()
        )
        error["fields"] = fields
    else:
        error["message"] = " ".join(str(m) for m in _messages(detail)) or str(exc.default_detail)
    if getattr(exc, "accepted", None):
        error["accepted"] = list(exc.accepted)
    return {**getattr(exc, "resource", {}), "error": error}


def error_response(code: str, message: str, status_code: int, headers=None) -> Response:
    return Response({"error": {"code": code, "message": message}}, status=status_code,
                    headers=headers)  # fmt: skip


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        # Django's own ceiling on a body it reads (DATA_UPLOAD_MAX_MEMORY_SIZE).
        return PayloadTooLarge(
            "The request body is larger than this server accepts: "
            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes at most."
        )
    return None


def exception_handler(exc, context):
    api_exc = _as_api_exception(exc)
    if api_exc is not None:
        headers = {}
        if getattr(api_exc, "auth_header", None):
            headers["WWW-Authenticate"] = api_exc.auth_header
        if getattr(api_exc, "wait", None):
            headers["Retry-After"] = str(math.ceil(api_exc.wait))
        set_rollback()
        return Response(error_body(api_exc), status=api_exc.status_code, headers=headers)
    view = context.get("view").__class__.__name__
    if isinstance(exc, UNAVAILABLE_ERRORS):
        logger.warning("%s: service unavailable: %s: %s", view, type(exc).__name__, exc)
        return error_response(
            "service_unavailable",
            "A service mailscore needs is unavailable for a moment; nothing was stored. Send "
            f"the request again in {RETRY_AFTER_SECONDS} seconds.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.exception("Unhandled error in %s", view)
    return error_response(
        "internal_error",
        "Internal error; it has been logged. Try again later.",
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


@csrf_exempt
def api_not_found(request) -> JsonResponse:
    """Any path under /api/ that no route takes: a JSON 404, pointing at the route without the
    trailing slash where that is what was meant."""
    without_slash = request.path.rstrip("/")
    if request.path.endswith("/") and _is_api_route(without_slash):
        message = (f"No API route at {request.path}: API routes have no trailing slash; "
                   f"use {without_slash}.")  # fmt: skip
    else:
        message = (f"No API route at {request.path}. The routes are listed in the schema at "
                   "/api/v1/schema and on /api/v1/docs.")  # fmt: skip
    return JsonResponse({"error": {"code": "not_found", "message": message}}, status=404)


def _is_api_route(path: str) -> bool:
    try:
        return resolve(path).func is not api_not_found
    except Resolver404:
        return False


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Short and stable, snake_case: what went wrong.")
    message = serializers.CharField(help_text="What went wrong and what is accepted.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="The fields of the request that were not accepted, each with its messages.",
    )
    accepted = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The accepted values, where a value was not one of a few.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
