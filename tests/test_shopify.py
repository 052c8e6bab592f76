"""Shopify's orders export, uploaded as it comes: read as an orders file."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order
from customers.services.imports import import_csv
from customers.services.shopify import spread

pytestmark = pytest.mark.django_db

EXPORT = Path(__file__).parent / "fixtures" / "shopify_orders_export.csv"


def edited(tmp_path: Path, changes: dict[tuple[int, str], str]) -> str:
    """The fixture with some cells changed: (row number as a spreadsheet shows it, column) → text."""
    with EXPORT.open(newline="") as file:
        rows = list(csv.reader(file))
    for (row_no, column), text in changes.items():
        rows[row_no - 1][rows[0].index(column)] = text
    path = tmp_path / "orders_export.csv"
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return str(path)


def test_an_orders_export_imports_as_it_comes_and_again_changes_nothing(tenant_a):
    result = import_csv(tenant_a, "orders", str(EXPORT))

    assert result.ok, result.errors
    assert result.created == 5 and len(result.ignored_columns) == 79 - 13  # read: Name, Email, Created at, Total, the line's four, Vendor, …
    assert "Paid at" in result.ignored_columns and "Lineitem sku" not in result.ignored_columns
    assert "Read as a Shopify orders export" in result.message
    assert "1 order without an email (guest or point-of-sale checkouts) was left out" in result.message
    # The shop sells in USD (the default); the export is in EUR: said, as totals add amounts as they are.
    assert result.other_currencies == {"EUR": 5} and "5 orders are in another currency than the shop's: EUR (5)." in result.message
    with tenant_context(tenant_a):
        orders = {o.external_id: o for o in Order.objects.select_related("customer")}
        assert sorted(orders) == ["#1001", "#1002", "#1004", "#1005", "#1006"]  # #1003 has no email
        first = orders["#1001"]
        # The Total (52.00 with shipping) spread over the lines by price x quantity: 20 and 30 of 50.
        assert (first.amount, first.currency, first.status) == (Decimal("52.00"), "EUR", "paid")
        assert [(i.product.sku, i.quantity, i.amount, i.product.category) for i in first.items.select_related("product")] == [
            ("SOCK-1", 2, Decimal("20.80"), "Acme"), ("CAP-1", 1, Decimal("31.20"), "Acme")]  # the Vendor: the export has no product type
        assert first.ordered_at.isoformat() == "2025-03-04T09:15:00+00:00"  # Created at, +0100
        # One customer for two spellings of her email, which is also her address.
        alice = Customer.objects.get(external_id="alice@example.com")
        assert (alice.email, alice.order_count, alice.total_spent) == ("alice@example.com", 1, Decimal("52.00"))
        assert orders["#1002"].customer_id == alice.pk and orders["#1002"].status == "refunded"
        assert orders["#1004"].status == "cancelled"  # Cancelled at set, whatever its payment
        assert (orders["#1005"].amount, orders["#1005"].status) == (Decimal("60.00"), "partially_refunded")  # 100 less 40 refunded
        assert orders["#1006"].status == "voided"  # an expired payment
        gift = orders["#1004"].items.get()
        assert (gift.product.sku, gift.product.name) == ("Gift card", "Gift card")  # no sku: the title is its product
    again = import_csv(tenant_a, "orders", str(EXPORT))
    assert (again.ok, again.created, again.updated, again.unchanged) == (True, 0, 0, 5)


def test_a_bad_cell_is_named_by_the_exports_column_and_nothing_is_imported(tenant_a, tmp_path):
    path = edited(tmp_path, {(2, "Created at"): "yesterday", (3, "Lineitem price"): "thirty", (6, "Total"): "1OO.00", (7, "Lineitem quantity"): "0"})

    result = import_csv(tenant_a, "orders", path)

    assert not result.ok
    # Each bad cell once, where it is: row 3 only carries #1001's Created at from row 2.
    assert [(error.row, error.column) for error in result.errors] == [
        (2, "Created at"), (3, "Lineitem price"), (6, "Total"), (7, "Lineitem quantity")], result.errors
    assert result.error_count == 4
    assert not {error.column for error in result.errors} & {"ordered_at", "amount", "quantity"}
    with tenant_context(tenant_a):
        assert not Order.objects.exists() and not Customer.objects.exists()


def test_an_orders_export_uploaded_as_customers_says_to_import_it_as_orders(tenant_a):
    result = import_csv(tenant_a, "customers", str(EXPORT))

    assert not result.ok
    assert result.message == "Nothing was imported: this is a Shopify orders export, not a file of customers. Import it as orders."


def test_the_total_is_spread_to_the_cent_and_adds_up():
    assert spread(Decimal("10.00"), [Decimal(1)] * 3) == [Decimal("3.33"), Decimal("3.33"), Decimal("3.34")]
    assert spread(Decimal("52.00"), [Decimal(20), Decimal(30)]) == [Decimal("20.80"), Decimal("31.20")]
    assert spread(Decimal("9.99"), [Decimal(0), Decimal(0)]) == [Decimal("5.00"), Decimal("4.99")]  # free lines: equal shares


def test_an_email_customer_id_in_a_plain_orders_file_becomes_the_new_customers_email(tenant_a, tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("customer_id,order_id,ordered_at,amount\nana@example.com,o1,2024-01-05,10.00\nc-17,o2,2024-01-06,5.00\n", encoding="utf-8")

    assert import_csv(tenant_a, "orders", str(path)).ok
    with tenant_context(tenant_a):
        assert dict(Customer.objects.values_list("external_id", "email")) == {"ana@example.com": "ana@example.com", "c-17": ""}


CUSTOMERS_EXPORT = Path(__file__).parent / "fixtures" / "shopify_customers_export.csv"


def test_a_customers_export_names_customers_by_email_so_they_meet_their_orders(tenant_a):
    assert import_csv(tenant_a, "orders", str(EXPORT)).ok

    result = import_csv(tenant_a, "customers", str(CUSTOMERS_EXPORT))

    assert result.ok, result.errors
    assert (result.created, result.updated) == (0, 2)  # both came with their orders
    assert "Read as a Shopify customers export" in result.message
    assert "1 customer without an email was left out" in result.message
    assert result.attribute_columns == ["shopify_customer_id", "accepts_email_marketing", "accepts_sms_marketing", "tags"]
    assert "Default Address Address1" in result.ignored_columns and "Total Spent" in result.ignored_columns
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 3  # alice, bob and carol of the orders: no second Alice
        alice = Customer.objects.get(external_id="alice@example.com")
        assert (alice.name, alice.email, alice.country, alice.order_count) == ("Alice Martin", "alice@example.com", "FR", 1)
        assert alice.attributes == {"shopify_customer_id": "7011000000001", "accepts_email_marketing": "yes", "accepts_sms_marketing": "no", "tags": "vip, newsletter"}
    assert import_csv(tenant_a, "customers", str(CUSTOMERS_EXPORT)).unchanged == 2


def test_a_customers_export_uploaded_as_orders_says_to_import_it_as_customers(tenant_a):
    result = import_csv(tenant_a, "orders", str(CUSTOMERS_EXPORT))

    assert result.message == "Nothing was imported: this is a Shopify customers export, not a file of orders. Import it as customers."


def test_a_row_of_another_width_is_named_in_the_exports_own_count(tenant_a, tmp_path):
    path = tmp_path / "customers_export.csv"
    path.write_text(CUSTOMERS_EXPORT.read_text(encoding="utf-8") + "'7011000000004,Dan,Short,dan@example.com\n", encoding="utf-8")

    result = import_csv(tenant_a, "customers", str(path))

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [(5, "", "has 4 fields but the header has 20")]


def test_an_order_pasted_twice_is_read_once_and_one_split_apart_is_refused(tenant_a, tmp_path):
    with EXPORT.open(newline="") as file:
        rows = list(csv.reader(file))
    twice = tmp_path / "twice.csv"
    with twice.open("w", newline="") as file:
        csv.writer(file).writerows(rows + rows[1:3])  # #1001's two lines again, as two overlapping exports pasted together
    result = import_csv(tenant_a, "orders", str(twice))
    assert result.ok, result.errors
    assert "1 order appeared twice in the file, line for line (two exports pasted together?): each was read once." in result.message
    with tenant_context(tenant_a):
        assert Order.objects.get(external_id="#1001").amount == Decimal("52.00")

    split = tmp_path / "sorted.csv"  # sorted by another column: #1001's second line away from its first
    with split.open("w", newline="") as file:
        csv.writer(file).writerows([rows[0], rows[1], *rows[3:], rows[2]])
    refused = import_csv(tenant_a, "orders", str(split))
    assert not refused.ok
    assert [(e.row, e.column) for e in refused.errors] == [(8, "Name")]
    assert refused.errors[0].message.startswith("order #1001 has lines at row 2 too: the export lists an order's lines one after another")


def test_an_export_s_impossible_order_is_refused_not_guessed(tenant_a, tmp_path):
    path = edited(tmp_path, {(2, "Total"): "", (7, "Refunded Amount"): "140.00", (8, "Email"): "carol-at-example.com"})

    result = import_csv(tenant_a, "orders", path)

    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (2, "Total", "is required: the export writes each order's Total on its first line"),
        (7, "Refunded Amount", "140.00 is more than the order's Total, 100.00"),
        (8, "Email", "'carol-at-example.com' is not an email address")]


def test_a_customers_export_error_found_among_the_rows_is_named_by_the_exports_column(tenant_a, tmp_path):
    path = tmp_path / "customers_export.csv"  # Alice twice, her email in other capitals, her name otherwise
    path.write_text(CUSTOMERS_EXPORT.read_text(encoding="utf-8") + "'7011000000009,Alicia,Martin,ALICE@example.com,yes,,,,,,FR,,,,no,0.00,0,,no,\n",
                    encoding="utf-8")

    result = import_csv(tenant_a, "customers", str(path))

    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(5, "First Name")]  # found when loading, and named as the file names it


def test_an_email_customer_id_is_checked_and_kept_in_lower_case_as_an_email_column_is(tenant_a, tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("customer_id,order_id,ordered_at,amount\nMixed.Case@Example.COM,o1,2024-01-05,10.00\n<x@example.com>,o2,2024-01-06,5.00\n"
                    "mailto:y@example.com,o3,2024-01-06,5.00\nx@example..com,o4,2024-01-06,5.00\nmüller@example.de,o5,2024-01-06,5.00\n", encoding="utf-8")

    assert import_csv(tenant_a, "orders", str(path)).ok
    with tenant_context(tenant_a):
        assert dict(Customer.objects.exclude(email="").values_list("external_id", "email")) == {"Mixed.Case@Example.COM": "mixed.case@example.com"}


def test_shopify_s_unpaid_states_are_named_as_such_not_as_statuses_to_rename(tenant_a, tmp_path):
    result = import_csv(tenant_a, "orders", edited(tmp_path, {(2, "Financial Status"): "pending", (8, "Financial Status"): "authorized"}))

    assert result.ok and result.unusual_statuses == {"authorized": 1, "pending": 1}
    assert "2 orders have a payment status that is not yet a sale's, counted as a sale: authorized (1), pending (1)." in result.message
    assert "send it as" not in result.message


def test_two_exports_of_different_days_pasted_together_are_refused_as_such_sorted_or_not(tenant_a, tmp_path):
    with EXPORT.open(newline="") as file:
        rows = list(csv.reader(file))
    newer = [list(row) for row in rows[1:3]]
    newer[0][rows[0].index("Financial Status")] = "refunded"  # #1001 refunded since the first export
    pasted = tmp_path / "pasted.csv"
    with pasted.open("w", newline="") as file:
        csv.writer(file).writerows(rows + newer)
    result = import_csv(tenant_a, "orders", str(pasted))
    assert [(e.row, e.column) for e in result.errors] == [(9, "Name"), (10, "Name")]
    assert result.errors[0].message.startswith("order #1001 is in the file twice, at rows 2 and 9, with other lines or fields: two exports from different days")

    sorted_by_name = tmp_path / "sorted.csv"  # the advice a merchant might follow: sort by Name, so the copies meet
    with sorted_by_name.open("w", newline="") as file:
        csv.writer(file).writerows([rows[0], rows[1], rows[2], *newer, *rows[3:]])
    result = import_csv(tenant_a, "orders", str(sorted_by_name))
    assert {e.row for e in result.errors} == {2, 3, 4, 5} and {e.column for e in result.errors} == {"Name"}
    assert "order #1001 is in the file twice (its financial status differs between its lines)" in result.errors[0].message
    with tenant_context(tenant_a):
        assert not Order.objects.exists()


def test_a_shopify_customer_under_a_new_email_is_named_as_one_person_under_two(tenant_a, tmp_path):
    assert import_csv(tenant_a, "customers", str(CUSTOMERS_EXPORT)).ok
    newer = tmp_path / "customers_export.csv"  # Bob changed his email in Shopify since
    newer.write_text(CUSTOMERS_EXPORT.read_text(encoding="utf-8").replace("bob@example.com", "robert@example.com"), encoding="utf-8")

    result = import_csv(tenant_a, "customers", str(newer))

    assert result.ok and result.created == 1
    assert ("1 Shopify customer is here under two emails or more (an email changed?), each a customer of its own, with the orders placed under it: "
            "7011000000002: bob@example.com, robert@example.com.") in result.message
