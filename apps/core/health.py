"""What /health reports beyond the database and Redis: model pools running degraded.

A model pool's worker reports how its models loaded when it starts, and again with each of its
heartbeats; a report expires when no longer renewed, so a pool that is gone drops out.
"""

from __future__ import annotations

import json
import time

import redis.exceptions

from apps.core.connections import redis_connection

MODELS_KEY = "mailscore:health:models:"
REPORT_SECONDS = 120
# Heartbeats come every few seconds; the report is rewritten at most this often.
RENEW_EVERY = 30.0
_last_report: dict[str, float] = {}


def report_models(worker: str, *, degraded: str | None) -> None:
    now = time.monotonic()
    if now - _last_report.get(worker, -RENEW_EVERY) < RENEW_EVERY:
        return
    state = {"mode": "fallback" if degraded else "models", "detail": degraded or ""}
    try:
        redis_connection().set(MODELS_KEY + worker, json.dumps(state), ex=REPORT_SECONDS)
        _last_report[worker] = now
    except redis.exceptions.RedisError:
        pass  # the next heartbeat tries again


def degraded_pools() -> dict[str, str]:
    """Worker name -> why it runs degraded, for every pool reporting fallback mode."""
    client = redis_connection()
    keys = list(client.scan_iter(MODELS_KEY + "*"))
    found = {}
    for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
        if value is None:
            continue
        state = json.loads(value)
        if state.get("mode") == "fallback":
            found[key.decode().removeprefix(MODELS_KEY)] = state.get("detail", "")
    return found
