"""One order or review changed or deleted over the API, as an integrator does when the shop
refunds an order or deletes a review: the row changes, and its customer's counts follow at
once, as after an import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from clmsite.datacache import bump_data_version
from customers.models import Order, Review
from customers.services.imports import SHOP_LOCK, refresh_customer_aggregates


@contextmanager
def _recounting(record: Order | Review) -> Iterator[Any]:
    """A transaction that, on PostgreSQL, first waits for an import of the shop that is
    writing, and at its end recomputes the record's customer's order count, spend, first and
    last order and review count. The block's cursor is yielded."""
    tenant_id, customer_id, now = record.tenant_id, record.customer_id, timezone.now()
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cursor:
        if postgres:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SHOP_LOCK, tenant_id])
        yield cursor
        refresh_customer_aggregates(cursor, tenant_id, "c.id = %(customer)s",
                                    {"customer": customer_id, "now": now if postgres else now.replace(tzinfo=None).isoformat(" ")})
    bump_data_version(tenant_id)


def do_delete_record(record: Order | Review) -> None:
    """Delete an order (its lines with it) or a review. The customer stays, with their other
    orders and reviews; stages and predictions take the change in at the next scoring."""
    with _recounting(record):
        record.delete()


def do_set_order_status(order: Order, status: str) -> Order:
    """Give an order a new status (parsed as an import parses it): a cancelled or refunded
    order no longer counts as a purchase or as spend. Its lines stay."""
    if status != order.status:
        with _recounting(order):
            Order.objects.filter(pk=order.pk).update(status=status, updated_at=timezone.now())
        order.refresh_from_db()
    return order
