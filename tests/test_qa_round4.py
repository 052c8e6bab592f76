"""Defects found by the fourth QA round (2026-12-01, the browser and the API walked on the demo), each pinned by a test."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows

pytestmark = pytest.mark.django_db


def _insight(tenant, customer, as_of: dt.date) -> None:
    from modeling.models import CustomerInsight, Stage

    CustomerInsight.objects.create(tenant=tenant, customer=customer, as_of=as_of, stage=Stage.LAPSED, stage_since=as_of, stage_reason="test",
                                   action="none", action_reason="test", value_tier="low")


def test_a_shop_scored_at_a_past_date_shows_recency_as_of_that_date(tenant_a, client, alice) -> None:
    """CDNOW is scored as of 1998-06-30: its customers' last orders are counted back from
    that date, the recency the stage reads, not from today ("29 years ago")."""
    rows = [{"customer_id": "old", "order_id": "o1", "ordered_at": "1998-03-12", "amount": "10"},
            {"customer_id": "new", "order_id": "o2", "ordered_at": dt.date.today().isoformat(), "amount": "10"}]
    assert import_rows(tenant_a, "orders", rows).ok
    with tenant_context(tenant_a):
        old, new = Customer.objects.get(external_id="old"), Customer.objects.get(external_id="new")
        _insight(tenant_a, old, dt.date(1998, 6, 30))
        _insight(tenant_a, new, dt.date.today())
    client.force_login(alice)
    text = client.get(f"/customers/{old.pk}/").content.decode()
    assert "110 days before the scoring date (June 30, 1998)" in text and "years ago" not in text
    text = client.get(f"/customers/{new.pk}/").content.decode()
    assert "before the scoring date" not in text and 'data-testid="recency"' in text
