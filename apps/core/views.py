"""/health for load balancers and Kubernetes probes.

ok: the database and Redis answer and every model pool runs its models. degraded (still 200):
a model pool runs in fallback mode, and checks say which and why. unavailable (503): the
database or Redis does not answer.
"""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from apps.core import health as reports
from apps.core.connections import redis_connection


@require_GET
def health(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"error: {type(exc).__name__}"
    degraded = {}
    try:
        redis_connection().ping()
        checks["redis"] = "ok"
        degraded = reports.degraded_pools()
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    if degraded:
        checks["models"] = {worker: f"fallback: {why}" for worker, why in degraded.items()}
    if any(checks[name] != "ok" for name in ("database", "redis")):
        status = "unavailable"
    else:
        status = "degraded" if degraded else "ok"
    return JsonResponse({"status": status, "checks": checks},
                        status=503 if status == "unavailable" else 200)  # fmt: skip
