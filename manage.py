#!/usr/bin/env python
"""Django's command-line utility for mailscore."""

import os
import sys


def main() -> None:
    # The local default belongs here (and `make run`) alone: the web and worker entry points
    # default to production, which refuses to start without its secrets.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
