"""Webhook delivery: a launched campaign's treatment group POSTed in batches to the
merchant's URL, HMAC-signed, with retries and exponential backoff, every attempt logged.

Each request carries ``X-CLM-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` with the campaign's webhook secret, and ``X-CLM-Timestamp``; the
receiver recomputes it (and may refuse old timestamps against replays). A batch is retried
on a connection error or a 5xx/429 answer; a 3xx (redirects are not followed) or a 4xx
other than 429 is final. Unless ``CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is on, a host that
resolves to a loopback, private, link-local, multicast, reserved or unspecified address is
refused at send time (no request is made) and the refusal is logged as the delivery error.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign, WebhookDelivery
from campaigns.services import group_rows, member_record
from clmsite.tenancy import tenant_context

log = logging.getLogger(__name__)
BATCH_SIZE = 500
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 1.0  # 1, 2, 4, 8 s between attempts
TIMEOUT_SECONDS = 10
MAX_RESPONSE_BYTES = 64 * 1024


class WebhookRefused(Exception):
    """The URL may not be called (scheme, or an address inside our network): final, never retried."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def allow_private_networks() -> bool:
    """The ``CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` setting (off by default): a merchant's URL
    must not reach our loopback, private or metadata addresses."""
    return bool(settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS)


def non_public_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public internet address (None if it is). An IPv6 address that
    carries an IPv4 one (mapped ``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``, Teredo) is judged
    by the IPv4 address it carries."""
    carried = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    teredo = getattr(address, "teredo", None)
    if teredo is not None:
        carried = teredo[1]  # the client's address
    if carried is not None:
        address = carried
    if getattr(address, "is_site_local", False):
        return "site-local"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


def _connect_public(host: str, port: int, timeout: float) -> socket.socket:
    """Resolve the host and connect to one of its addresses, refusing the host if any of
    them is not public. The check and the connection use the same resolution, so a name
    that re-resolves to an inside address between check and use (DNS rebinding) cannot slip through."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    if not allow_private_networks():
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            kind = non_public_kind(address)
            if kind is not None:
                # The merchant reads the delivery error: it names no inside address (which would
                # map the private network one name at a time) nor the server's setting. The log does.
                log.warning("webhook to %s refused: it resolves to %s, a %s address (CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 allows it)", host, address, kind)
                raise WebhookRefused(f"refused: {host} is not an address on the public internet")
    last_error: OSError = OSError(f"no address for {host}")
    for family, socktype, proto, _, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = _connect_public(self.host, self.port, self.timeout)  # type: ignore[arg-type]


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        sock = _connect_public(self.host, self.port, self.timeout)  # type: ignore[arg-type]
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST; redirects are not followed (a 3xx is the answer), so a redirect cannot
    lead the request to an address the check above would refuse."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise WebhookRefused("refused: the webhook URL has an invalid port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:  # never file:// or custom schemes
        raise WebhookRefused("refused: only http(s) webhook URLs are allowed")
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = _GuardedHTTPSConnection(parts.hostname, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
    else:
        connection = _GuardedHTTPConnection(parts.hostname, port, timeout=TIMEOUT_SECONDS)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)  # the answer is only its status: never read an unbounded body
        return int(response.status)
    finally:
        connection.close()


def deliver(campaign: Campaign, *, batch_size: int | None = None, backoff: float | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Send every batch; returns how many were delivered. Batches already delivered (a
    retried task) are skipped, so a redelivery never sends a batch twice after success."""
    tenant = campaign.tenant
    batch_size, backoff = batch_size or BATCH_SIZE, BACKOFF_SECONDS if backoff is None else backoff
    with tenant_context(tenant):
        records = [member_record(campaign, m) for m in group_rows(campaign)]
        done = set(WebhookDelivery.objects.filter(campaign=campaign, ok=True).values_list("batch", flat=True))
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)] or [[]]
    delivered = len(done)
    for number, batch in enumerate(batches, start=1):
        if number in done:
            continue
        body = json.dumps({"campaign": {"id": campaign.pk, "name": campaign.name, "action": campaign.action, "offer": campaign.offer},
                           "batch": number, "batches": len(batches), "customers": batch}, separators=(",", ":")).encode()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "clm-webhooks/1", "X-CLM-Timestamp": timestamp,
                       "X-CLM-Signature": signature(campaign.webhook_secret, timestamp, body), "X-CLM-Delivery": f"{campaign.pk}-{number}"}
            status, error = None, ""
            refused = False
            try:
                status = _post(campaign.webhook_url, body, headers)
            except WebhookRefused as exc:
                error, refused = str(exc)[:300], True
                log.warning("webhook of campaign %s (tenant %s) not sent: %s", campaign.pk, tenant.slug, exc)
            except (http.client.HTTPException, TimeoutError, OSError) as exc:
                error = (str(exc) or type(exc).__name__)[:300]
            ok = status is not None and 200 <= status < 300
            with tenant_context(tenant):
                WebhookDelivery.objects.create(tenant=tenant, campaign=campaign, batch=number, batches=len(batches), attempt=attempt,
                                               customers=len(batch), status_code=status, ok=ok, error=error, at=timezone.now())
            if refused:
                return {"batches": len(batches), "delivered": delivered, "error": error}  # every batch would be refused alike
            if ok:
                delivered += 1
                break
            if status is not None and 300 <= status < 500 and status != 429:
                break  # a redirect (not followed) or the receiver refuses this batch: retrying will not help
            if attempt < MAX_ATTEMPTS:
                sleep(backoff * 2 ** (attempt - 1))
        else:
            if status is None:  # never reached through every attempt: the later batches would wait out the same retries
                return {"batches": len(batches), "delivered": delivered, "error": f"the endpoint could not be reached ({error}); later batches were not sent"}
    return {"batches": len(batches), "delivered": delivered}


def delivery_summary(campaign: Campaign) -> dict[str, Any] | None:
    """How the webhook delivery went, for the campaign's report: None without a webhook."""
    if not campaign.webhook_url:
        return None
    with tenant_context(campaign.tenant):
        attempts = list(WebhookDelivery.objects.filter(campaign=campaign).order_by("at", "pk").values("batch", "batches", "ok", "status_code", "error", "at"))
    delivered = {a["batch"] for a in attempts if a["ok"]}
    failed = [a for a in attempts if not a["ok"]]
    last = failed[-1] if failed else None
    return {"batches": attempts[-1]["batches"] if attempts else None, "delivered": len(delivered), "attempts": len(attempts),
            "last_error": (last["error"] or f"HTTP {last['status_code']}") if last else "", "last_attempt_at": attempts[-1]["at"] if attempts else None}
