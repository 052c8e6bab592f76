"""Session 24: the API answers as the pages do (a customer found by an order number)."""

from __future__ import annotations

import pytest

from customers.services.imports import import_rows

pytestmark = pytest.mark.django_db


def ids(response):
    assert response.status_code == 200, response.content
    return [customer["external_id"] for customer in response.json()["results"]]


def test_the_api_finds_a_customer_by_an_order_number_as_the_customer_list_does(shop_a_data, api_a):
    assert import_rows(shop_a_data, "orders", [{"customer_id": "c2", "order_id": "#1611", "ordered_at": "2024-04-01", "amount": "9"}]).ok

    assert ids(api_a.get("/api/v1/customers/", {"search": "o2"})) == ["c1"]
    assert ids(api_a.get("/api/v1/customers/", {"search": "1611"})) == ["c2"]  # Shopify's "#1611", as a support request quotes it
    assert ids(api_a.get("/api/v1/customers/", {"search": "#1611"})) == ["c2"]
    # Or'ed with the other fields, each customer once, and the filters still apply.
    assert ids(api_a.get("/api/v1/customers/", {"search": "c", "ordering": "external_id"})) == ["c1", "c2"]
    assert ids(api_a.get("/api/v1/customers/", {"search": "o2", "min_orders": 3})) == []


def test_an_order_number_finds_nothing_in_another_shop(shop_a_data, shop_b_data, api_b):
    assert import_rows(shop_a_data, "orders", [{"customer_id": "c2", "order_id": "a-only", "ordered_at": "2024-04-01", "amount": "9"}]).ok

    assert ids(api_b.get("/api/v1/customers/", {"search": "a-only"})) == []
    assert ids(api_b.get("/api/v1/customers/", {"search": "o3"})) == ["c2"]  # its own c2's
