"""The import service: all-or-nothing, idempotent, row- and column-level errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services.imports import import_csv, import_rows
from tests.conftest import ORDERS_A, write_csv

pytestmark = pytest.mark.django_db


def counts(tenant: Any) -> dict[str, int]:
    with tenant_context(tenant):
        return {
            "customers": Customer.objects.count(),
            "products": Product.objects.count(),
            "orders": Order.objects.count(),
            "items": OrderItem.objects.count(),
            "reviews": Review.objects.count(),
        }


def snapshot(tenant: Any) -> list[tuple[Any, ...]]:
    with tenant_context(tenant):
        return sorted(Order.objects.values_list("external_id", "customer__external_id", "ordered_at", "amount", "updated_at")) + sorted(
            Customer.objects.values_list("external_id", "order_count", "total_spent", "updated_at")
        )


def test_orders_import_builds_orders_lines_customers_and_products(tenant_a, tmp_path):
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS_A))

    assert result.ok, result.errors
    assert (result.rows, result.created, result.updated, result.unchanged) == (3, 3, 0, 0)
    assert counts(tenant_a) == {"customers": 2, "products": 2, "orders": 3, "items": 4, "reviews": 0}
    with tenant_context(tenant_a):
        o1 = Order.objects.get(external_id="o1")
        assert o1.amount == Decimal("25.50")
        assert [(i.line_no, i.product.sku, i.quantity, i.unit_price) for i in o1.items.order_by("line_no")] == [
            (1, "s1", 2, Decimal("10.00")),
            (2, "s2", 1, Decimal("5.50")),
        ]
        c1 = Customer.objects.get(external_id="c1")
        assert (c1.order_count, c1.total_spent) == (2, Decimal("65.50"))
        assert c1.first_order_at.isoformat() == "2024-01-05T00:00:00+00:00"
        assert c1.last_order_at.isoformat() == "2024-03-01T10:00:00+00:00"
        assert Product.objects.get(sku="s1").category == "Shoes"


def test_cancelled_and_refunded_orders_are_kept_but_left_out_of_the_totals(tenant_a, tmp_path):
    from customers.services.queries import dashboard_stats

    rows = [
        {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "20.00"},
        {"customer_id": "c1", "order_id": "o2", "ordered_at": "2024-02-05", "amount": "30.00", "status": "refunded"},
        {"customer_id": "c2", "order_id": "o3", "ordered_at": "2024-03-05", "amount": "40.00", "status": "cancelled"},
    ]
    assert import_rows(tenant_a, "orders", rows).ok
    with tenant_context(tenant_a):
        assert Order.objects.count() == 3
        c1, c2 = Customer.objects.get(external_id="c1"), Customer.objects.get(external_id="c2")
    assert (c1.order_count, c1.total_spent, c1.last_order_at.date().isoformat()) == (1, Decimal("20.00"), "2024-01-05")
    assert (c2.order_count, c2.total_spent, c2.last_order_at) == (0, Decimal("0"), None)
    stats = dashboard_stats(tenant_a)
    assert (stats["revenue"], stats["orders"], stats["buyers"]) == (Decimal("20.00"), 1, 1)
    assert [m["revenue"] for m in stats["monthly"]] == [20.0]


@pytest.mark.parametrize(("content", "encoding"), [
    ("customer_id;order_id;ordered_at;amount\nc1;o1;2024-01-05;20.00\nc2;o2;2024-02-05;\"1,250.00\"\n", "utf-8-sig"),
    ("customer_id\torder_id\tordered_at\tamount\nc1\to1\t2024-01-05\t20.00\nc2\to2\t2024-02-05\t1250.00\n", "utf-16"),
    ("customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-05,20.00\nc2,o2,2024-02-05,1250.00\n", "utf-16"),
])
def test_semicolon_and_tab_files_and_utf16_exports_import(tenant_a, tmp_path, content, encoding):
    """What spreadsheets save: semicolons where the decimal mark is a comma, and Excel's
    "Unicode text" (UTF-16 with a BOM, tab-separated)."""
    path = tmp_path / "orders.csv"
    path.write_bytes(content.encode(encoding))
    result = import_csv(tenant_a, "orders", str(path))
    assert result.ok, result.errors
    with tenant_context(tenant_a):
        assert sorted(Order.objects.values_list("external_id", "amount")) == [("o1", Decimal("20.00")), ("o2", Decimal("1250.00"))]


def test_reimporting_the_same_file_changes_nothing(tenant_a, tmp_path):
    path = write_csv(tmp_path / "o.csv", ORDERS_A)
    import_csv(tenant_a, "orders", path)
    before = snapshot(tenant_a)

    again = import_csv(tenant_a, "orders", path)

    assert again.ok
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert snapshot(tenant_a) == before


def test_changed_rows_update_in_place(tenant_a, tmp_path):
    import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS_A))

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o2.csv", "customer_id,order_id,ordered_at,amount\nc2,o3,2024-02-10,20.00\n"))

    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    with tenant_context(tenant_a):
        assert Order.objects.get(external_id="o3").amount == Decimal("20.00")
        assert Customer.objects.get(external_id="c2").total_spent == Decimal("20.00")


def test_bad_row_at_the_end_imports_nothing_and_names_row_and_column(tenant_a, tmp_path):
    text = ORDERS_A + "c9,o9,2024-13-45,12.00,1,s1,Trail shoe,Shoes\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(6, "ordered_at")]
    assert "nothing was imported" in result.message.lower()
    assert counts(tenant_a) == {"customers": 0, "products": 0, "orders": 0, "items": 0, "reviews": 0}


def test_every_bad_row_is_reported(tenant_a, tmp_path):
    text = (
        "customer_id,order_id,ordered_at,amount,quantity\n"
        "c1,o1,yesterday,12,1\n"
        "c1,o2,2024-01-01,NaN,1\n"
        "c1,o3,2024-01-01,inf,1\n"
        ",o4,2024-01-01,3,1\n"
        "c1,o5,2024-01-01,3,0\n"
        "c1,o6,2024-01-01,-3,1\n"
        "c1,o7,2024-01-01\n"
    )

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert [(e.row, e.column) for e in result.errors] == [
        (2, "ordered_at"),
        (3, "amount"),
        (4, "amount"),
        (5, "customer_id"),
        (6, "quantity"),
        (7, "amount"),
        (8, ""),
    ]
    assert result.error_count == 7
    assert "has 3 fields but the header has 5" in result.errors[-1].message


def test_error_report_is_capped_but_counts_everything(tenant_a, tmp_path, settings):
    settings.IMPORT_MAX_REPORTED_ERRORS = 5
    text = "customer_id,order_id,ordered_at,amount\n" + "".join(f"c{i},o{i},bad,1\n" for i in range(20))

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert len(result.errors) == 5
    assert result.error_count == 20
    assert "first 5 are listed" in result.message


def test_missing_required_column_is_named(tenant_a, tmp_path):
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", "customer_id,order_id,amount\nc1,o1,3\n"))

    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(1, "ordered_at")]


def test_conflicting_duplicate_order_id_is_refused(tenant_a, tmp_path):
    text = "customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,3\nc2,o1,2024-01-01,4\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(3, "customer_id")]
    assert result.errors[0].message == "order_id o1 repeats row 2, and this order line has a different customer_id (c2 here, c1 there)"
    assert counts(tenant_a)["orders"] == 0


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ("\ufeffcustomer_id,name\r\nc1,Zoë\r\n", "utf-8"),
        ("customer_id,name\r\nc1,Zoë\r\n", "latin-1"),
    ],
)
def test_bom_crlf_and_latin1_files_import(tenant_a, tmp_path, content, encoding):
    path = tmp_path / "c.csv"
    path.write_bytes(content.encode(encoding))

    result = import_csv(tenant_a, "customers", str(path))

    assert result.ok, result.errors
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").name == "Zoë"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"", "empty"),
        (b"customer_id,order_id,ordered_at,amount\n", "no data rows"),
        (b"\x00\x01\x02\xff\xfe binary", "binary"),
        (b"customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,1\x00\n", "NUL"),
        (b"customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,\"" + b"x" * 200_000 + b"\"\n", "longer than"),
        # A quote never closed would make every later row one cell: those orders must not vanish.
        (b"customer_id,order_id,ordered_at,amount,product_name\nq1,o1,2024-01-01,1.00,\"Shoe\nq2,o2,2024-01-02,2.00,Sock\n", "row 2 cannot be read"),
        (b"customer_id,order_id,ordered_at,amount,product_name\nq1,o1,2024-01-01,1.00,\"Shoe\" 5in\n", "text follows a closing quote"),
    ],
)
def test_hostile_files_get_a_clear_error_and_import_nothing(tenant_a, tmp_path, payload, needle):
    path = tmp_path / "bad.csv"
    path.write_bytes(payload)

    result = import_csv(tenant_a, "orders", str(path))

    assert not result.ok
    assert needle.lower() in (result.message + " ".join(e.message for e in result.errors)).lower()
    assert counts(tenant_a)["orders"] == 0


def test_size_and_row_limits(tenant_a, tmp_path, settings):
    path = write_csv(tmp_path / "o.csv", ORDERS_A)
    settings.IMPORT_MAX_BYTES = 50
    assert "the limit is" in import_csv(tenant_a, "orders", path).message
    settings.IMPORT_MAX_BYTES = 10_000
    settings.IMPORT_MAX_ROWS = 2
    result = import_csv(tenant_a, "orders", path)
    assert not result.ok
    assert "more than 2 rows" in result.message
    assert counts(tenant_a)["orders"] == 0


def test_customers_import_keeps_extra_columns_and_updates_only_given_columns(tenant_a, tmp_path):
    import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,email,name,country,created_at,loyalty\nc1,ANN@X.COM,Ann,US,2023-05-01,gold\n"))

    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c2.csv", "customer_id,country\nc1,CA\n"))

    assert (result.updated, result.created) == (1, 0)
    with tenant_context(tenant_a):
        c1 = Customer.objects.get(external_id="c1")
    assert (c1.email, c1.name, c1.country, c1.attributes) == ("ann@x.com", "Ann", "CA", {"loyalty": "gold"})
    assert c1.first_seen.isoformat() == "2023-05-01T00:00:00+00:00"


def test_reviews_import_creates_unknown_customers_and_checks_ratings(tenant_a, tmp_path):
    good = "customer_id,review_id,created_at,text,rating\nc1,r1,2024-01-01,Lovely,5\nc2,r2,2024-01-02,Unrated note,\n"
    assert import_csv(tenant_a, "reviews", write_csv(tmp_path / "r.csv", good)).ok
    with tenant_context(tenant_a):
        assert sorted(Review.objects.values_list("external_id", "rating")) == [("r1", 5), ("r2", None)]
        assert Customer.objects.get(external_id="c1").review_count == 1

    bad = import_csv(tenant_a, "reviews", write_csv(tmp_path / "r2.csv", "customer_id,review_id,created_at,text,rating\nc1,r3,2024-01-01,Hm,6\n"))
    assert [(e.row, e.column) for e in bad.errors] == [(2, "rating")]


def test_products_import(tenant_a, tmp_path):
    result = import_csv(tenant_a, "products", write_csv(tmp_path / "p.csv", "sku,name,category,price\ns1,Trail shoe,Shoes,89.90\n"))
    assert result.ok
    with tenant_context(tenant_a):
        assert Product.objects.get(sku="s1").price == Decimal("89.90")


def test_json_rows_use_the_same_rules(tenant_a):
    rows = [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": 12.5}, {"customer_id": "c1", "order_id": "o2", "ordered_at": "nope", "amount": 1}]

    result = import_rows(tenant_a, "orders", rows)

    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(2, "ordered_at")]
    assert import_rows(tenant_a, "orders", rows[:1]).ok


def test_imports_are_scoped_to_their_tenant(tenant_a, tenant_b, tmp_path):
    path = write_csv(tmp_path / "o.csv", ORDERS_A)
    import_csv(tenant_a, "orders", path)

    result = import_csv(tenant_b, "orders", path)

    assert result.created == 3  # the same external ids are new in another tenant
    assert counts(tenant_a)["orders"] == counts(tenant_b)["orders"] == 3


def test_cli_success_and_failure(tenant_a, tmp_path, capsys):
    call_command("import_data", "--tenant", "shop-a", "--kind", "orders", write_csv(tmp_path / "o.csv", ORDERS_A))
    assert "3 new" in capsys.readouterr().out

    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_data", "--tenant", "shop-a", "--kind", "orders", write_csv(tmp_path / "b.csv", "customer_id\nc1\n"))
    assert "missing required column 'order_id'" in capsys.readouterr().err

    with pytest.raises(CommandError, match="No tenant with slug"):
        call_command("import_data", "--tenant", "nope", "--kind", "orders", str(tmp_path / "o.csv"))
