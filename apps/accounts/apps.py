from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Registers the start-up checks and the X-API-Key security scheme of the OpenAPI schema.
        from apps.accounts import checks, schema  # noqa: F401
