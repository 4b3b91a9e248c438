"""What /health reports: the database, Redis, the queues and the model pools, each timed.

A model pool's worker reports how its models loaded when it starts, and again with each of its
heartbeats; a report expires when no longer renewed, so a pool that is gone drops out.

The overall status: down (503) when the database or Redis does not answer, since then nothing
can be taken in or handed on; degraded (200) when the broker's queues cannot be read or a model
pool runs in fallback mode; ok otherwise. No model pool reporting (a web started before its
workers) leaves the models check "unknown" and the status as it is: the web's readiness does
not wait for workers.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import redis
import redis.exceptions
from django.conf import settings
from django.db import connection

from apps.core.connections import redis_connection
from apps.core.metrics import queue_depths

MODELS_KEY = "mailscore:health:models:"
REPORT_SECONDS = 120
# Heartbeats come every few seconds; the report is rewritten at most this often.
RENEW_EVERY = 30.0
# A check answers within this, or counts as failed: a probe must not hang on a dead server.
CHECK_TIMEOUT_SECONDS = 3.0
_last_report: dict[str, float] = {}

OK, DEGRADED, DOWN, UNKNOWN = "ok", "degraded", "down", "unknown"


def report_models(worker: str, *, degraded: str | None,
                  versions: dict[str, str] | None = None) -> None:  # fmt: skip
    now = time.monotonic()
    if now - _last_report.get(worker, -RENEW_EVERY) < RENEW_EVERY:
        return
    state = {"mode": "fallback" if degraded else "models", "detail": degraded or "",
             "versions": versions or {}}  # fmt: skip
    try:
        redis_connection().set(MODELS_KEY + worker, json.dumps(state), ex=REPORT_SECONDS)
        _last_report[worker] = now
    except redis.exceptions.RedisError:
        pass  # the next heartbeat tries again


def model_reports() -> dict[str, dict]:
    """Worker name -> its report (mode, detail, versions), for every pool reporting."""
    client = redis_connection()
    keys = list(client.scan_iter(MODELS_KEY + "*"))
    found = {}
    for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
        if value is not None:
            found[key.decode().removeprefix(MODELS_KEY)] = json.loads(value)
    return found


def degraded_pools() -> dict[str, str]:
    """Worker name -> why it runs degraded, for every pool reporting fallback mode."""
    return {
        worker: state.get("detail", "")
        for worker, state in model_reports().items()
        if state.get("mode") == "fallback"
    }


@lru_cache(maxsize=1)
def version() -> str:
    if settings.MAILSCORE_VERSION:
        return settings.MAILSCORE_VERSION
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as project:
            return str(tomllib.load(project)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _timed(check: Callable[[], dict]) -> dict:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # any failure means this part is not there; say which
        result = {"status": DOWN, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"status": OK}


def _redis() -> dict:
    redis_connection().ping()
    return {"status": OK}


@lru_cache(maxsize=1)
def _broker() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )


def _queue() -> dict:
    return {"status": OK, "depth": queue_depths(_broker())}


def _models() -> dict:
    reports = model_reports()
    if not reports:
        return {"status": UNKNOWN, "detail": "no model pool has reported"}
    pools = {
        worker: {
            "mode": state.get("mode"),
            **({"detail": state["detail"]} if state.get("detail") else {}),
            "versions": state.get("versions", {}),
        }
        for worker, state in sorted(reports.items())
    }
    fallback = [w for w, state in pools.items() if state["mode"] == "fallback"]
    return {"status": DEGRADED if fallback else OK, "pools": pools}


def check_all() -> dict:
    """The /health body."""
    checks = {
        "database": _timed(_database),
        "redis": _timed(_redis),
        "queue": _timed(_queue),
    }
    if checks["redis"]["status"] == OK:
        checks["models"] = _timed(_models)
    else:  # the reports live in Redis
        checks["models"] = {"status": UNKNOWN, "detail": "Redis is down", "latency_ms": 0.0}
    if checks["database"]["status"] != OK or checks["redis"]["status"] != OK:
        status = DOWN
    elif checks["queue"]["status"] != OK or checks["models"]["status"] == DEGRADED:
        status = DEGRADED
    else:
        status = OK
    return {
        "status": status,
        "version": version(),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "checks": checks,
    }
