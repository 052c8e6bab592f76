"""Planner statistics refreshed right after a bulk write, not whenever autovacuum gets to it."""

from __future__ import annotations

from django.db import connection, models


def refresh_statistics(*tables: type[models.Model] | str) -> None:
    """ANALYZE the tables (models or table names) a bulk write just filled, on PostgreSQL.

    A query planned on statistics that never saw the new rows takes each side for one row and
    can pick a nested loop over both: a Lifecycle matrix cell of a first scoring of 50,000
    customers compared 414 million pairs in 37 s, and 14 ms once analysed."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for table in tables:
            name = table if isinstance(table, str) else table._meta.db_table
            cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
