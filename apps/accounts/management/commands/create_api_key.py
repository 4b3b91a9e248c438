"""manage.py create_api_key NAME: a key for the API, shown once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key called NAME and print it. Only its hash is stored."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")

    def handle(self, *args, **options) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("Give the key a name, such as the integration that will use it.")
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"A key called {name!r} exists; choose another name.")
        _, key = ApiKey.issue(name)
        self.stderr.write(f"API key {name!r} created. It is shown only now; send it as X-API-Key.")
        self.stdout.write(key)
