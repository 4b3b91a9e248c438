"""manage.py create_api_key NAME [--scopes read,write,verify,webhooks] [--expires 90d]: a key for
the API, shown once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey
from apps.accounts.scopes import (
    ACCEPTED_SCOPES,
    DEFAULT_SCOPES,
    EXPIRY_ACCEPTED,
    KeyPolicyError,
    describe_expiry,
    parse_expiry,
    parse_scopes,
)


class Command(BaseCommand):
    help = "Create an API key called NAME and print it. Only its hash is stored."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULT_SCOPES),
            help=f"comma list of what the key may do, from {ACCEPTED_SCOPES} "
            f"(default: {','.join(DEFAULT_SCOPES)})",
        )
        parser.add_argument(
            "--expires",
            default="",
            help=f"when the key stops working: {EXPIRY_ACCEPTED} (default: never)",
        )

    def handle(self, *args, **options) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("Give the key a name, such as the integration that will use it.")
        try:
            scopes = parse_scopes(options["scopes"])
            expires_at = parse_expiry(options["expires"])
        except KeyPolicyError as exc:
            raise CommandError(str(exc)) from exc
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"A key called {name!r} exists; choose another name.")
        row, key = ApiKey.issue(name, scopes=scopes, expires_at=expires_at)
        self.stderr.write(
            f"API key {name!r} created. Scopes: {', '.join(row.scopes)}. Expires: "
            f"{describe_expiry(row.expires_at)}. It is shown only now; send it as X-API-Key."
        )
        self.stdout.write(key)
