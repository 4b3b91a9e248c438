"""The OpenAPI schema's operations, each with every error it can answer and the error body."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from apps.core.api import RETRY_AFTER_SECONDS, ErrorSerializer

RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before sending the request again.",
    }
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ApiSchema(AutoSchema):
    """Adds to each operation the errors that come from the framework rather than from the view:
    authentication, permission, throttling, outages, bodies over the limit, unknown ids. An
    operation's own description of a status (from extend_schema) is kept."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._framework_errors().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description), code, direction=direction
                )
            if code in ("429", "503"):
                responses[code]["headers"] = {**responses[code].get("headers", {}), **RETRY_AFTER}
        return responses

    def _framework_errors(self) -> dict[str, str]:
        view = self.view
        errors = {}
        takes_body = self.method in BODY_METHODS and self.get_request_serializer() is not None
        filters = self._is_list_view() and bool(getattr(view, "filterset_class", None))
        if takes_body or filters:
            errors["400"] = (
                "Not accepted: `error.message` says why and what is accepted, and `error.fields` "
                "names the fields."
            )
        if view.get_authenticators():
            errors["401"] = "No X-API-Key header, or one that is not a valid, unrevoked key."
        if any(not isinstance(permission, AllowAny) for permission in view.get_permissions()):
            errors["403"] = "The key may not do this."
        if "{" in self.path or (self._is_list_view() and view.paginator is not None):
            errors["404"] = (
                "No such resource: an unknown id, or a pagination cursor that is not one this "
                "API gave."
            )
        if takes_body:
            errors["413"] = "The body is larger than accepted."
        if view.get_throttles():
            errors["429"] = "Too many requests for this key: wait for Retry-After seconds."
        errors["503"] = (
            "The database or Redis could not be reached; nothing was stored. Send the request "
            f"again after Retry-After seconds ({RETRY_AFTER_SECONDS})."
        )
        return errors
