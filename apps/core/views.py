"""/health and /health/live for load balancers and Kubernetes probes, /metrics for Prometheus (with a bearer token).

/health (readiness): the checks of apps/core/health.py; 200 when ok or degraded, 503 when down.
/health/live (liveness): answers without touching anything, so that an outage of the database
or Redis never has every web process restarted.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core import health as checks
from apps.core.connections import redis_connection
from apps.core.metrics import OperationsCollector, partition_bounds, process_registry
from apps.core.partitions import PARTITIONED_TABLES


@never_cache
@require_safe
def health(request):
    body = checks.check_all()
    return JsonResponse(body, status=503 if body["status"] == checks.DOWN else 200)


@never_cache
@require_safe
def live(request):
    return JsonResponse({"status": "ok"})


def _bounds() -> dict:
    return partition_bounds(connection, tuple(PARTITIONED_TABLES))


_operations = OperationsCollector(redis_connection, _bounds)


def _metrics_refusal(request) -> HttpResponse | None:
    """Why this request may not read /metrics, as the answer to give, or None when it may.

    With MAILSCORE_METRICS_TOKEN set, only `Authorization: Bearer <token>` is served. Without it,
    nothing is, except loopback clients where the settings allow them (the local settings: one
    machine, web bound to 127.0.0.1); never in production, where a proxy on the same host would
    make every client look local."""
    token = settings.MAILSCORE_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        refused = HttpResponse(
            "Send the metrics token: Authorization: Bearer <MAILSCORE_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    if settings.MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN and request.META.get("REMOTE_ADDR") in (
        "127.0.0.1",
        "::1",
    ):
        return None
    return HttpResponse(
        "/metrics is off: set MAILSCORE_METRICS_TOKEN and scrape with "
        "Authorization: Bearer <token>.\n",
        status=403,
        content_type="text/plain",
    )


@never_cache
@require_safe
def metrics(request):
    """Every gunicorn worker's samples (multiprocess mode) and the state read at scrape."""
    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    registry = process_registry()
    body = generate_latest(registry) + generate_latest(_operations)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
