"""The X-API-Key header as an OpenAPI security scheme, so the schema and the docs page show how
every call authenticates."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from apps.accounts.authentication import HEADER


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": HEADER,
            "description": "A key from `python manage.py create_api_key NAME` or the admin.",
        }
