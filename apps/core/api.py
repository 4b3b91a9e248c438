"""API error responses: always JSON, always saying what went wrong, never a traceback."""

from __future__ import annotations

import logging

import redis.exceptions
from django import db
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

# The database or Redis away for a moment: the request did nothing lasting, and the client
# should send it again.
UNAVAILABLE_ERRORS = (db.OperationalError, db.InterfaceError, redis.exceptions.ConnectionError,
                      redis.exceptions.TimeoutError)  # fmt: skip
RETRY_AFTER_SECONDS = 5


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    view = context.get("view").__class__.__name__
    if isinstance(exc, UNAVAILABLE_ERRORS):
        logger.warning("%s: service unavailable: %s: %s", view, type(exc).__name__, exc)
        return Response(
            {"detail": "A service mailscore needs is unavailable for a moment; nothing was "
                       f"stored. Send the request again in {RETRY_AFTER_SECONDS} seconds."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    logger.exception("Unhandled error in %s", view)
    return Response(
        {"detail": "Internal error; it has been logged. Try again later."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
