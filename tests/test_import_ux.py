"""What a merchant's own exports need from an import: loosely spelt headers, amounts with a
decimal comma in semicolon files, the kind a header looks like, the columns kept as
attributes, and sample files to start from."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Product
from customers.services.imports import KINDS, import_csv, import_rows
from tests.conftest import write_csv
from tests.test_imports import counts

pytestmark = pytest.mark.django_db




def amounts(tenant: Any) -> dict[str, Decimal]:
    with tenant_context(tenant):
        return dict(Order.objects.values_list("external_id", "amount"))


# --- 1. Header names without case, with spaces and hyphens as underscores ------------------


def test_a_header_of_spaced_and_hyphenated_names_imports(tenant_a, tmp_path):
    text = "Customer ID,order-id,Ordered  At, AMOUNT ,Gift Note\nc1,o1,2024-01-05,10.00,Happy birthday\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert result.ok, result.errors
    assert (result.rows, result.created) == (1, 1)
    assert amounts(tenant_a) == {"o1": Decimal("10.00")}
    # An unused column is named as the file wrote it (in lower case, as before), not rewritten.
    assert result.ignored_columns == ["gift note"]
    assert result.message.endswith("Ignored 1 column that orders do not use: gift note.")


def test_one_column_spelt_two_ways_is_named_twice_and_nothing_is_imported(tenant_a, tmp_path):
    text = "customer_id,Customer ID,order_id,ordered_at,amount\nc1,c1,o1,2024-01-05,10.00\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert result.message == "Nothing was imported: the header names customer_id twice; name each column once."
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (1, "customer_id", "column appears twice (positions 1 and 2: 'customer_id' and 'Customer ID')"),
    ]
    assert counts(tenant_a) == {"customers": 0, "products": 0, "orders": 0, "items": 0, "reviews": 0}


def test_bulk_keys_match_columns_as_a_header_does(tenant_a):
    rows = [{"Customer ID": "c1", "order-id": "o1", "Ordered At": "2024-01-05", "AMOUNT": "10.00", "Gift Note": "x"}]

    result = import_rows(tenant_a, "orders", rows)

    assert result.ok, result.errors
    assert amounts(tenant_a) == {"o1": Decimal("10.00")}
    assert result.ignored_columns == ["gift note"]


def test_two_bulk_keys_of_one_column_refuse_that_cell(tenant_a):
    rows = [{"customer_id": "c1", "Customer ID": "c2", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "1"}]

    result = import_rows(tenant_a, "orders", rows)

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (1, "customer_id", "keys 'customer_id' and 'Customer ID' name the same column; send one of them"),
    ]
    assert counts(tenant_a)["orders"] == 0


def test_an_attribute_is_kept_under_its_normalized_name_and_either_spelling_reimports_unchanged(tenant_a, tmp_path):
    first = import_csv(tenant_a, "customers", write_csv(tmp_path / "a.csv", "Customer ID,Loyalty Tier\nc1,gold\n"))
    with tenant_context(tenant_a):
        stored = Customer.objects.values_list("attributes", "updated_at").get(external_id="c1")

    again = import_csv(tenant_a, "customers", write_csv(tmp_path / "a.csv", "Customer ID,Loyalty Tier\nc1,gold\n"))
    respelt = import_csv(tenant_a, "customers", write_csv(tmp_path / "b.csv", "customer-id,loyalty-tier\nc1,gold\n"))

    assert first.ok and (first.created, first.attribute_columns) == (1, ["loyalty_tier"])
    assert stored[0] == {"loyalty_tier": "gold"}
    for result in (again, respelt):
        assert (result.ok, result.created, result.updated, result.unchanged) == (True, 0, 0, 1)
    with tenant_context(tenant_a):
        assert Customer.objects.values_list("attributes", "updated_at").get(external_id="c1") == stored


def test_the_api_stores_an_attribute_name_as_an_import_does(shop_a_data, api_a):
    with tenant_context(shop_a_data):
        customer = Customer.objects.get(external_id="c1")

    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"attributes": {"Loyalty Tier": "gold"}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["attributes"] == {"loyalty_tier": "gold"}


# --- 2. A decimal comma in a file separated by semicolons -------------------------------------


def test_a_semicolon_file_reads_decimal_commas(tenant_a, tmp_path):
    text = (
        "customer_id;order_id;ordered_at;amount\n"
        "c1;o1;2024-01-05;19,99\n"
        "c1;o2;2024-01-06;1.234,56\n"
        "c2;o3;2024-01-07;1234,5\n"
        "c2;o4;2024-01-08;19.99\n"
        "c2;o5;2024-01-09;7\n"
    )
    path = write_csv(tmp_path / "o.csv", text)

    result = import_csv(tenant_a, "orders", path)
    again = import_csv(tenant_a, "orders", path)

    assert result.ok, result.errors
    assert amounts(tenant_a) == {"o1": Decimal("19.99"), "o2": Decimal("1234.56"), "o3": Decimal("1234.50"), "o4": Decimal("19.99"), "o5": Decimal("7.00")}
    assert (again.ok, again.created, again.updated, again.unchanged) == (True, 0, 0, 5)


def test_a_semicolon_file_reads_a_products_price_with_a_decimal_comma(tenant_a, tmp_path):
    result = import_csv(tenant_a, "products", write_csv(tmp_path / "p.csv", "sku;name;price\ns1;Mug;12,50\ns2;Pot;1.049,00\n"))

    assert result.ok, result.errors
    with tenant_context(tenant_a):
        assert dict(Product.objects.values_list("sku", "price")) == {"s1": Decimal("12.50"), "s2": Decimal("1049.00")}


@pytest.mark.parametrize(("amount", "message"), [
    ("1.234", "'1.234' is ambiguous (a dot before three digits may separate thousands or mark decimals, and money has at most two decimals); "
              "write a whole amount as 1234 or 1234,00, and decimals with a comma (1234,56)"),
    ("1,000", "'1,000' is ambiguous (a comma before three digits may separate thousands or mark decimals, and money has at most two decimals); "
              "write a whole amount as 1000 or 1000,00, and decimals with a comma (1234,56)"),
    ("19,999", "'19,999' is ambiguous (a comma before three digits may separate thousands or mark decimals, and money has at most two decimals); "
               "write a whole amount as 19999 or 19999,00, and decimals with a comma (1234,56)"),
    ("1,2345", "'1,2345' has more than two decimal places; amounts are kept to the cent, so round it"),
    ("12.34.56", "'12.34.56' is not a number"),
    ("€19,99", "'€19,99' is not a number; write amounts with a decimal comma (1234,56 or 1.234,56) or a decimal point (1234.56)"),
])
def test_an_ambiguous_or_bad_amount_in_a_semicolon_file_is_a_row_error_and_nothing_is_imported(tenant_a, tmp_path, amount, message):
    text = f"customer_id;order_id;ordered_at;amount\nc1;o1;2024-01-05;19,99\nc2;o2;2024-01-06;{amount}\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [(3, "amount", message)]
    assert counts(tenant_a)["orders"] == 0


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_comma_and_tab_files_keep_the_decimal_point(tenant_a, tmp_path, delimiter):
    header = delimiter.join(["customer_id", "order_id", "ordered_at", "amount"])
    text = f"{header}\n" + delimiter.join(["c1", "o1", "2024-01-05", '"19,99"']) + "\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", text))

    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [(2, "amount", "'19,99' has a decimal comma; write money with a dot (19.99)")]
    assert counts(tenant_a)["orders"] == 0


def test_the_bulk_api_keeps_the_decimal_point(tenant_a):
    result = import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "19,99"}])

    assert not result.ok
    assert [(e.column, e.message) for e in result.errors] == [("amount", "'19,99' has a decimal comma; write money with a dot (19.99)")]


# --- 3. The kind a header looks like ------------------------------------------------------------


def test_a_customers_file_imported_as_orders_says_it_looks_like_customers(tenant_a, tmp_path):
    text = "customer_id,email,name,country,created_at\nc1,a@example.com,Ann,DE,2024-01-05\n"

    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "c.csv", text))

    assert not result.ok
    assert result.message == (
        "Nothing was imported: the header must contain customer_id, order_id, ordered_at, amount. This looks like a file of "
        "customers (it has customer_id, email, name, country, created_at): import it as customers."
    )
    assert [e.column for e in result.errors] == ["order_id", "ordered_at", "amount"]
    assert counts(tenant_a)["customers"] == 0


@pytest.mark.parametrize(("kind", "text", "looks_like"), [
    ("orders", "sku,name,category,price\ns1,Mug,Kitchen,9.00\n", "products (it has sku, name, category, price)"),
    ("reviews", "customer_id,email\nc1,a@example.com\n", "customers (it has customer_id, email)"),
    ("products", "customer_id,name,country\nc1,Ann,DE\n", "customers (it has customer_id, name, country)"),
    ("orders", "customer_id,review_id,created_at,text\nc1,r1,2024-01-05,Fine\n", "reviews (it has customer_id, review_id, created_at, text)"),
])
def test_the_missing_columns_name_the_kind_the_header_looks_like(tenant_a, tmp_path, kind, text, looks_like):
    result = import_csv(tenant_a, kind, write_csv(tmp_path / "f.csv", text))

    assert not result.ok
    assert f"This looks like a file of {looks_like}: import it as {looks_like.split()[0]}." in result.message


@pytest.mark.parametrize(("kind", "text"), [
    ("reviews", "customer_id,review_id,created_at,rating\nc1,r1,2024-01-05,4\n"),  # text left out: still a reviews file
    ("orders", "customer_id,order_id,ordered_at,sku\nc1,o1,2024-01-05,s1\n"),  # amount left out: still an orders file
    ("orders", "customer_id\nc1\n"),  # an id alone tells nothing
])
def test_a_file_of_the_chosen_kind_missing_a_column_names_no_other_kind(tenant_a, tmp_path, kind, text):
    result = import_csv(tenant_a, kind, write_csv(tmp_path / "f.csv", text))

    assert not result.ok
    assert result.message.startswith("Nothing was imported: the header must contain") and "looks like" not in result.message


# --- 4. The columns kept as attributes are named -------------------------------------------------


def test_a_customers_file_names_the_columns_kept_as_attributes(tenant_a, tmp_path):
    text = "customer_id,email,Loyalty Tier,newsletter\nc1,a@example.com,gold,yes\n"

    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", text))

    assert result.ok, result.errors
    assert (result.attribute_columns, result.ignored_columns) == (["loyalty_tier", "newsletter"], [])
    assert result.message == "Imported 1 customer: 1 new, 0 updated, 0 unchanged. Kept 2 columns as attributes: loyalty_tier, newsletter."
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").attributes == {"loyalty_tier": "gold", "newsletter": "yes"}


def test_the_bulk_api_answers_the_keys_kept_as_attributes(tenant_a, api_a):
    response = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "Loyalty Tier": "gold"}], format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["attribute_columns"] == ["loyalty_tier"]
    assert response.json()["message"].endswith("Kept 1 column as attributes: loyalty_tier.")


# --- 5. Sample files ------------------------------------------------------------------------------


def test_the_imports_page_links_a_sample_file_of_each_kind(tenant_a, alice, client):
    client.force_login(alice)

    page = client.get("/imports/").content.decode()

    for kind in KINDS:
        assert f'href="/static/samples/{kind}.csv" download="sample-{kind}.csv"' in page
        assert finders.find(f"samples/{kind}.csv"), kind


def test_the_samples_import_cleanly_in_the_order_listed(tenant_a):
    results = {kind: import_csv(tenant_a, kind, str(finders.find(f"samples/{kind}.csv"))) for kind in KINDS}

    assert {kind: (result.ok, result.errors, result.ignored_columns) for kind, result in results.items()} == {kind: (True, [], []) for kind in KINDS}
    assert {kind: (result.rows, result.created) for kind, result in results.items()} == {
        "customers": (4, 4), "products": (4, 4), "orders": (5, 5), "reviews": (3, 3),
    }
    assert counts(tenant_a) == {"customers": 4, "products": 4, "orders": 5, "items": 6, "reviews": 3}
    assert results["customers"].attribute_columns == ["loyalty_tier"]
    with tenant_context(tenant_a):
        maria = Customer.objects.get(external_id="C1001")
        assert (maria.order_count, maria.total_spent, maria.review_count) == (1, Decimal("37.90"), 1)  # her refunded order is left out
        assert maria.attributes == {"loyalty_tier": "gold"}
    # Imported again, nothing changes.
    for kind in KINDS:
        again = import_csv(tenant_a, kind, str(finders.find(f"samples/{kind}.csv")))
        assert (again.ok, again.created, again.updated) == (True, 0, 0), kind


def test_the_sample_files_are_small_text_csv():
    for kind in KINDS:
        text = Path(finders.find(f"samples/{kind}.csv")).read_text(encoding="utf-8")
        assert text.endswith("\n") and 3 <= text.count("\n") <= 10, kind
