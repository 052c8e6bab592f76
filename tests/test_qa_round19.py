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
    assert api_a.put(f"/api/v1/customers/{created['id']}/?format=csv", {"name": "x"}, format="json").status_code == 405
    assert api_a.delete("/api/v1/customers/?format=xml").status_code == 405


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


def test_a_choice_filter_reads_without_case_and_names_its_choices_and_a_count_takes_whole_numbers(api_a) -> None:
    assert api_a.get("/api/v1/predictions/", {"value_tier": "HIGH"}).status_code == 200
    assert api_a.get("/api/v1/imports/", {"kind": "Orders", "state": "Failed"}).status_code == 200
    wrong = api_a.get("/api/v1/predictions/", {"value_tier": "huge"})
    assert wrong.status_code == 400 and wrong.json() == {"value_tier": ["'huge' is not one of the choices: high, medium, low."]}
    stage = api_a.get("/api/v1/insights/", {"stage": "gone"}).json()["stage"][0]
    assert stage.startswith("'gone' is not one of the choices: ") and "lapsed" in stage
    assert api_a.get("/api/v1/customers/", {"min_orders": "1.5"}).json() == {"min_orders": ["Enter a whole number."]}
    assert api_a.get("/api/v1/reviews/", {"rating": "4.5"}).status_code == 400
    assert api_a.get("/api/v1/customers/", {"min_orders": "2"}).status_code == 200


def test_a_segments_filters_name_every_problem_and_refuse_true_for_a_number(api_a) -> None:
    response = api_a.post("/api/v1/segments/", {"name": "Odd", "filters": {"spend_min": True, "colour": "red", "churn_min": 5}}, format="json")
    assert response.status_code == 400
    errors = response.json()["filters"]
    assert errors["spend_min"] == ["Must be a number, not true/false."] and "colour" in errors and "churn_min" in errors


def test_a_bulk_request_refused_as_a_whole_says_why_in_its_errors_too(api_a) -> None:
    for body in ("[", "null", "[]"):
        response = api_a.post("/api/v1/customers/bulk/", body, content_type="application/json")
        result = response.json()
        assert response.status_code == 400 and not result["ok"] and result["error_count"] == 1
        assert result["errors"][0]["row"] == 0 and result["errors"][0]["message"]


def test_a_day_in_a_body_takes_yyyymmdd_as_the_query_does() -> None:
    import datetime as dt

    from rest_framework.exceptions import ValidationError

    from clmsite.api import DayField

    field = DayField()
    assert field.to_internal_value(20261207) == field.to_internal_value("20261207") == field.to_internal_value("2026-12-07") == dt.date(2026, 12, 7)
    with pytest.raises(ValidationError, match=r"YYYY-MM-DD \(or YYYYMMDD\)"):
        field.to_internal_value("07/12/2026")


def test_the_imports_page_keeps_the_kind_of_the_last_file(client, alice) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    assert '<option value="customers" selected>' in client.get("/imports/").content.decode()
    client.post("/imports/", {"kind": "orders", "file": SimpleUploadedFile("o.csv", b"customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,10\n")})
    assert '<option value="orders" selected>' in client.get("/imports/").content.decode()
    assert '<option value="reviews" selected>' in client.get("/imports/?kind=reviews").content.decode()
    missing = client.post("/imports/", {"kind": "products"}).content.decode()  # no file: the kind stays as chosen
    assert "Choose a CSV file" in missing and '<option value="products" selected>' in missing


def test_an_empty_time_filter_is_refused_not_read_as_no_filter(api_a) -> None:
    response = api_a.get("/api/v1/customers/", {"updated_at__gte": ""})
    assert response.status_code == 400 and response.json() == {"updated_at__gte": ["Empty: give a date or date-time, or leave the parameter out."]}
    assert api_a.get("/api/v1/customers/").status_code == 200


def test_a_prospect_rule_speaks_of_the_chance_of_a_first_order() -> None:
    from campaigns.models import PlaybookRule

    assert PlaybookRule(stages=["prospect"], churn_min=0.98).conditions() == ["stage Prospect", "chance of a first order ≤ 2%"]
    assert PlaybookRule(stages=["lapsed"], churn_min=0.98).conditions() == ["stage Lapsed", "churn risk ≥ 98%"]


def test_a_segment_of_mixed_categories_is_named_without_a_category_and_its_stage_share_in_words() -> None:
    from modeling.insights import _describe_in_words
    from modeling.segments import name_for

    stats = {"size": 2296, "mean_value": 20.0, "value_index": 0.17, "median_value_index": 0.1, "churn": 0.95, "median_orders": 1.0, "population_orders_p75": 4.0,
             "dominant_stage": "lapsed", "dominant_stage_share": 1.0,
             "top_categories": [{"category": "Accessories", "share": 0.3}, {"category": "Hiking", "share": 0.2}]}
    assert name_for(stats) == "Lapsed low-value one-time buyers"  # not "multi-category": each of them bought one thing
    assert "; all lapsed (100%); top categories: Accessories, Hiking" in _describe_in_words(stats, "USD")
    assert "; more than half lapsed (58%);" in _describe_in_words({**stats, "dominant_stage_share": 0.58}, "USD")  # "mostly" from two thirds, as in a name
    assert "; mostly lapsed (70%);" in _describe_in_words({**stats, "dominant_stage_share": 0.7}, "USD")
    assert "; largest group lapsed (40%);" in _describe_in_words({**stats, "dominant_stage_share": 0.4}, "USD")
    assert "; about half lapsed (50%);" in _describe_in_words({**stats, "dominant_stage_share": 0.503}, "USD")  # session 24: "more than half lapsed (50%)"


def test_a_create_with_an_unknown_field_names_the_other_problems_too_and_writes_nothing(api_a, tenant_a) -> None:
    from clmsite.tenancy import tenant_context
    from customers.models import Order, Product

    product = api_a.post("/api/v1/products/", {"bogus": 1, "price": "abc"}, format="json")
    assert product.status_code == 400 and {"bogus", "sku", "price"} <= set(product.json()), product.json()
    order = api_a.post("/api/v1/orders/", {"zz": 1, "customer_id": "c1", "order_id": "o1", "ordered_at": "x", "lines": [{"sku": "a", "amount": "x"}]},
                       format="json")
    body = order.json()
    assert order.status_code == 400 and {"zz", "ordered_at", "lines"} <= set(body) and body["lines"][0].startswith("Item 1: amount:"), body
    with tenant_context(tenant_a):
        assert not Product.objects.exists() and not Order.objects.exists()


def test_a_segments_choice_filters_read_without_case_and_say_true_as_json_does(api_a) -> None:
    made = api_a.post("/api/v1/segments/", {"name": "Top", "filters": {"value_tiers": ["HIGH"], "stages": ["Lapsed"]}}, format="json")
    assert made.status_code == 201 and made.json()["filters"] == {"value_tiers": ["high"], "stages": ["lapsed"]}
    wrong = api_a.post("/api/v1/segments/", {"name": "Odd", "filters": {"stages": [True]}}, format="json").json()
    assert wrong["filters"]["stages"] == ['Item 1: "true" is not one of: ' + wrong["filters"]["stages"][0].split("is not one of: ")[1]]


def test_an_order_line_that_is_not_an_object_is_named_by_its_item_number(api_a) -> None:
    response = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "lines": [{"sku": "a", "amount": "1"}, "x", None]},
                          format="json")
    assert response.status_code == 400
    assert response.json()["lines"] == ["Item 2: an object of sku, quantity, amount, product_name and category, not a string.",
                                        "Item 3: an object of sku, quantity, amount, product_name and category, not null."]
