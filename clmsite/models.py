"""Tenants, memberships and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from clmsite.tenancy import TenantOwnedModel


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    ANALYST = "analyst", "Analyst"
    VIEWER = "viewer", "Viewer"


# Higher rank may do everything a lower rank may.
ROLE_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK.get(Role(role), -1) >= ROLE_RANK[Role(minimum)]


class Tenant(models.Model):
    """A merchant's shop: the unit of isolation."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")
    # The IANA time zone the pages show dates and times in (the API, the exports and the
    # models keep UTC): a Shopify order placed at 23:56 in New York is on the 22nd, as there.
    time_zone = models.CharField(max_length=64, default="UTC")
    # Prediction horizon in days; the models issue makes it editable in the UI.
    horizon_days = models.PositiveIntegerField(default=90)
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    # False: a shop invited a login that existed already; it reaches the shop only once its
    # owner accepts (a shop cannot pull someone else's login in, nor read its email).
    accepted = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"

    def can(self, minimum_role: str) -> bool:
        return role_at_least(self.role, minimum_role)


API_KEY_PREFIX = "clm"


def hash_api_key(raw_key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A per-tenant, per-role API key. Only its hash is stored; the key is shown once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="API key")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANALYST)
    lookup = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {API_KEY_PREFIX}_{self.lookup}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def can(self, minimum_role: str) -> bool:
        return role_at_least(self.role, minimum_role)

    @classmethod
    def generate(cls) -> tuple[str, str, str]:
        """Return (raw key, lookup, hash). The raw key is ``clm_<lookup>_<secret>``."""
        lookup = secrets.token_hex(6)
        raw = f"{API_KEY_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}"
        return raw, lookup, hash_api_key(raw)

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_api_key(raw_key))


class AccessEvent(TenantOwnedModel):
    """Who changed who may reach the shop (its members and its API keys) and how it runs (its
    settings, lifecycle thresholds and playbook rules, and the jobs stopped). The team page lists
    them, so an owner can see who added, raised or removed whom, changed what, and when."""

    EVENTS = {
        "member_added": "Added a member", "role_changed": "Changed a role", "member_removed": "Removed a member",
        "invite_link": "Made an invite link", "invite_accepted": "Accepted an invitation",
        "invite_declined": "Declined an invitation", "key_created": "Created an API key", "key_revoked": "Revoked an API key",
        "settings_changed": "Changed the settings", "thresholds_changed": "Changed the lifecycle thresholds",
        "rule_saved": "Saved a playbook rule", "rule_deleted": "Deleted a playbook rule", "job_cancelled": "Cancelled a job",
    }

    event = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    via = models.CharField(max_length=16, default="web", help_text="web or cli")
    detail = models.CharField(max_length=300)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["tenant", "at"], name="access_event_tenant_at")]

    @property
    def event_label(self) -> str:
        return self.EVENTS.get(self.event, self.event)
