"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: the production settings refuse to load without their
# secrets (or with the development key), so a server started without the variable stops with a
# clear message instead of serving debug pages. Set before importing the mailscore package.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.production")
application = get_wsgi_application()

# The plain ingest POST is answered without Django's middleware chain and DRF's dispatch, by the
# same functions (apps/inbox/direct_ingest.py); "off" leaves every request to Django's handler.
if os.environ.get("MAILSCORE_WEB_DIRECT_INGEST", "on").strip().lower() not in {
    "off", "false", "no", "0",
}:  # fmt: skip
    from apps.inbox.direct_ingest import DirectIngest

    application = DirectIngest(application)
