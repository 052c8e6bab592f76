"""The client's address for the login lockout (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

Behind reverse proxies every request comes from the proxy: a lockout "per username and
address" would then lock a username out for everyone, and become per username only. With
``CLM_TRUSTED_PROXIES=N`` (the proxies in front of the app, each appending the address it was
reached from to X-Forwarded-For, as nginx's ``$proxy_add_x_forwarded_for`` does) the client is
the N-th entry from the right: entries further left are whatever the client sent, so they are
never read. Without it (the default) the address is REMOTE_ADDR and X-Forwarded-For is ignored.
django-ipware, which axes can use instead, counts proxies another way (the last proxy is not
in the header); one explicit rule here is easier to get right."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str | None:
    proxies = getattr(settings, "CLM_TRUSTED_PROXIES", 0)
    if proxies > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR")
