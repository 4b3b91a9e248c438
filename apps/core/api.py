"""API error responses: always JSON, always saying what went wrong, never a traceback."""

from __future__ import annotations

import logging

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    return Response(
        {"detail": "Internal error; it has been logged. Try again later."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
