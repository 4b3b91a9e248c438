"""Scope checks for API views.

A view names the scope each of its actions needs, in one of two ways:

    required_scopes = {"list": Scope.READ, "retrieve": Scope.READ, "create": Scope.WRITE}
    required_scope = Scope.VERIFY          # one scope for every action of the view
    required_scopes = {"retrieve": (Scope.READ, Scope.VERIFY)}  # any one of these will do

and HasScope (with IsAuthenticated, the API's default permissions) lets a request through only
when its key holds that scope. An action that names no scope is refused: a new endpoint is closed
until its author says who may use it.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from apps.accounts.scopes import ACCEPTED_SCOPES

# Answers OPTIONS with a description of the endpoint: any valid key may ask.
METADATA_ACTION = "metadata"


def scopes_for(view) -> tuple[str, ...]:
    """The scopes of which the view's current action needs one; empty when it names none."""
    action = getattr(view, "action", None)
    per_action = getattr(view, "required_scopes", None) or {}
    named = per_action[action] if action in per_action else getattr(view, "required_scope", None)
    if not named:
        return ()
    return tuple(str(scope) for scope in named) if isinstance(named, tuple) else (str(named),)


def scope_for(view, client=None) -> str | None:
    """The scope the request is counted under: of those the action accepts, the first the
    client holds (or the first, for a client that holds none); None when it names none."""
    scopes = scopes_for(view)
    if not scopes:
        return None
    if client is not None and hasattr(client, "has_scope"):
        return next((scope for scope in scopes if client.has_scope(scope)), scopes[0])
    return scopes[0]


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
        needed = scope_for(view, client)
        if needed is None:
            self.message = (
                f"This endpoint ({type(view).__name__}.{getattr(view, 'action', None) or 'view'}) "
                f"names no scope, so no key may use it. Scopes are {ACCEPTED_SCOPES}."
            )
            return False
        if client.has_scope(needed):
            return True
        held = sorted(client.scopes)
        accepted = scopes_for(view)
        wanted = " or ".join(repr(scope) for scope in accepted)
        # The API's error answer carries "detail" as its message and the rest beside it.
        self.message = {
            "detail": (
                f"This request needs the {wanted} scope; the API key {client.name!r} has "
                f"{', '.join(held) or 'none'}. Use a key with the {wanted} scope "
                f"(`python manage.py create_api_key NAME --scopes {needed}`)."
            ),
            "required_scope": needed,
            "key_scopes": held,
        }
        if len(accepted) > 1:
            self.message["accepted_scopes"] = list(accepted)
        return False
