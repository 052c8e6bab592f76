import math
from typing import Any

from rest_framework.throttling import SimpleRateThrottle


class TenantRateThrottle(SimpleRateThrottle):
    """One request budget per tenant, kept in the shared cache (Redis in production, so
    every web worker counts against the same budget)."""

    scope = "tenant"

    def allow_request(self, request: Any, view: Any) -> bool:
        """DRF's check, plus what is left of the budget, for the response's RateLimit-*
        headers (``TenantScopedMixin.finalize_response``): clients can pace themselves."""
        allowed = super().allow_request(request, view)
        if self.rate is not None and getattr(self, "history", None) is not None:
            oldest = self.history[-1] if self.history else self.now
            request.rate_limit = {"limit": self.num_requests, "remaining": max(0, self.num_requests - len(self.history)),
                                  "reset": max(0, math.ceil(self.duration - (self.now - oldest)))}  # rounded up, as Retry-After is
        return allowed

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        tenant = getattr(view, "tenant", None)
        if tenant is None:
            return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
        return self.cache_format % {"scope": self.scope, "ident": f"tenant-{tenant.pk}"}
