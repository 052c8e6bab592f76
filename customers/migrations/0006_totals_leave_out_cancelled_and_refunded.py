"""Customer totals (order count, spend, first and last order) leave out cancelled and
refunded orders, as the models, the lifecycle and the campaign outcomes do: recompute them
for the rows already stored. Plain SQL that PostgreSQL and SQLite both run."""

from django.db import migrations

RECOMPUTE = """
UPDATE customers_customer SET
    order_count = (SELECT count(*) FROM customers_order o
                   WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded')),
    total_spent = COALESCE((SELECT sum(o.amount) FROM customers_order o
                            WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded')), 0),
    first_order_at = (SELECT min(o.ordered_at) FROM customers_order o
                      WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded')),
    last_order_at = (SELECT max(o.ordered_at) FROM customers_order o
                     WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded'))
WHERE EXISTS (SELECT 1 FROM customers_order o WHERE o.customer_id = customers_customer.id AND o.status IN ('cancelled', 'refunded'))
"""


class Migration(migrations.Migration):
    dependencies = [("customers", "0005_lean_bulk_tables")]

    operations = [migrations.RunSQL(RECOMPUTE, reverse_sql=migrations.RunSQL.noop)]
