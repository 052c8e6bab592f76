"""Per-tenant caching of expensive read-only aggregates (the dashboard, the customer count).

Each tenant has a data version in the shared cache; writes that change what the
aggregates read bump it after they commit. A *hard* bump (a file import, a scoring) makes
every older value stale at once, so a merchant sees their upload on the next page. A
*soft* bump (an API batch) lets a value computed for an older version be served while it is
younger than MAX_LAG_SECONDS, so an integrator pushing small batches every second does not
make every page view recompute the aggregates: they lag API writes by at most a minute.
The TTL bounds staleness if a bump is lost (a cache restart)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

T = TypeVar("T")
TTL_SECONDS = 300
MAX_LAG_SECONDS = 60


def _version_key(tenant_id: int) -> str:
    return f"clm:data-version:{tenant_id}"


def _hard_key(tenant_id: int) -> str:
    return f"clm:data-version-hard:{tenant_id}"


def data_version(tenant_id: int) -> int:
    return int(cache.get_or_set(_version_key(tenant_id), 1, timeout=None))


def bump_data_version(tenant_id: int, *, hard: bool = True) -> None:
    """After the surrounding transaction commits: cached aggregates of the tenant expire
    (at once when ``hard``, else within MAX_LAG_SECONDS)."""

    def bump() -> None:
        try:
            version = cache.incr(_version_key(tenant_id))
        except ValueError:  # not there (evicted): a fresh version is as good
            version = data_version(tenant_id) + 1
            cache.set(_version_key(tenant_id), version, timeout=None)
        if hard:
            cache.set(_hard_key(tenant_id), version, timeout=None)

    transaction.on_commit(bump)


def cached(tenant_id: int, name: str, compute: Callable[[], T]) -> T:
    key = f"clm:{name}:{tenant_id}"
    # The version, the hard version and the entry in one round trip (a page reads several).
    found = cache.get_many([_version_key(tenant_id), _hard_key(tenant_id), key])
    version = int(found[_version_key(tenant_id)]) if _version_key(tenant_id) in found else data_version(tenant_id)
    entry: Any = found.get(key)
    lock = f"{key}:computing"
    if entry is not None:
        entry_version, computed_at, value = entry
        soft_stale = entry_version >= int(found.get(_hard_key(tenant_id), 0))
        if entry_version == version or (soft_stale and time.time() - computed_at < MAX_LAG_SECONDS):
            return value
        if soft_stale and not cache.add(lock, 1, timeout=30):
            return value  # another process is recomputing it: no stampede, the old value meanwhile
    value = compute()
    cache.set(key, (version, time.time(), value), timeout=TTL_SECONDS)
    cache.delete(lock)
    return value
