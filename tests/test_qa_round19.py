"""Session 20's follow-ups: what a merchant and an integrator met."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_order_of_a_thousand_different_products_is_created_and_read_back(api_a) -> None:
    lines = [{"sku": f"sku-{i}", "amount": "1.00"} for i in range(1200)]
    response = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "big", "ordered_at": "2024-01-01", "lines": lines},
                          format="json")
    assert response.status_code == 201, response.content[:300]
    assert len(response.json()["items"]) == 1200


def test_a_method_a_route_lacks_is_a_405_with_or_without_a_query_string(api_a) -> None:
    created = api_a.post("/api/v1/customers/", {"customer_id": "c1"}, format="json").json()
    assert api_a.put(f"/api/v1/customers/{created['id']}/?foo=1", {"name": "x"}, format="json").status_code == 405
    assert api_a.delete("/api/v1/customers/?page=1").status_code == 405
    assert api_a.generic("TRACE", "/api/v1/jobs/?page=1").status_code == 405


def test_every_create_says_where_the_new_object_is(api_a, tenant_a) -> None:
    segment = api_a.post("/api/v1/segments/", {"name": "Big", "filters": {"spend_min": 100}}, format="json")
    assert segment.status_code == 201 and segment["Location"].endswith(f"/api/v1/segments/{segment.json()['id']}/")
    campaign = api_a.post("/api/v1/campaigns/", {"name": "Spring", "action": "win_back"}, format="json")
    assert campaign.status_code == 201 and campaign["Location"].endswith(f"/api/v1/campaigns/{campaign.json()['id']}/")


def test_a_family_list_with_an_empty_name_is_refused() -> None:
    from modeling.training import chosen_families

    for family in ("bgnbd,,tabular", "", "tabular,"):
        with pytest.raises(ValueError, match="An empty family name"):
            chosen_families(family)
    assert chosen_families(" bgnbd , tabular") == ("bgnbd", "tabular")


def test_a_body_with_several_errors_names_them_all_at_once(api_a) -> None:
    campaign = api_a.post("/api/v1/campaigns/", {"name": "QA", "action": "bogus", "persuadable_only": "yes", "colour": "red"}, format="json")
    assert campaign.status_code == 400 and {"action", "persuadable_only", "colour"} <= set(campaign.json())
    created = api_a.post("/api/v1/customers/", {"customer_id": "c1"}, format="json").json()
    patched = api_a.patch(f"/api/v1/customers/{created['id']}/", {"name": True, "email": "bad", "bogus": 1}, format="json")
    assert patched.status_code == 400 and {"name", "email", "bogus"} <= set(patched.json())
    assert api_a.get(f"/api/v1/customers/{created['id']}/").json()["email"] == ""  # nothing written
