"""One order or review changed or deleted over the API, as an integrator does when the shop
refunds an order or deletes a review: the row changes, and its customer's counts follow at
once, as after an import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.utils import timezone

from clmsite.datacache import bump_data_version
from customers.models import Order, Review
from customers.services.imports import refresh_customer_aggregates, sql_now, take_shop_write_lock


class RecordGone(Exception):
    """The order or review was deleted while the change waited for the shop's import lock."""


@contextmanager
def _recounting(record: Order | Review) -> Iterator[None]:
    """A transaction that, on PostgreSQL, first waits for an import of the shop that is
    writing, then reads the record's customer again (that import may have moved an order to
    another customer) and at its end recomputes that customer's order count, spend, first
    and last order and review count. RecordGone when the record no longer exists."""
    tenant_id, now = record.tenant_id, sql_now()
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            take_shop_write_lock(cursor, tenant_id)
        customer_id = type(record).objects.select_for_update().filter(pk=record.pk).values_list("customer_id", flat=True).first()
        if customer_id is None:
            raise RecordGone
        yield
        refresh_customer_aggregates(cursor, tenant_id, "c.id = %(customer)s", {"customer": customer_id, "now": now})
    bump_data_version(tenant_id)


def do_delete_record(record: Order | Review) -> None:
    """Delete an order (its lines with it) or a review. The customer stays, with their other
    orders and reviews; stages and predictions take the change in at the next scoring."""
    with _recounting(record):
        type(record).objects.filter(pk=record.pk).delete()


def do_set_order_status(order: Order, status: str) -> Order:
    """Give an order a new status (parsed as an import parses it): a cancelled or refunded
    order no longer counts as a purchase or as spend. Its lines stay."""
    with _recounting(order):
        Order.objects.filter(pk=order.pk).exclude(status=status).update(status=status, updated_at=timezone.now())
    order.refresh_from_db()
    return order
