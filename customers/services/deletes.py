"""Deleting one order or review, as an integrator does when the shop deleted it: the row
goes, with an order's lines, and its customer's counts follow at once."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from clmsite.datacache import bump_data_version
from customers.models import Order, Review
from customers.services.imports import SHOP_LOCK, refresh_customer_aggregates


def do_delete_record(record: Order | Review) -> None:
    """Delete an order (its lines with it) or a review, and recompute its customer's order
    count, spend, first and last order and review count, as an import does. The customer
    stays, with their other orders and reviews; stages and predictions take the change in at
    the next scoring. On PostgreSQL it waits for an import of the shop that is writing."""
    tenant_id, customer_id = record.tenant_id, record.customer_id
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SHOP_LOCK, tenant_id])
        record.delete()
        refresh_customer_aggregates(cursor, tenant_id, "c.id = %(customer)s",
                                    {"customer": customer_id, "now": now if connection.vendor == "postgresql" else now.replace(tzinfo=None).isoformat(" ")})
    bump_data_version(tenant_id)
