"""gunicorn's settings for the web (the image's command, the chart and the Procfile use it).

Metrics: every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and /metrics sums them
all; the directory is emptied when gunicorn starts (files of an earlier run would be summed too)
and a worker that exits has its live gauges removed. Command-line options override these.
"""

import os

from prometheus_client import multiprocess

# Read from the environment, as gunicorn's own GUNICORN_CMD_ARGS would be.
workers = int(os.environ.get("MAILSCORE_WEB_WORKERS", "2"))
# Long enough for a large ingest on a loaded machine; a request past it has its worker replaced.
timeout = int(os.environ.get("MAILSCORE_WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# A worker is replaced after this many requests (with jitter, so not all at once): whatever a
# long-lived process accumulates is given back.
max_requests = 5000
max_requests_jitter = 500
# The app loads in each worker, not in the master: the master then never imports Django, and
# the multiprocess directory is emptied before any worker writes to it.
preload_app = False
# Access lines come from django-prometheus's counters and the proxy in front; errors still log.
accesslog = None
loglevel = os.environ.get("MAILSCORE_WEB_LOG_LEVEL", "warning")
# Heartbeat files in memory, not on a possibly slow or read-only disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

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
