"""/health and /health/live for load balancers and Kubernetes probes, /metrics for Prometheus.

/health (readiness): the checks of apps/core/health.py; 200 when ok or degraded, 503 when down.
/health/live (liveness): answers without touching anything, so that an outage of the database
or Redis never has every web process restarted.
"""

from __future__ import annotations

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


@never_cache
@require_safe
def metrics(request):
    """Every gunicorn worker's samples (multiprocess mode) and the state read at scrape."""
    registry = process_registry()
    body = generate_latest(registry) + generate_latest(_operations)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
