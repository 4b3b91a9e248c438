"""The X-API-Key header and the admin session as OpenAPI security schemes, so the schema and the
docs page show how every call authenticates."""

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


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.StaffSessionAuthentication"
    name = "AdminSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": (
                "The session of a staff user signed in to the admin (/admin/), with every scope. "
                "Unsafe methods also need the csrftoken cookie's value in X-CSRFToken."
            ),
        }
