"""Settings for running mailscore on one machine (the default for manage.py)."""

import os
from pathlib import Path

from mailscore import embedded

# Embedded services must be up before base reads DATABASE_URL and REDIS_URL.
embedded.ensure_services(
    Path(os.environ.get("MAILSCORE_DATA_DIR", Path(__file__).resolve().parents[2] / ".devdata"))
)

from mailscore.settings.base import *  # noqa: E402,F403

# Off unless asked (DJANGO_DEBUG=true): debug pages list settings and the URLconf.
DEBUG = env_bool("DJANGO_DEBUG", False)  # noqa: F405
# One machine: Prometheus or curl on it may read /metrics without a token (web on 127.0.0.1).
MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN = True
# Static files (the admin's) are served by the app itself, straight from the installed packages.
WHITENOISE_USE_FINDERS = True
# No collected static directory on a development machine.
STATIC_ROOT = None
