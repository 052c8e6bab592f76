"""Creating one record over the API (``POST /api/v1/{customers,orders,products,reviews}/``):
the body is a row of the kind's CSV format, read and checked as an import reads it; 201 with
the record, 400 naming each bad column, 409 for an id the shop has, and nothing written unless
it is created."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _counts(tenant) -> tuple[int, ...]:
    with tenant_context(tenant):
        return Customer.objects.count(), Order.objects.count(), OrderItem.objects.count(), Product.objects.count(), Review.objects.count()


def test_each_kind_is_created_with_its_detail_and_location(api_a, tenant_a) -> None:
    customer = api_a.post("/api/v1/customers/", {"customer_id": "c1", "email": "Ann@Example.com", "name": "Ann", "loyalty tier": "gold"}, format="json")
    assert customer.status_code == 201, customer.json()
    body = customer.json()
    assert (body["external_id"], body["email"], body["attributes"], body["orders"]) == ("c1", "ann@example.com", {"loyalty_tier": "gold"}, [])
    assert customer["Location"].rstrip("/").endswith(f"/api/v1/customers/{body['id']}")
    assert api_a.get(customer["Location"]).json() == body  # what its detail answers

    product = api_a.post("/api/v1/products/", {"sku": "SKU-1", "name": "Trail shoe", "category": "Shoes", "price": "89.90"}, format="json")
    assert product.status_code == 201 and product.json()["price"] == "89.90"

    order = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "19.90", "sku": "SKU-1"}, format="json")
    assert order.status_code == 201, order.json()
    assert (order.json()["amount"], [line["sku"] for line in order.json()["items"]]) == ("19.90", ["SKU-1"])

    review = api_a.post("/api/v1/reviews/", {"customer_id": "c1", "review_id": "r1", "created_at": "2024-05-09", "text": "Great fit", "rating": 5, "sku": "SKU-1"},
                        format="json")
    assert review.status_code == 201 and (review.json()["rating"], review.json()["sku"]) == (5, "SKU-1")

    with tenant_context(tenant_a):  # the customer's counts follow, as after an import
        ann = Customer.objects.get(external_id="c1")
        assert (ann.order_count, ann.total_spent, ann.review_count) == (1, Decimal("19.90"), 1)


def test_lines_named_as_a_header_names_them_are_lines_not_dropped(api_a, tenant_a) -> None:
    answer = api_a.post("/api/v1/orders/", {"Customer ID": "c1", "order_id": "o1", "ordered_at": "2024-05-01",
                                            "Lines": [{"SKU": "a", "amount": "1.00"}, {"sku": "b", "Amount": "2.50"}]}, format="json")
    assert answer.status_code == 201, answer.json()
    assert (answer.json()["amount"], len(answer.json()["items"])) == ("3.50", 2)


def test_an_order_with_lines_is_one_order_whose_amount_is_their_sum(api_a, tenant_a) -> None:
    body = {"customer_id": "new-c", "order_id": "o7", "ordered_at": "2024-06-01T10:00:00Z", "status": "Completed",
            "lines": [{"sku": "a", "quantity": 2, "amount": "10.00", "product_name": "Socks"}, {"sku": "b", "amount": "5.50"}]}
    answer = api_a.post("/api/v1/orders/", body, format="json")
    assert answer.status_code == 201, answer.json()
    order = answer.json()
    assert (order["amount"], order["status"], [(line["sku"], line["quantity"]) for line in order["items"]]) == ("15.50", "completed", [("a", 2), ("b", 1)])
    assert _counts(tenant_a) == (1, 1, 2, 2, 0)  # the unknown customer and skus were created on the way


def test_an_id_the_shop_has_is_a_409_with_its_id_and_changes_nothing(api_a, shop_a_data) -> None:
    with tenant_context(shop_a_data):
        stored = Order.objects.get(external_id="o1")
        before = (stored.amount, stored.updated_at, Customer.objects.order_by("pk").values_list("pk", "updated_at")[0])
    counts = _counts(shop_a_data)
    answer = api_a.post("/api/v1/orders/", {"customer_id": "someone-new", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "99.00", "sku": "new-sku"},
                        format="json")
    assert answer.status_code == 409
    assert answer.json() == {"detail": f"This shop has order_id o1 already, as id {stored.pk}: change it with PATCH, or upsert it with bulk/.", "id": stored.pk}
    assert _counts(shop_a_data) == counts  # not the customer or the sku it named either
    with tenant_context(shop_a_data):
        stored.refresh_from_db()
        assert (stored.amount, stored.updated_at, Customer.objects.order_by("pk").values_list("pk", "updated_at")[0]) == before


def test_bad_columns_are_a_400_under_their_names_and_nothing_is_written(api_a, tenant_a) -> None:
    answer = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "yesterday", "amount": "-3"}, format="json")
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"ordered_at", "amount", "detail"}
    assert body["detail"].startswith("Nothing was created: ordered_at: ") and "; amount: " in body["detail"]
    assert all(isinstance(messages, list) and messages for name, messages in body.items() if name != "detail")

    lined = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "bad",
                                           "lines": [{"sku": "a", "amount": "1"}, {"sku": "b", "amount": "x"}]}, format="json")
    assert lined.status_code == 400
    errors = lined.json()
    assert len(errors["ordered_at"]) == 1  # said once, not once per line
    assert [message.split(":")[:2] for message in errors["lines"]] == [["Item 2", " amount"]]

    missing = api_a.post("/api/v1/reviews/", {"customer_id": "c1", "review_id": "r1", "created_at": "2024-01-01"}, format="json")
    assert missing.status_code == 400 and "text" in missing.json()
    assert _counts(tenant_a) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(("body", "field"), [
    ([{"customer_id": "c1"}], "detail"),  # a list: that is bulk's
    ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "1", "lines": [{"amount": "1"}]}, "amount"),  # amount belongs to the lines
    ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "lines": []}, "lines"),
    ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "lines": [{"amount": "1", "price": "1"}]}, "lines"),
    ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "1", "items": [{"sku": "a"}]}, "items"),  # as the API answers it: not dropped
    ({"id": 4, "customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "1"}, "id"),
    ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "Amount": "1", "Lines": [{"amount": "1"}]}, "Amount"),  # keys read as a header's
])
def test_a_body_that_is_not_one_order_is_a_400(api_a, tenant_a, body, field) -> None:
    answer = api_a.post("/api/v1/orders/", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.json()
    assert _counts(tenant_a) == (0, 0, 0, 0, 0)


def test_create_needs_an_analyst_json_and_no_query_parameters(tenant_a) -> None:
    row = {"customer_id": "c1"}
    assert api_client_for(tenant_a, Role.VIEWER).post("/api/v1/customers/", row, format="json").status_code == 403
    analyst = api_client_for(tenant_a, Role.ANALYST)
    assert analyst.post("/api/v1/customers/", row).status_code == 415  # a form
    assert analyst.post("/api/v1/customers/?dry_run=true", row, format="json").status_code == 400  # a check is bulk's
    assert _counts(tenant_a)[0] == 0
    assert analyst.post("/api/v1/customers/", row, format="json").status_code == 201


def test_a_created_record_belongs_to_the_keys_shop_only(api_a, api_b, tenant_a, tenant_b) -> None:
    assert api_a.post("/api/v1/customers/", {"customer_id": "same"}, format="json").status_code == 201
    other = api_b.post("/api/v1/customers/", {"customer_id": "same"}, format="json")  # another shop's id is not a conflict
    assert other.status_code == 201
    assert api_a.get(other["Location"]).status_code == 404
    assert _counts(tenant_a)[0] == _counts(tenant_b)[0] == 1


@pytest.mark.django_db(transaction=True)
def test_two_creates_of_one_id_at_once_make_one_record_and_one_409(tenant_a) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one at a time")
    rows = [{"customer_id": "c1", "name": f"writer {n}"} for n in range(2)]
    answers: list[int] = []

    def create(row: dict) -> None:
        try:
            answers.append(api_client_for(tenant_a).post("/api/v1/customers/", row, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 409]
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 1


def test_every_refusal_of_a_create_has_a_detail_and_a_misspelt_key_a_suggestion(api_a, tenant_a) -> None:
    misspelt = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": "1", "staus": "refunded"}, format="json")
    assert misspelt.status_code == 400
    assert misspelt.json()["staus"][0].startswith("Unknown field; did you mean status? An order takes customer_id, order_id")
    assert misspelt.json()["detail"].startswith("Nothing was created: staus: Unknown field")
    bad_line = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "lines": [{"amount": "1"}, {"foo": 1}]},
                          format="json").json()
    assert bad_line["lines"] == ["Item 2: foo: Unknown field; a line has sku, quantity, amount, product_name, category.",
                                 "Item 2: amount: is required"] and "detail" in bad_line  # the rest of the line is read too
    an_order = api_a.post("/api/v1/customers/", {"customer_id": "w1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": "10"}, format="json").json()
    assert an_order == {"detail": "Nothing was created: this looks like a file of orders (it has customer_id, order_id, ordered_at, amount), not of customers. "
                                  "Import it as orders."}


def test_json_numbers_are_read_as_their_plain_decimal(api_a, tenant_a) -> None:
    assert api_a.post("/api/v1/customers/", {"customer_id": 5000}, format="json").status_code == 201
    same = api_a.post("/api/v1/customers/", {"customer_id": 5000.0}, format="json")  # one number, however the client's encoder wrote it
    assert same.status_code == 409 and same.json()["detail"].startswith("This shop has customer_id 5000 already")
    fine = api_a.post("/api/v1/products/", {"sku": "p1", "price": 0.00001}, format="json").json()
    assert "scientific" not in fine["price"][0] and "0.00001" in fine["price"][0]
    assert api_a.post("/api/v1/products/", {"sku": "p2", "price": 1e3}, format="json").json()["price"] == "1000.00"


def test_a_customers_attributes_are_an_object_however_the_key_is_written(api_a, tenant_a) -> None:
    refused = api_a.post("/api/v1/customers/", {"customer_id": "a1", "attributes": "gold"}, format="json")
    assert refused.status_code == 400 and refused.json()["attributes"] == ["attributes must be a JSON object of names and values, as the API answers a customer"]
    bulk = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "a1", "attributes": "gold"}], format="json")
    assert bulk.status_code == 400 and bulk.json()["errors"][0]["column"] == "attributes"
    created = api_a.post("/api/v1/customers/", {"customer_id": "a2", "Attributes": {"tier": "gold"}}, format="json")
    assert created.status_code == 201 and created.json()["attributes"] == {"tier": "gold"}


def test_a_customer_may_be_created_with_its_columns_and_a_hundred_attributes(api_a, tenant_a) -> None:
    row = {"customer_id": "a1", "email": "a@example.com", "name": "A", "country": "US", "created_at": "2024-01-01", **{f"k{n}": "v" for n in range(100)}}
    created = api_a.post("/api/v1/customers/", row, format="json")
    assert created.status_code == 201, created.json()
    assert len(created.json()["attributes"]) == 100
    too_many = api_a.post("/api/v1/customers/", {**row, "customer_id": "a2", "k100": "v"}, format="json")
    assert too_many.status_code == 400
