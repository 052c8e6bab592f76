"""Order statuses are compared without case from now on (imports store them in lower case,
"canceled" as "cancelled"): do the same to the statuses already stored, then recompute the
totals of customers with an order that is not a sale, as 0006 did. Plain SQL that
PostgreSQL and SQLite both run."""

import importlib

from django.db import migrations

NORMALISE = """
UPDATE customers_order SET status = CASE lower(trim(status))
    WHEN 'canceled' THEN 'cancelled' WHEN 'cancel' THEN 'cancelled' WHEN 'refund' THEN 'refunded'
    ELSE lower(trim(status)) END
WHERE status <> CASE lower(trim(status))
    WHEN 'canceled' THEN 'cancelled' WHEN 'cancel' THEN 'cancelled' WHEN 'refund' THEN 'refunded'
    ELSE lower(trim(status)) END
"""
RECOMPUTE = importlib.import_module("customers.migrations.0006_totals_leave_out_cancelled_and_refunded").RECOMPUTE


class Migration(migrations.Migration):
    dependencies = [("customers", "0006_totals_leave_out_cancelled_and_refunded")]

    operations = [migrations.RunSQL(NORMALISE, reverse_sql=migrations.RunSQL.noop), migrations.RunSQL(RECOMPUTE, reverse_sql=migrations.RunSQL.noop)]
