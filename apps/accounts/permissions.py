"""Scope checks for API views.

A view names the scope each of its actions needs, in one of two ways:

    required_scopes = {"list": Scope.READ, "retrieve": Scope.READ, "create": Scope.WRITE}
    required_scope = Scope.VERIFY          # one scope for every action of the view

and HasScope (with IsAuthenticated, the API's default permissions) lets a request through only
when its key holds that scope. An action that names no scope is refused: a new endpoint is closed
until its author says who may use it.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from apps.accounts.scopes import ACCEPTED_SCOPES

# Answers OPTIONS with a description of the endpoint: any valid key may ask.
METADATA_ACTION = "metadata"


def scope_for(view) -> str | None:
    """The scope the view's current action needs, or None when it names none."""
    action = getattr(view, "action", None)
    per_action = getattr(view, "required_scopes", None) or {}
    if action in per_action:
        return str(per_action[action])
    whole_view = getattr(view, "required_scope", None)
    return str(whole_view) if whole_view else None


class HasScope(BasePermission):
    """The request's API key holds the scope the view's action needs (see the module doc)."""

    message = "This API key may not use this endpoint."

    def has_permission(self, request, view) -> bool:
        if getattr(view, "action", None) == METADATA_ACTION:
            return True
        if getattr(view, "action_map", None) is not None and view.action is None:
            # A method the viewset does not route: let DRF answer 405, not a scope error.
            return True
        client = request.user
        if client is None or not hasattr(client, "has_scope"):
            return False
        needed = scope_for(view)
        if needed is None:
            self.message = (
                f"This endpoint ({type(view).__name__}.{getattr(view, 'action', None) or 'view'}) "
                f"names no scope, so no key may use it. Scopes are {ACCEPTED_SCOPES}."
            )
            return False
        if client.has_scope(needed):
            return True
        held = sorted(client.scopes)
        # The API's error answer carries "detail" as its message and the rest beside it.
        self.message = {
            "detail": (
                f"This request needs the {needed!r} scope; the API key {client.name!r} has "
                f"{', '.join(held) or 'none'}. Use a key with the {needed!r} scope "
                f"(`python manage.py create_api_key NAME --scopes {needed}`)."
            ),
            "required_scope": needed,
            "key_scopes": held,
        }
        return False
