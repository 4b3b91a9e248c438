"""Request bodies the API refuses before any view reads them: JSON nested past a fixed depth,
and a body sent without a length (chunked), which Django would otherwise read as empty."""

from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Deeper than any request the API takes (the deepest is a job's list of objects); a bound far
# below Python's recursion limit, so nothing that walks a parsed body can exhaust the stack.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep is not accepted."


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in value (a scalar: 0), walked without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in item)
    return deepest


def bounded(value: Any) -> Any:
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise ParseError(TOO_DEEP, code="too_deep")
    return value


def loads(text: str | bytes) -> Any:
    """json.loads with the depth bound; malformed JSON raises ValueError as json.loads does."""
    try:
        return bounded(json.loads(text))
    except RecursionError as exc:  # the decoder gives up past Python's recursion limit
        raise ParseError(TOO_DEEP, code="too_deep") from exc


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with the depth bound."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return bounded(super().parse(stream, media_type, parser_context))
        except RecursionError as exc:
            raise ParseError(TOO_DEEP, code="too_deep") from exc


class LengthRequiredMiddleware:
    """Answer 411 to a request whose body comes without Content-Length (Transfer-Encoding:
    chunked): Django reads only as many bytes as Content-Length says, so such a body would be
    taken as empty, and a message sent so would be refused for a reason that is not true."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_TRANSFER_ENCODING" in request.META and not request.META.get("CONTENT_LENGTH"):
            return JsonResponse(
                {
                    "error": {
                        "code": "length_required",
                        "message": "A request body must be sent with a Content-Length header; "
                        "chunked transfer encoding is not accepted.",
                    }
                },
                status=411,
            )
        return self.get_response(request)
