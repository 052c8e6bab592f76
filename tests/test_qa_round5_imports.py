"""QA round 5, imports: moved reviews, strict money, long attributes, exact sums on SQLite,
duplicate columns, JSON attributes compared as JSON, ignored columns named."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Review
from customers.services import parsing
from customers.services.imports import import_csv, import_rows
from tests.conftest import api_client_for, write_csv

pytestmark = pytest.mark.django_db

ORDERS = "customer_id,order_id,ordered_at,amount\n"
REVIEWS = "customer_id,review_id,created_at,text\n"


def review_counts(tenant: Any) -> dict[str, int]:
    with tenant_context(tenant):
        return dict(Customer.objects.values_list("external_id", "review_count"))


# 1. A review moved to another customer


def test_a_review_moved_to_another_customer_leaves_the_first_with_no_review_count(tenant_a, tmp_path):
    # given a review of customer a
    assert import_csv(tenant_a, "reviews", write_csv(tmp_path / "r1.csv", REVIEWS + "a,r1,2024-01-05,Fine\n")).ok
    assert review_counts(tenant_a) == {"a": 1}

    # when the same review is imported as customer b's
    result = import_csv(tenant_a, "reviews", write_csv(tmp_path / "r2.csv", REVIEWS + "b,r1,2024-01-05,Fine\n"))

    # then a has no review left to count and b has it
    assert (result.ok, result.created, result.updated, result.unchanged) == (True, 0, 1, 0)
    assert review_counts(tenant_a) == {"a": 0, "b": 1}
    with tenant_context(tenant_a):
        assert list(Review.objects.values_list("external_id", "customer__external_id")) == [("r1", "b")]


def test_a_review_moved_by_the_bulk_api_refreshes_both_customers(tenant_a):
    rows = [{"customer_id": "a", "review_id": "r1", "created_at": "2024-01-05", "text": "Fine"},
            {"customer_id": "a", "review_id": "r2", "created_at": "2024-01-06", "text": "Good"}]
    assert import_rows(tenant_a, "reviews", rows).ok

    result = import_rows(tenant_a, "reviews", [{**rows[1], "customer_id": "b"}])

    assert (result.ok, result.updated) == (True, 1)
    assert review_counts(tenant_a) == {"a": 1, "b": 1}


# 2. Strict money


@pytest.mark.parametrize(("raw", "value"), [
    ("19.99", "19.99"), ("19.9900", "19.99"), ("10", "10.00"), ("1,250.00", "1250.00"), ("1,000.5", "1000.50"),
    ("12,345,678.90", "12345678.90"), (" 7.5 ", "7.50"), (".5", "0.50"), ("0", "0.00"), ("+3", "3.00"),
])
def test_plain_decimal_amounts_are_accepted(raw, value):
    assert parsing.parse_money(raw) == Decimal(value)


@pytest.mark.parametrize(("raw", "message"), [
    ("1,2.5", "'1,2.5' has commas that are not thousands separators; group digits in threes (1,234.50) or leave the commas out"),
    ("1,000,00.00", "'1,000,00.00' has commas that are not thousands separators; group digits in threes (1,234.50) or leave the commas out"),
    ("0,500.00", "'0,500.00' has commas that are not thousands separators; group digits in threes (1,234.50) or leave the commas out"),
    ("1,000", "'1,000' is ambiguous (a comma may separate thousands or mark decimals); write a whole amount as 1000 or 1,000.00"),
    ("-12,345,678", "'-12,345,678' is ambiguous (a comma may separate thousands or mark decimals); write a whole amount as -12345678 or -12,345,678.00"),
    ("1e3", "'1e3' is in scientific notation; write a plain decimal number (1000)"),
    ("1E-2", "'1E-2' is in scientific notation; write a plain decimal number (0.01)"),
    ("1e999999", "'1e999999' is in scientific notation; write a plain decimal number"),
    ("NaN", "'NaN' is not a number"),
    ("Infinity", "'Infinity' is not a number"),
    ("-inf", "'-inf' is not a number"),
    ("1e99999999999999999999", "'1e99999999999999999999' is in scientific notation; write a plain decimal number"),
    ("1e-99999", "'1e-99999' is in scientific notation; write a plain decimal number"),
    ("1.5e", "'1.5e' is not a number"),
    ("1_000.00", "'1_000.00' is not a number"),
    ("\u0661\u0662", "'\u0661\u0662' is not a number"),
    ("12 000", "'12 000' is not a number"),
    ("19,99", "'19,99' has a decimal comma; write money with a dot (19.99)"),
    ("1.234,50", "'1.234,50' has a decimal comma; write money with a dot (1234.50)"),
])
def test_money_that_is_not_a_plain_decimal_number_is_refused(raw, message):
    with pytest.raises(parsing.FieldError) as caught:
        parsing.parse_money(raw)
    assert str(caught.value) == message


def test_each_bad_amount_is_a_row_error_naming_its_column_and_nothing_is_imported(tenant_a, tmp_path):
    text = ORDERS + 'c1,o1,2024-01-05,"1,2.5"\nc1,o2,2024-01-05,1e3\nc2,o3,2024-01-05,1E-2\nc2,o4,2024-01-05,"1,000.5"\n'

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (2, "amount", "'1,2.5' has commas that are not thousands separators; group digits in threes (1,234.50) or leave the commas out"),
        (3, "amount", "'1e3' is in scientific notation; write a plain decimal number (1000)"),
        (4, "amount", "'1E-2' is in scientific notation; write a plain decimal number (0.01)"),
    ]
    with tenant_context(tenant_a):
        assert (Order.objects.count(), Customer.objects.count()) == (0, 0)


def test_a_product_price_in_scientific_notation_is_a_row_error(tenant_a, tmp_path):
    result = import_csv(tenant_a, "products", write_csv(tmp_path / "p.csv", "sku,price\ns1,2.5e1\n"))

    assert [(e.row, e.column, e.message) for e in result.errors] == [(2, "price", "'2.5e1' is in scientific notation; write a plain decimal number (25)")]


# 3. Long attribute values


def test_an_attribute_over_1000_characters_is_a_row_error_not_truncated(tenant_a, tmp_path):
    text = "customer_id,tier,note\nc1,gold,ok\nc2,silver," + "x" * 1001 + "\n"

    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", text))

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [(3, "note", "is 1,001 characters long; the limit is 1,000")]
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 0


def test_an_attribute_of_exactly_1000_characters_is_kept_whole(tenant_a, tmp_path):
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,note\nc1," + "x" * 1000 + "\n"))

    assert result.ok, result.errors
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").attributes == {"note": "x" * 1000}


# 4. Exact money sums (SQLite sums floats)


def test_sums_of_amounts_are_exact_to_the_cent(tenant_a, tmp_path):
    # given lines whose float sum is 0.30000000000000004
    text = "customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-05,0.10\nc1,o1,2024-01-05,0.20\nc1,o2,2024-01-06,0.10\nc1,o2,2024-01-06,0.20\n"

    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text)).ok

    # then the stored order amounts and the customer's total match exact filters
    with tenant_context(tenant_a):
        assert list(Order.objects.filter(amount=Decimal("0.30")).order_by("external_id").values_list("external_id", flat=True)) == ["o1", "o2"]
        assert Customer.objects.filter(total_spent__lte=Decimal("0.60"), total_spent__gte=Decimal("0.60")).count() == 1
    api = api_client_for(tenant_a)
    assert [c["external_id"] for c in api.get("/api/v1/customers/?max_spent=0.60").json()["results"]] == ["c1"]
    # and an identical re-import has nothing to rewrite
    again = import_csv(tenant_a, "orders", write_csv(tmp_path / "o2.csv", text))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)


# 5. Duplicate columns


def test_a_column_named_twice_says_so_not_that_a_required_column_is_missing(tenant_a, tmp_path):
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,email,Email\nc1,a@example.com,b@example.com\n"))

    assert not result.ok
    assert result.message == "Nothing was imported: the header names email twice; name each column once."
    assert [(e.row, e.column, e.message) for e in result.errors] == [(1, "email", "column appears twice (positions 2 and 3)")]
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 0


def test_a_missing_required_column_is_still_named_with_a_repeated_one(tenant_a, tmp_path):
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", "customer_id,order_id,amount,amount\nc1,o1,1,1\n"))

    assert result.message == ("Nothing was imported: the header must contain customer_id, order_id, ordered_at, amount. "
                              "The file's columns are customer_id, order_id, amount, amount: rename those that hold them.")
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (1, "amount", "column appears twice (positions 3 and 4)"), (1, "ordered_at", "missing required column 'ordered_at'"),
    ]


def test_two_json_keys_for_one_column_in_a_row_are_named_with_the_other_errors(tenant_a):
    rows = [
        {"Customer_ID": "c1", "email": "bad", "customer_id": "c1"},
        {"customer_id": "c2", "email": "also bad"},
    ]

    result = import_rows(tenant_a, "customers", rows)

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (1, "customer_id", "keys 'Customer_ID' and 'customer_id' name the same column; send one of them"),
        (1, "email", "'bad' is not an email address"),
        (2, "email", "'also bad' is not an email address"),
    ]
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 0


def test_json_keys_are_read_without_case_as_a_csv_header_is(tenant_a):
    rows = [{"Customer_ID": "c1", "Tier": "gold"}, {"customer_id": "c2", "tier": "silver"}]

    result = import_rows(tenant_a, "customers", rows)

    assert result.ok, result.errors
    with tenant_context(tenant_a):
        assert dict(Customer.objects.values_list("external_id", "attributes")) == {"c1": {"tier": "gold"}, "c2": {"tier": "silver"}}


def test_two_json_keys_for_one_attribute_in_a_row_are_a_row_error(tenant_a):
    result = import_rows(tenant_a, "customers", [{"customer_id": "c1", "Tier": "gold", "tier": "silver"}])

    assert [(e.row, e.column, e.message) for e in result.errors] == [(1, "tier", "keys 'Tier' and 'tier' name the same column; send one of them")]


# 6. JSON compared as JSON


def test_an_identical_import_after_an_api_edit_is_unchanged(tenant_a, tmp_path):
    # given a customer with attributes, then edited through the API (only the name)
    text = "customer_id,name,tier,city\nc1,Ann,gold,Oslo\n"
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c1.csv", text)).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    api = api_client_for(tenant_a)
    assert api.patch(f"/api/v1/customers/{customer.pk}/", {"name": "Ann B"}, format="json").status_code == 200
    with tenant_context(tenant_a):
        before = Customer.objects.values_list("name", "attributes", "updated_at").get(external_id="c1")

    # when the same data is imported
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c2.csv", text.replace("Ann,", "Ann B,")))

    # then nothing changed
    assert (result.ok, result.created, result.updated, result.unchanged) == (True, 0, 0, 1)
    with tenant_context(tenant_a):
        assert Customer.objects.values_list("name", "attributes", "updated_at").get(external_id="c1") == before


def test_attributes_edited_through_the_api_in_another_key_order_still_compare_equal(tenant_a, tmp_path):
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c1.csv", "customer_id,a,b\nc1,1,2\n")).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    api = api_client_for(tenant_a)
    assert api.patch(f"/api/v1/customers/{customer.pk}/", {"attributes": {"b": "2", "a": "1"}}, format="json").status_code == 200

    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c2.csv", "customer_id,b,a\nc1,2,1\n"))

    assert (result.created, result.updated, result.unchanged) == (0, 0, 1)


def test_a_changed_attribute_is_still_an_update(tenant_a, tmp_path):
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c1.csv", "customer_id,tier\nc1,gold\n")).ok

    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c2.csv", "customer_id,tier\nc1,silver\n"))

    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").attributes == {"tier": "silver"}


# 7. Ignored columns are named


@pytest.mark.parametrize(("kind", "text"), [
    ("orders", "customer_id,order_id,ordered_at,amount,Coupon,notes\nc1,o1,2024-01-05,10.00,X,y\n"),
    ("products", "sku,name,coupon,notes\ns1,Shoe,X,y\n"),
    ("reviews", "customer_id,review_id,created_at,text,coupon,notes\nc1,r1,2024-01-05,Fine,X,y\n"),
])
def test_columns_a_kind_does_not_use_are_named_in_the_result(tenant_a, tmp_path, kind, text):
    result = import_csv(tenant_a, kind, write_csv(tmp_path / "f.csv", text))

    assert result.ok, result.errors
    assert result.ignored_columns == ["coupon", "notes"]
    assert result.message.endswith(f"unchanged. Ignored 2 columns that {kind} do not use: coupon, notes.")
    assert result.as_dict()["ignored_columns"] == ["coupon", "notes"]


def test_a_bulk_request_names_the_ignored_key(tenant_a):
    result = import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "1", "coupon": "X"}])

    assert result.ignored_columns == ["coupon"]
    assert result.message == "Imported 1 order: 1 new, 0 updated, 0 unchanged. Ignored 1 column that orders do not use: coupon."


def test_a_file_with_only_known_columns_ignores_none_and_customers_keep_extras_as_attributes(tenant_a, tmp_path):
    orders = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS + "c1,o1,2024-01-05,10.00\n"))
    customers = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,tier\nc1,gold\n"))

    assert (orders.ignored_columns, orders.message) == ([], "Imported 1 order: 1 new, 0 updated, 0 unchanged.")
    assert (customers.ignored_columns, customers.attribute_columns) == ([], ["tier"])
    assert customers.message == "Imported 1 customer: 0 new, 1 updated, 0 unchanged. Kept 1 column as attributes: tier."
