"""The one mechanism that scopes tenant-owned data.

Every tenant-owned model inherits :class:`TenantOwnedModel`. Its default manager filters
by the *current tenant*, a context variable set by :class:`TenantMiddleware` for web
pages, by the API base viewset from the API key, and by :func:`tenant_context` in tasks,
commands and services. A query made with no current tenant raises instead of returning
every tenant's rows (after PostHog's ``posthog/models/scoping``). Unscoped access goes
through ``Model.unscoped`` and reads as the deliberate exception it is.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from clmsite.models import Tenant

_current_tenant: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar("current_tenant", default=None)


class TenantContextMissing(RuntimeError):
    """A tenant-owned model was queried outside any tenant context."""


def current_tenant() -> Tenant | None:
    return _current_tenant.get()


def require_tenant() -> Tenant:
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantContextMissing("Tenant-owned data queried with no current tenant; use tenant_context(tenant).")
    return tenant


@contextmanager
def tenant_context(tenant: Tenant) -> Iterator[Tenant]:
    """Make ``tenant`` the current tenant for the block (nesting restores the outer one)."""
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)


def lock_tenant(tenant: Tenant) -> None:
    """Take the tenant's row lock until the transaction ends: the writers that must not
    interleave for one shop (a check-then-insert, a delete-and-rewrite) queue here, while
    other shops go on. Call it inside ``transaction.atomic()``."""
    from clmsite.models import Tenant

    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()


class CurrentTenantId(models.Expression):
    """The current tenant's id, read when the SQL is compiled, not when the queryset is
    built. So a queryset defined at import time (a viewset's, a filter's) is scoped to the
    tenant of the request that runs it, and running it with no tenant raises."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s", [require_tenant().pk]


class TenantManager(models.Manager):
    """Default manager of tenant-owned models: always filtered to the current tenant."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(tenant_id=CurrentTenantId())

    def create(self, **kwargs: Any) -> Any:
        kwargs.setdefault("tenant", require_tenant())
        return super().create(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = require_tenant()
        objs = list(objs)
        for obj in objs:
            if obj.tenant_id is None:
                obj.tenant = tenant
            elif obj.tenant_id != tenant.pk:
                raise TenantContextMissing("bulk_create of another tenant's rows")
        return super().bulk_create(objs, *args, **kwargs)


def tenant_field(*, bulk: bool = False) -> models.ForeignKey:
    """The tenant FK of a tenant-owned model.

    ``bulk`` is for the tables the import service fills by the million (customers, products,
    orders, lines, reviews). Their unique ``(tenant, …)`` index already serves every tenant
    lookup, so the FK gets no index of its own; and the database does not check it per row
    (``db_constraint=False``): on a 1M-line orders file those checks, each locking the one
    tenant row, were ~1.6M of the ~4M foreign-key checks that cost more server time than the
    inserts themselves. Nothing is lost in the ORM: deleting a tenant still cascades (Django
    collects the rows), and the import binds the tenant id it was given in every statement.
    """
    return models.ForeignKey(
        "clmsite.Tenant", on_delete=models.CASCADE, related_name="+", editable=False, db_index=not bulk, db_constraint=not bulk
    )


class TenantOwnedModel(models.Model):
    tenant = tenant_field()

    objects = TenantManager()
    # Deliberate cross-tenant access (admin, migrations, the CI lint's allow-list).
    unscoped = models.Manager()  # noqa: DJ012 - a second manager, not a field

    class Meta:
        abstract = True
        base_manager_name = "unscoped"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.tenant_id is None:
            self.tenant = require_tenant()
        super().save(*args, **kwargs)


SESSION_TENANT_KEY = "tenant_id"


def shop_zone(tenant: Any) -> zoneinfo.ZoneInfo | None:
    """The shop's time zone for its pages, or None for UTC (or a name this system lacks)."""
    name = getattr(tenant, "time_zone", "UTC") or "UTC"
    return None if name == "UTC" else _zone(name)


def shop_day(moment: dt.datetime, tenant: Any) -> dt.date:
    """The shop's calendar day of an instant. Stages, gaps and as-of dates count the shop's
    days: an order at 8 pm in Los Angeles on 6 December is the 6th there (UTC's 7th), as
    the customer's page lists it."""
    return moment.astimezone(shop_zone(tenant) or dt.UTC).date()


def shop_today(tenant: Any) -> dt.date:
    return shop_day(timezone.now(), tenant)


