"""gunicorn's settings for the web (the image's command, the chart and the Procfile use it).

Metrics: every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and /metrics sums them
all; the directory is emptied when gunicorn starts (files of an earlier run would be summed too)
and a worker that exits has its live gauges removed. Command-line options override these.
"""

import io
import os

from prometheus_client import multiprocess

# Read from the environment, as gunicorn's own GUNICORN_CMD_ARGS would be.
workers = int(os.environ.get("MAILSCORE_WEB_WORKERS", "2"))
# gevent: each connection is a greenlet, so a client that sends its headers or body slowly (or
# never) costs a few kilobytes and holds no worker. A sync worker serves one socket at a time and
# a gthread worker gives each socket a thread while it reads the request: a handful of slow
# clients then take the whole web tier (docs/security.md). psycopg 3 and redis-py cooperate with
# gevent's patched sockets, so a request waiting on the database lets the others run.
worker_class = os.environ.get("MAILSCORE_WEB_WORKER_CLASS", "gevent")
# Connections one worker holds at once, idle or slow ones included; past it, new ones wait in the
# listen backlog.
worker_connections = int(os.environ.get("MAILSCORE_WEB_WORKER_CONNECTIONS", "1000"))
# Requests one gevent worker runs through Django at once (each with a database connection of its
# own): many connections may be open, but only this many use PostgreSQL at a time, so the web
# cannot exhaust its max_connections. A request's body is read before it takes a place.
app_concurrency = int(os.environ.get("MAILSCORE_WEB_APP_CONCURRENCY", "8"))
# Stores of messages that arrive while another's is in flight go to PostgreSQL together, in one
# round trip and one commit (apps/inbox/group_commit.py); "off" sends each alone.
group_commit = os.environ.get("MAILSCORE_WEB_GROUP_COMMIT", "on").strip().lower() not in {
    "off", "false", "no", "0",
}  # fmt: skip
# Bodies up to this size are read whole before the request takes its place; a larger one is
# streamed to Django, which refuses it by its own limits (DATA_UPLOAD_MAX_MEMORY_SIZE and the
# ingest size limit).
body_buffer_bytes = int(os.environ.get("MAILSCORE_WEB_BODY_BUFFER_BYTES", str(32 * 1024 * 1024)))
# Long enough for a large ingest on a loaded machine; a request past it has its worker replaced.
timeout = int(os.environ.get("MAILSCORE_WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# A worker is replaced after this many requests (with jitter, so not all at once): whatever a
# long-lived process accumulates is given back. Not much more often: a new worker spends about
# 2 s of CPU loading Django and the apps before its first request, so at 5,000 a web serving
# 1,000 requests a second spent a tenth of its CPU on replacements (docs/benchmarks.md).
max_requests = 100_000
max_requests_jitter = 10_000
# The app loads in each worker, not in the master: the master then never imports Django, and
# the multiprocess directory is emptied before any worker writes to it.
preload_app = False
# Access lines come from django-prometheus's counters and the proxy in front; errors still log.
accesslog = None
loglevel = os.environ.get("MAILSCORE_WEB_LOG_LEVEL", "warning")
# Heartbeat files in memory, not on a possibly slow or read-only disk.
# gunicorn creates each file itself with a random name, mode 0600, and unlinks it at once.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (gunicorn's own advice; it makes unguessable files there)  # noqa: S108

# With MAILSCORE_LOG_FORMAT=json gunicorn's own lines are JSON objects too, as the app's are
# (mailscore/settings/base.py, LOGGING).
if os.environ.get("MAILSCORE_LOG_FORMAT", "text").strip().lower() == "json":
    _stream = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            name: {"level": "INFO", "handlers": ["console"], "propagate": False, "qualname": name}
            for name in ("gunicorn.error", "gunicorn.access")
        },
        "handlers": {"console": _stream},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": ["levelname", "name", "message", "task_id", "message_id", "process"],
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
            }
        },
    }


class _Chained(io.RawIOBase):
    """What was buffered, then the rest of the client's stream."""

    def __init__(self, head: bytes, rest) -> None:
        self._head, self._rest = io.BytesIO(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._head.read(len(buffer)) or self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_body(environ: dict) -> None:
    """Read the request's body (up to body_buffer_bytes) from the client now, so that a slow
    sender waits in its own greenlet and not in one of the app's places."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked and (not length.isdigit() or int(length) == 0):
        return
    wanted = min(int(length), body_buffer_bytes + 1) if length.isdigit() else body_buffer_bytes + 1
    chunks, size = [], 0
    while size < wanted:
        chunk = stream.read(min(65536, wanted - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    head = b"".join(chunks)
    if size > body_buffer_bytes:
        environ["wsgi.input"] = io.BufferedReader(_Chained(head, stream))
    else:
        environ["wsgi.input"] = io.BytesIO(head)


def post_worker_init(worker) -> None:
    """In a gevent worker: at most app_concurrency requests in Django at a time, each body read
    before, each response rendered before the place is given back. The database connections go
    back with the place, open, for the next request: opening one costs PostgreSQL a process and
    several milliseconds of CPU, more than the rest of an ingest."""
    if not type(worker).__name__.startswith("Gevent"):
        return  # another worker class, chosen on the command line
    from django.db import connections
    from django.http import HttpResponse
    from gevent.lock import BoundedSemaphore

    from apps.core.connections import close_if_server_left
    from apps.inbox.ingest import store_in_groups

    store_in_groups(group_commit)

    places = BoundedSemaphore(app_concurrency)
    # Django's connection objects (one per database alias), not in use, with their connection
    # still open: at most app_concurrency sets, as at most that many requests hold one.
    idle: list[dict] = []
    application = worker.wsgi

    def take() -> None:
        # Django keeps a connection object per greenlet; hand this one the idle set.
        for alias, wrapper in (idle.pop() if idle else {}).items():
            # The look at the idle socket replaces Django's CONN_HEALTH_CHECKS query before each
            # request's first; a connection that breaks later is closed at the end of its
            # request, as Django does (errors_occurred).
            if wrapper.connection is not None and not close_if_server_left(wrapper):
                wrapper.health_check_enabled = False
            connections[alias] = wrapper

    def give_back() -> None:
        held = {}
        for wrapper in connections.all(initialized_only=True):
            if not wrapper.allow_thread_sharing:
                # Made in this greenlet; used by the next request in another one.
                wrapper.inc_thread_sharing()
            held[wrapper.alias] = wrapper
            # A keep-alive client's next request runs in this same greenlet: it must not find
            # the connection here once another request has taken it.
            del connections[wrapper.alias]
        idle.append(held)

    def gated(environ, start_response):
        _read_body(environ)
        with places:
            take()
            response = application(environ, start_response)
            if getattr(response, "streaming", False) or not isinstance(response, HttpResponse):
                # Still in use while the body streams: this greenlet keeps its connections.
                return response
            try:
                body = [b"".join(response)]
            finally:
                # request_finished (Django, in close()) has closed any connection that broke or
                # outlived CONN_MAX_AGE; what is left is open and outside any transaction.
                response.close()
                give_back()
            return body

    worker.wsgi = gated


def on_starting(server) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            os.unlink(path)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
