"""Role checks for the API. Reads need a viewer, writes an analyst; views raise the bar
with ``write_role`` or per-action ``action_roles``."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from clmsite.models import Role, role_at_least


def request_role(request: Any) -> str | None:
    """The caller's role in the request's tenant: the API key's, or the membership's."""
    key = getattr(request, "auth", None)
    if key is not None and hasattr(key, "role") and hasattr(key, "tenant_id"):
        return key.role
    membership = getattr(request._request if hasattr(request, "_request") else request, "membership", None)
    return membership.role if membership is not None else None


def required_role(request: Any, view: Any) -> str:
    """The least role the view's action needs: reads a viewer, writes ``write_role`` (default
    analyst), and ``action_roles`` overrides both."""
    needed = getattr(view, "action_roles", {}).get(getattr(view, "action", None))
    if needed is None:
        needed = Role.VIEWER if request.method in SAFE_METHODS else getattr(view, "write_role", Role.ANALYST)
    return str(needed)


class IsTenantMember(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request: Any, view: Any) -> bool:
        role = request_role(request)
        if role is None:
            return False
        method = request.method.lower()
        if method not in view.http_method_names or not callable(getattr(view, method, None)):
            return True  # a method the endpoint lacks answers 405 for every role, not 403 for some
        return role_at_least(role, required_role(request, view))
