"""``Authorization: Bearer <key>`` authentication for the REST API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from clmsite.models import ApiKey
from clmsite.services import authenticate_api_key


class ApiKeyUser:
    """The principal behind an API key: authenticated, never staff, never a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.username = f"api-key:{key.lookup}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[ApiKeyUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            # One of our keys under another scheme (Token clm_…) was meant for us: "no
            # credentials" would mislead. Any other header (a proxy's HTTP Basic login, which a
            # browser sends with every request) is not ours to refuse.
            if raw.strip().startswith("clm_"):
                raise exceptions.AuthenticationFailed(f"The API takes its key as 'Authorization: Bearer <key>'; this request's Authorization header is '{scheme[:20]} …'.")
            return None
        raw = raw.strip()
        key = authenticate_api_key(raw) if raw else None
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how API keys are sent."""

    target_class = "clmsite.apikeys.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A tenant API key: `Authorization: Bearer clm_…`"}
