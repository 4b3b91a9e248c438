"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: the production settings refuse to load without their
# secrets (or with the development key), so a server started without the variable stops with a
# clear message instead of serving debug pages. Set before importing the mailscore package.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.production")
application = get_wsgi_application()
