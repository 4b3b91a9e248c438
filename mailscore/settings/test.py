"""Settings for the test suite: real PostgreSQL and Redis, embedded ones where none is given."""

import os
from pathlib import Path

from mailscore import embedded

embedded.ensure_services(
    Path(
        os.environ.get(
            "MAILSCORE_TEST_DATA_DIR", Path(__file__).resolve().parents[2] / ".devdata" / "test"
        )
    )
)

from mailscore.settings.base import *  # noqa: E402,F403

SECRET_KEY = "test-only-secret-key"  # noqa: S105 (tests only; production refuses this key)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests use their own cache namespace so that they never read an operator's cached verdicts.
MAILSCORE_VERIFICATION["cache_prefix"] = "mailscore-test:verify:"  # noqa: F405
# Each ingest announces its message before it returns, as tests that ingest and then look at
# the broker or run the chain eagerly expect.
MAILSCORE_ANNOUNCE_SECONDS = 0.0
# Static files are not collected for the tests.
STATIC_ROOT = None