def shop_midnight(day: dt.date, tenant: Any) -> dt.datetime:
    """The instant the shop's day ``day`` begins, for a query of the database."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=shop_zone(tenant) or dt.UTC)


def shop_day_end(day: dt.date, tenant: Any) -> dt.datetime:
    """The last second of the shop's day ``day``: what "as of" a date means in a query (as
    :func:`modeling.features.as_timestamp` reads a date on the shop's clock)."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=shop_zone(tenant) or dt.UTC)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class TenantMiddleware:
    """Resolves the signed-in user's active tenant and scopes the request to it.

    The active tenant is kept in the session; a user with several memberships switches
    with the tenant switcher. A user with no membership gets no tenant, and tenant pages
    answer 404 for them.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.tenant = None
        request.membership = None
        request.invitations = []
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            every = user_memberships(user)
            memberships = [m for m in every if m.accepted]
            request.invitations = [m for m in every if not m.accepted]  # reach nothing until accepted
            wanted = request.session.get(SESSION_TENANT_KEY)
            chosen = next((m for m in memberships if m.tenant_id == wanted), memberships[0] if memberships else None)
            request.memberships = memberships
            if chosen is not None:
                request.tenant = chosen.tenant
                request.membership = chosen
        if request.tenant is None:
            return self.get_response(request)
        # The pages speak the shop's time zone; the API answers in UTC, as its schema says.
        zone = None if request.path.startswith("/api/") else shop_zone(request.tenant)
        with tenant_context(request.tenant), (timezone.override(zone) if zone is not None else nullcontext()):
            response = self.get_response(request)
        if user is not None and user.is_authenticated:
            # Pages of one merchant's customers must not be kept by shared caches.
            response.setdefault("Cache-Control", "private, no-store")
        return response


MEMBERSHIPS_TTL_SECONDS = 300


def _generation_key(user_id: int) -> str:
    return f"clm:memberships-generation:{user_id}"


def _memberships_key(user_id: int, generation: int) -> str:
    return f"clm:memberships:{user_id}:{generation}"


def _generation(user_id: int) -> int:
    """The user's membership generation: a counter ``forget_memberships`` moves on. A lost
    counter restarts at the clock, so it never returns to a number an old list is kept under."""
    from django.core.cache import cache

    return cache.get_or_set(_generation_key(user_id), time.time_ns, timeout=None)


def user_memberships(user: Any) -> list[Any]:
    """The user's memberships with their tenants, oldest first, from the shared cache.

    Every page needs them, and they change rarely. The list is kept under the user's
    generation, read before the rows are: saving or deleting a membership or a tenant moves
    the generation of every user it concerns on, at once and again after the commit (see
    ``forget_memberships``). A page that read the old rows just before the commit stores them
    under a generation nobody asks for any more, so a revoked role is gone on the next page.
    The TTL bounds staleness after a write that sends no signal (a queryset ``update()``).
    Only a cache that every process shares will do: with a per-process one (no ``CACHE_URL``)
    a role change made in one web worker or a command would not reach the others, so the
    rows are read every time."""
    from django.conf import settings
    from django.core.cache import cache

    from clmsite.models import Membership

    def read() -> list[Any]:
        return list(Membership.objects.filter(user=user).select_related("tenant").order_by("pk"))

    if "locmem" in settings.CACHES["default"]["BACKEND"].lower():
        return read()
    key = _memberships_key(user.pk, _generation(user.pk))
    memberships = cache.get(key)
    if memberships is None:
        memberships = read()
        cache.set(key, memberships, timeout=MEMBERSHIPS_TTL_SECONDS)
    return memberships


def forget_memberships(user_ids: Any) -> None:
    """Move these users' membership generations on, now and after the transaction commits."""
    from django.core.cache import cache
    from django.db import transaction

    users = set(user_ids)
    if not users:
        return

    def bump() -> None:
        for user_id in users:
            try:
                cache.incr(_generation_key(user_id))
            except ValueError:  # no counter yet (or it was evicted)
                cache.set(_generation_key(user_id), time.time_ns(), timeout=None)

    bump()
    transaction.on_commit(bump)


def tenant_context_processor(request: Any) -> dict[str, Any]:
    return {
        "tenant": getattr(request, "tenant", None),
        "membership": getattr(request, "membership", None),
        "memberships": getattr(request, "memberships", []),
        "invitations": getattr(request, "invitations", []),
    }
