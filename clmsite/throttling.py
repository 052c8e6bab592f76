from typing import Any

from rest_framework.throttling import SimpleRateThrottle


class TenantRateThrottle(SimpleRateThrottle):
    """One request budget per tenant, kept in the shared cache (Redis in production, so
    every web worker counts against the same budget)."""

    scope = "tenant"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        tenant = getattr(view, "tenant", None)
        if tenant is None:
            return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
        return self.cache_format % {"scope": self.scope, "ident": f"tenant-{tenant.pk}"}
