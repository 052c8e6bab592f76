"""Failed and voided orders (a payment that did not go through) are not sales, as cancelled
and refunded ones are not: recompute the totals (order count, spend, first and last order) of
the customers who have such orders stored (and stamp them, for incremental sync). Plain SQL that PostgreSQL and SQLite both run.
Stages and predictions follow at the next scoring."""

from django.db import migrations

NOT_SALE = "('cancelled', 'refunded', 'failed', 'voided')"  # Order.NOT_REVENUE as of this migration, written out below

RECOMPUTE = """
UPDATE customers_customer SET
    order_count = (SELECT count(*) FROM customers_order o
                   WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded', 'failed', 'voided')),
    total_spent = COALESCE((SELECT sum(o.amount) FROM customers_order o
                            WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded', 'failed', 'voided')), 0),
    first_order_at = (SELECT min(o.ordered_at) FROM customers_order o
                      WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded', 'failed', 'voided')),
    last_order_at = (SELECT max(o.ordered_at) FROM customers_order o
                     WHERE o.customer_id = customers_customer.id AND o.status NOT IN ('cancelled', 'refunded', 'failed', 'voided')),
    updated_at = CURRENT_TIMESTAMP
WHERE EXISTS (SELECT 1 FROM customers_order o WHERE o.customer_id = customers_customer.id AND o.status IN ('failed', 'voided'))
"""


class Migration(migrations.Migration):
    dependencies = [("customers", "0009_customer_total_spent_wider")]

    operations = [
        # An import stored these spellings as given before it read them as ours (as 0007 did for "canceled").
        migrations.RunSQL("UPDATE customers_order SET status = CASE status WHEN 'void' THEN 'voided' ELSE 'failed' END WHERE status IN ('void', 'fail')",
                          reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(RECOMPUTE, reverse_sql=migrations.RunSQL.noop),
    ]
