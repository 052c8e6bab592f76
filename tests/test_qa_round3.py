"""Defects found by QA walking the web UI in a browser on the demo shop (2026-12-01), each pinned by a test."""

from __future__ import annotations

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from modeling.models import Segment
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def test_a_customer_whose_order_line_has_no_product_has_a_page(tenant_a, client, alice) -> None:
    # The README's minimal orders format: no sku, so the line has no product.
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-05-01", "amount": "19.90"}]).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    client.force_login(alice)
    page = client.get(f"/customers/{customer.pk}/")
    assert page.status_code == 200 and "1× item" in page.content.decode()


def test_a_saved_segment_no_customer_can_match_is_refused_by_the_form_as_by_the_api(tenant_a, client, alice) -> None:
    client.force_login(alice)
    page = client.post("/segments/", {"name": "Nonsense", "churn_min": "90", "churn_max": "10", "orders_min": "10", "orders_max": "2",
                                      "last_order_after": "2026-12-01", "last_order_before": "2020-01-01"})
    text = page.content.decode()
    assert page.status_code == 200 and text.count("no customer can match both") == 3
    api = api_client_for(tenant_a).post("/api/v1/segments/", {"name": "Nonsense", "filters": {"churn_min": 0.9, "churn_max": 0.1}}, format="json")
    assert api.status_code == 400 and "no customer can match both" in str(api.json()["filters"]["churn_max"])
    with tenant_context(tenant_a):
        assert not Segment.objects.filter(kind=Segment.Kind.SAVED).exists()


def test_saved_segment_filters_read_as_labels_and_a_segment_without_filters_can_be_deleted(tenant_a, client, alice) -> None:
    client.force_login(alice)
    client.post("/segments/", {"name": "At risk, high value", "stages": ["at_risk"], "value_tiers": ["high"]})
    client.post("/segments/", {"name": "Everyone"})
    with tenant_context(tenant_a):
        narrow, everyone = (Segment.objects.get(kind=Segment.Kind.SAVED, name=name) for name in ("At risk, high value", "Everyone"))
    text = client.get(f"/segments/{narrow.pk}/").content.decode()
    assert "<strong>At risk</strong>" in text and "<strong>High</strong>" in text and "[&#x27;" not in text
    text = client.get(f"/segments/{everyone.pk}/").content.decode()
    assert "No filters" in text and "Delete this saved segment" in text
    assert client.post(f"/segments/{everyone.pk}/delete/").status_code == 302
    with tenant_context(tenant_a):
        assert not Segment.objects.filter(pk=everyone.pk).exists()


def test_the_customer_list_filters_by_stage_value_tier_and_country_and_shows_them(tenant_a, tenant_b, client, alice) -> None:
    import datetime as dt

    from modeling.models import CustomerInsight, Stage

    rows = [{"customer_id": f"c{i}", "country": country} for i, country in enumerate(["US", "US", "DE"])]
    assert import_rows(tenant_a, "customers", rows).ok and import_rows(tenant_b, "customers", rows).ok
    day = dt.date(2026, 11, 30)
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            for customer, stage, tier in zip(Customer.objects.order_by("external_id"), [Stage.AT_RISK, Stage.LOYAL, Stage.AT_RISK], ["high", "high", "low"], strict=True):
                CustomerInsight.objects.create(tenant=tenant, customer=customer, as_of=day, stage=stage, stage_since=day, stage_reason="test",
                                               action="none", action_reason="test", value_tier=tier)
    client.force_login(alice)

    def listed(query: str) -> list[str]:
        page = client.get(f"/customers/?{query}")
        assert page.status_code == 200
        return sorted(c.external_id for c in page.context["page"])

    assert listed("") == ["c0", "c1", "c2"]  # tenant_b's customers never appear
    assert listed("stage=at_risk") == ["c0", "c2"]
    assert listed("stage=at_risk&tier=high") == ["c0"]
    assert listed("country=de") == ["c2"]
    assert listed("stage=nonsense") == ["c0", "c1", "c2"]  # an unknown choice filters nothing
    page = client.get("/customers/?stage=at_risk&sort=-orders").content.decode()
    assert "At risk" in page and "High" in page and "stage=at_risk&amp;sort=" in page  # sorting keeps the filter


def test_playbook_conditions_read_as_labels() -> None:
    from campaigns.models import PlaybookRule

    rule = PlaybookRule(stages=["at_risk", "lapsed"], tiers=["high", "medium"], churn_min=0.5, days_since_min=60)
    assert rule.conditions() == ["stage At risk or Lapsed", "High or Medium value", "churn risk ≥ 50%", "60 days or more since the last order"]
    assert PlaybookRule().conditions() == ["always"]


def test_the_api_docs_make_no_request_off_the_server(client) -> None:
    docs = client.get("/api/docs/").content.decode()
    assert "fonts.googleapis.com" not in docs and "/static/drf_spectacular_sidecar/redoc/" in docs


def test_a_blank_cell_in_a_customers_or_products_file_keeps_the_stored_value(tenant_a) -> None:
    from customers.models import Product

    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "a@example.com", "created_at": "2024-01-05", "country": "US"}]).ok
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-02-01", "amount": "10"}]).ok
    again = import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "", "created_at": "", "country": "DE"}])
    assert again.ok and again.updated == 1
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    assert (customer.email, customer.first_seen.date().isoformat(), customer.country) == ("a@example.com", "2024-01-05", "DE")
    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "", "created_at": "", "country": "DE"}]).unchanged == 1  # and again: nothing changes

    assert import_rows(tenant_a, "products", [{"sku": "S1", "name": "Trail shoe", "price": "80"}]).ok
    assert import_rows(tenant_a, "products", [{"sku": "S1", "name": "", "price": "75"}]).updated == 1
    with tenant_context(tenant_a):
        product = Product.objects.get(sku="S1")
    assert (product.name, str(product.price)) == ("Trail shoe", "75.00")
