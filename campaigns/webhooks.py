"""Webhook delivery: a launched campaign's treatment group POSTed in batches to the
merchant's URL, HMAC-signed, with retries and exponential backoff, every attempt logged.

Each request carries ``X-CLM-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` with the campaign's webhook secret, and ``X-CLM-Timestamp``; the
receiver recomputes it (and may refuse old timestamps against replays). A batch is retried
on a connection error or a 5xx/429 answer; a 4xx other than 429 is final.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from campaigns.models import Campaign, WebhookDelivery
from campaigns.services import member_record, treatment_rows
from clmsite.tenancy import tenant_context

BATCH_SIZE = 500
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 1.0  # 1, 2, 4, 8 s between attempts
TIMEOUT_SECONDS = 10


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    if not url.startswith(("https://", "http://")):  # never file:// or custom schemes
        raise urllib.error.URLError("only http(s) webhook URLs are allowed")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (http(s) only: checked on save)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only, checked in _post  # nosec B310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def deliver(campaign: Campaign, *, batch_size: int | None = None, backoff: float | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Send every batch; returns how many were delivered. Batches already delivered (a
    retried task) are skipped, so a redelivery never sends a batch twice after success."""
    tenant = campaign.tenant
    batch_size, backoff = batch_size or BATCH_SIZE, BACKOFF_SECONDS if backoff is None else backoff
    with tenant_context(tenant):
        records = [member_record(campaign, m) for m in treatment_rows(campaign)]
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
            try:
                status = _post(campaign.webhook_url, body, headers)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                error = str(getattr(exc, "reason", exc))[:300]
            ok = status is not None and 200 <= status < 300
            with tenant_context(tenant):
                WebhookDelivery.objects.create(tenant=tenant, campaign=campaign, batch=number, batches=len(batches), attempt=attempt,
                                               customers=len(batch), status_code=status, ok=ok, error=error, at=timezone.now())
            if ok:
                delivered += 1
                break
            if status is not None and 400 <= status < 500 and status != 429:
                break  # the receiver refuses this batch: retrying will not help
            if attempt < MAX_ATTEMPTS:
                sleep(backoff * 2 ** (attempt - 1))
    return {"batches": len(batches), "delivered": delivered}
