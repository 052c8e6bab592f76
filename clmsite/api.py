"""The API base: every viewset inherits :class:`TenantViewSet`, which resolves the tenant
from the API key (or the session) and scopes every query to it. Subclasses define
``get_base_queryset`` only; the scoping hooks are not theirs to override."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from clmsite.models import ApiKey, Tenant
from clmsite.tenancy import _current_tenant

log = logging.getLogger(__name__)


def request_tenant(request: Any) -> Tenant | None:
    if isinstance(request.auth, ApiKey):
        return request.auth.tenant
    return getattr(request._request, "tenant", None)


class TenantScopedMixin:
    """Resolve the tenant after authentication and make it current for the whole request."""

    tenant: Tenant | None = None

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # Authenticate first so the tenant comes from the key, then scope, then check roles.
        request.user  # noqa: B018 - triggers authentication
        self.tenant = request_tenant(request)
        if self.tenant is not None:
            self._tenant_token = _current_tenant.set(self.tenant)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if self.tenant is None:
            raise exceptions.NotFound() if request.user and request.user.is_authenticated else exceptions.NotAuthenticated()

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        token = getattr(self, "_tenant_token", None)
        if token is not None:
            _current_tenant.reset(token)
            self._tenant_token = None
        response["Cache-Control"] = "private, no-store"
        budget = getattr(request, "rate_limit", None)
        if budget is not None:
            response["RateLimit-Limit"], response["RateLimit-Remaining"], response["RateLimit-Reset"] = (str(budget[k]) for k in ("limit", "remaining", "reset"))
        return response


class TenantViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    def get_queryset(self) -> Any:
        # The model's default manager is already scoped to the current tenant.
        return self.get_base_queryset()

    def get_base_queryset(self) -> Any:
        raise NotImplementedError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: Django validation errors become 400 and anything unexpected a
    JSON 500 without internals (it is logged with its traceback)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DataError):  # a value the database cannot hold (out of range): the client's input
        log.warning("API input refused by the database: %s", exc)
        exc = exceptions.ValidationError({"detail": "A value in the request is out of range."})
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        return Response({"detail": f"The request body is larger than {limit} MB. Send fewer rows per request, or upload a CSV file to /api/v1/imports/."},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("Unhandled API error", exc_info=exc)
        response = Response({"detail": "Internal error. It has been logged."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(response.data, list):
        # A ValidationError raised with a bare message list (DRF's filters do): every error
        # body is an object, so that clients read ``detail`` or a field's name alike.
        response.data = {"detail": " ".join(str(message) for message in response.data)}
    return response



# The answers every operation may give besides its own, documented once (drf-spectacular
# postprocessing hook): each is the JSON object the exception handler above writes.
ERROR_RESPONSES = {
    "400": "Invalid input: `detail`, or each field's name with a list of messages (a bulk upsert: `errors` by row and column).",
    "401": "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`).",
    "403": "The key's role may not do this.",
    "404": "Not found: a missing id, and an id of another shop, answer alike.",
    "429": "The shop's request budget is spent; retry after `Retry-After` seconds.",
}


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {"type": "object", "properties": {"detail": {"type": "string"}}, "additionalProperties": True,
                        "description": "Every error body is a JSON object; `detail` carries a message about the whole request."}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_RESPONSES.items():
                responses.setdefault(code, {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    return result
