"""Session 25: a customer who orders in pairs usually orders every two months, not every two days."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from customers.services.queries import customer_timeline
from modeling.explain import describe
from modeling.features import features_as_of, load_history
from modeling.lifecycle import Thresholds, stages_as_of
from modeling.models import Stage

pytestmark = pytest.mark.django_db


def _orders(tenant, customer: str, *days: str) -> None:
    rows = [{"customer_id": customer, "order_id": f"{customer}-{i}", "ordered_at": day, "amount": "40"} for i, day in enumerate(days)]
    assert import_rows(tenant, "orders", rows).ok


def test_a_customer_who_orders_in_pairs_usually_orders_every_two_months(tenant_a) -> None:
    # An order and an add-on two days later, every two months; and a steady monthly buyer
    # with one long break, whose usual gap stays a month.
    _orders(tenant_a, "pairs", "2024-01-01", "2024-01-03", "2024-03-01", "2024-03-03", "2024-05-01", "2024-05-03")
    _orders(tenant_a, "steady", "2024-01-05", "2024-02-04", "2024-03-05", "2024-04-04", "2024-05-04")
    as_of = dt.date(2024, 5, 13)  # ten days after the last pair
    history = load_history(tenant_a, ceiling=as_of)
    features = features_as_of(history, as_of)
    with tenant_context(tenant_a):
        pairs, steady = (Customer.objects.get(external_id=e) for e in ("pairs", "steady"))

    assert round(features.at[pairs.pk, "gap_median"]) == 60 and round(features.at[steady.pk, "gap_median"]) == 30
    assert describe("gap_median", features.loc[pairs.pk], []) == "usually orders every 60 days"
    assert customer_timeline(tenant_a, pairs)["median_gap_days"] == 60  # the customer page says the same
    # Ten days after a pair is not "overdue" (it was: 10 days vs. their usual 2).
    stages = stages_as_of(history, as_of, Thresholds(), features=features)
    assert stages.at[pairs.pk, "stage"] != Stage.AT_RISK and "overdue" not in stages.at[pairs.pk, "reason"]
