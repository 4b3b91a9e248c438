"""Production settings: every service is external and every secret comes from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

for required in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
    if not os.environ.get(required):
        raise ImproperlyConfigured(f"{required} must be set in production.")

from mailscore.settings.base import *  # noqa: E402,F403

DEBUG = False

# Whoever knows or guesses the key can forge sessions, password-reset links and CSRF tokens:
# refuse the ones in this repository and any too short or too plain to be random.
KNOWN_DEVELOPMENT_KEYS = {"insecure-local-development-key", "test-only-secret-key"}
MINIMUM_SECRET_KEY_LENGTH = 50
if SECRET_KEY in KNOWN_DEVELOPMENT_KEYS or SECRET_KEY.startswith("django-insecure"):  # noqa: F405
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is a development key that is public; give production a random key of "
        f"at least {MINIMUM_SECRET_KEY_LENGTH} characters, e.g. from "
        '`python -c "import secrets; print(secrets.token_urlsafe(64))"`.'
    )
# Django's own deploy check asks the same: long, and not one character repeated.
if len(SECRET_KEY) < MINIMUM_SECRET_KEY_LENGTH or len(set(SECRET_KEY)) < 5:  # noqa: F405
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY has {len(SECRET_KEY)} characters, {len(set(SECRET_KEY))} of them "  # noqa: F405
        f"different; production needs a random key of at least {MINIMUM_SECRET_KEY_LENGTH} "
        "characters, e.g. from "
        '`python -c "import secrets; print(secrets.token_urlsafe(64))"`.'
    )

# --- HTTPS (docs/security.md): TLS ends at a proxy (the ingress) in front of gunicorn ------------
# The header the proxy sets to say the client's request came over HTTPS, as "Header-Name,value";
# empty: trust no header (only when gunicorn itself is reached over TLS). Only a proxy that always
# overwrites this header may be trusted with it, or a client could claim HTTPS over plain HTTP.
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto,https")  # noqa: F405
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured(
        "DJANGO_SECURE_PROXY_SSL_HEADER must be 'Header-Name,value' (e.g. 'X-Forwarded-Proto,https') "
        "or empty."
    )
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header[0].upper().replace("-", "_"), _proxy_ssl_header[1])
    if _proxy_ssl_header
    else None
)
# Plain-HTTP requests are redirected to HTTPS, except the probes and the scrape, which the
# kubelet and Prometheus make inside the cluster straight to the pod, without TLS.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)  # noqa: F405
SECURE_REDIRECT_EXEMPT = [r"^health(/live)?$", r"^metrics$"]
# https://docs.djangoproject.com/en/5.2/ref/middleware/#http-strict-transport-security
# A year, subdomains included; "preload" only makes the site eligible for the browsers' list
# (it is submitted by hand at hstspreload.org). DJANGO_HSTS_SECONDS=0 turns HSTS off.
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000)  # noqa: F405
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)  # noqa: F405
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)  # noqa: F405
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)  # noqa: F405
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
