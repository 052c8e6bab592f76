"""Tenancy actions: tenants, memberships, API keys. Shared by the UI, the API and the CLI."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from clmsite.models import ApiKey, Membership, Role, Tenant


@transaction.atomic
def do_create_tenant(slug: str, name: str, *, owner_username: str | None = None, currency: str = "USD") -> Tenant:
    tenant = Tenant.objects.create(slug=slug, name=name, currency=currency)
    if owner_username:
        user = get_user_model().objects.get(username=owner_username)
        Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    return tenant


def do_add_member(tenant: Tenant, user: Any, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": role})
    return membership


def do_create_api_key(tenant: Tenant, *, role: str = Role.ANALYST, name: str = "API key", acting_user: Any = None) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is shown once and never stored."""
    Role(role)  # raises ValueError for an unknown role
    raw, lookup, key_hash = ApiKey.generate()
    key = ApiKey.objects.create(
        tenant=tenant, role=role, name=name[:100] or "API key", lookup=lookup, key_hash=key_hash,
        created_by=acting_user if getattr(acting_user, "pk", None) else None,
    )
    return key, raw


def get_api_key(tenant: Tenant, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(tenant=tenant, pk=key_id).first()
    if key is None:
        raise Http404("No such API key")
    return key


def do_revoke_api_key(tenant: Tenant, key_id: int, *, acting_user: Any = None) -> ApiKey:
    key = get_api_key(tenant, key_id)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def authenticate_api_key(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Keys look like ``clm_<lookup>_<secret>``."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "clm":
        return None
    key = ApiKey.objects.select_related("tenant").filter(lookup=parts[1], revoked_at__isnull=True).first()
    if key is None or not key.matches(raw_key):
        return None
    if key.last_used_at is None or (timezone.now() - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key
