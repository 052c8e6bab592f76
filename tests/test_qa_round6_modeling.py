"""Defects found by the sixth QA round in the customer's rhythm and stage history, each
pinned by a test."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from modeling import lifecycle
from modeling.explain import explain_rows
from modeling.features import features_as_of, history_from_frames, load_history
from modeling.models import CustomerInsight, Stage, StageSnapshot
from modeling.profiles import customer_profiles

pytestmark = pytest.mark.django_db


def _orders(tenant, customer: str, *times: str) -> None:
    rows = [{"customer_id": customer, "order_id": f"{customer}-{i}", "ordered_at": time, "amount": "40"} for i, time in enumerate(times)]
    assert import_rows(tenant, "orders", rows).ok


def _pk(tenant, external_id: str) -> int:
    with tenant_context(tenant):
        return Customer.objects.get(external_id=external_id).pk


# --- 1. Orders on the same day are one purchase ------------------------------------------------


def test_three_orders_on_one_day_make_a_new_customer_with_no_rhythm(tenant_a, api_a) -> None:
    # Given three orders of a new customer, all dated 2026-11-01 (bulk-posted as in the demo),
    # and a customer who split their first of three monthly purchases in two.
    posted = api_a.post("/api/v1/orders/bulk/", [{"customer_id": "c1", "order_id": f"o{i}", "ordered_at": "2026-11-01", "amount": "40"} for i in range(3)],
                        format="json")
    assert posted.status_code == 200, posted.content
    _orders(tenant_a, "c2", "2026-09-01T10:00:00Z", "2026-09-01T10:30:00Z", "2026-10-01T09:00:00Z", "2026-10-31T18:00:00Z")
    as_of = dt.date(2026, 12, 2)

    # When the features, the stage, the factors and the profile are computed as of a month later
    history = load_history(tenant_a, ceiling=as_of)
    features = features_as_of(history, as_of)
    stages = lifecycle.stages_as_of(history, as_of, lifecycle.derive_thresholds(history, as_of), features=features)
    weights = {"gap_std": 6.0, "rate_per_month": 5.0, "order_trend": 4.0, "orders": 3.0, "recency_days": 2.0, "gap_median": 1.0}
    everything = pd.DataFrame(weights, index=features.index)
    factors = {c: [f["text"] for f in fs] for c, fs in explain_rows(features, everything, [], top=6).items()}
    profiles = customer_profiles(history, as_of, features)
    new, repeat = _pk(tenant_a, "c1"), _pk(tenant_a, "c2")

    # Then the three orders are still three orders, but one day of buying: no gap, no rhythm.
    assert features.loc[new, ["orders", "order_days"]].tolist() == [3.0, 1.0]
    assert features.loc[new, ["gap_median", "gap_mean", "gap_std", "overdue_ratio"]].isna().all()
    assert features.at[new, "rate_per_month"] == pytest.approx(30 / features.at[new, "tenure_days"])  # one purchase in 32 days
    assert features.at[new, "order_trend"] == 1.0
    # ... so they are new (first purchase 31 days ago), not at risk against a one-day rhythm.
    assert stages.at[new, "stage"] == Stage.NEW and stages.at[new, "since"] == dt.date(2026, 11, 1)
    assert stages.at[new, "reason"] == "new: first order 31 days ago (usual repurchase window 60 days)"
    # The factors and the profile say the same, with no rhythm, rate or trend to contradict it.
    assert factors[new] == ["3 orders, all on one day", "last order 31 days ago"]
    assert profiles[new] == "First order 5 weeks ago. 3 orders, all on one day, 5 weeks ago. Spent $120 (avg $40)."

    # The split order makes no gap of 0 days: their rhythm is monthly, and they bought on 3 days.
    assert features.loc[repeat, ["orders", "order_days", "gap_median", "gap_std"]].tolist() == [4.0, 3.0, 30.0, 0.0]
    assert stages.at[repeat, "stage"] == Stage.LOYAL and stages.at[repeat, "reason"] == "loyal: 4 orders, lifetime spend in the shop's top 20% of buyers"  # the top spender
    assert "steady rhythm (±0 days)" in factors[repeat] and "usually orders every 30 days" in factors[repeat]
    assert "usually every 4 weeks" in profiles[repeat]


def test_only_a_second_day_of_orders_is_buying_again() -> None:
    as_of = dt.date(2026, 11, 21)
    rows = [(1, "2026-11-20T09:00:00Z", 800.0), (1, "2026-11-20T21:00:00Z", 800.0),  # big spender, one day
            (2, "2026-11-19T23:30:00Z", 900.0), (2, "2026-11-20T00:30:00Z", 900.0)]  # an hour apart, two UTC days
    rows += [(c, "2026-11-01T12:00:00Z", 10.0) for c in (3, 4, 5, 6)]  # small first orders: 1 and 2 are the shop's top spenders
    history = history_from_frames(pd.DataFrame(rows, columns=["customer", "ordered_at", "amount"]))
    top_tier = pd.DataFrame({"purchase_probability": [0.9, 0.9], "value_tier": ["high", "high"]}, index=[1, 2]).reindex(range(1, 7))

    stages = lifecycle.stages_as_of(history, as_of, lifecycle.Thresholds(), predictions=top_tier)

    # Two orders on one day in the top tier: still a first purchase, not a loyal repeat buyer.
    assert stages.at[1, "stage"] == Stage.NEW and stages.at[1, "reason"] == "new: first order 1 day ago (usual repurchase window 60 days)"
    # Two UTC dates are two purchases, as the rest of the app counts days.
    assert stages.at[2, "stage"] == Stage.LOYAL and stages.at[2, "reason"] == "loyal: 2 orders, lifetime spend in the shop's top 20% of buyers"


def test_the_shops_usual_gap_counts_days_with_an_order() -> None:
    as_of = dt.date(2026, 6, 30)
    # 25 customers buying every 10 days, each also placing an add-on order later on the day of every purchase.
    rows = [(c, pd.Timestamp(as_of, tz="UTC") - pd.Timedelta(days=10 * k) + pd.Timedelta(hours=h), 20.0)
            for c in range(25) for k in range(3) for h in (6, 20)]
    orders = pd.DataFrame(rows, columns=["customer", "ordered_at", "amount"])
    # A later day of orders is not seen as of the date.
    later = pd.DataFrame([(0, pd.Timestamp("2026-07-01T09:00:00Z"), 20.0)], columns=["customer", "ordered_at", "amount"])

    thresholds = lifecycle.thresholds_from_orders(pd.concat([orders, later]), as_of)
    features = features_as_of(history_from_frames(pd.concat([orders, later])), as_of)

    assert (thresholds.usual_gap_days, thresholds.derived_from_gaps) == (10, 50)  # two gaps a customer, none of 0 days
    assert features.at[0, "order_days"] == 3.0 and features.at[0, "gap_median"] == 10.0


# --- 2. A stage period's reason is the one of the day it began -----------------------------------


def test_the_stage_timeline_gives_each_period_the_reason_of_the_day_it_began(tenant_a, alice, client, api_a, settings) -> None:
    from customers.services.queries import stage_changes
    from modeling.insights import refresh_insights

    settings.CLM_SEGMENT_EMBEDDINGS = False
    # Given a customer who ordered every 5 days from April 23 to June 22, 2026, then stopped.
    _orders(tenant_a, "c1", *[(dt.date(2026, 4, 23) + dt.timedelta(days=5 * k)).isoformat() for k in range(13)])
    customer = _pk(tenant_a, "c1")

    # When the stages are computed as of September 15 with the month ends before it backfilled
    refresh_insights(tenant_a, dt.date(2026, 9, 15), backfill_months=12)

    with tenant_context(tenant_a):
        snapshots = list(StageSnapshot.objects.filter(customer_id=customer).order_by("as_of").values_list("as_of", "stage", "since", "reason"))
        insight = CustomerInsight.objects.get(customer_id=customer)
    # Then they were active at June 30 (8 days, not past 1.5 x 5 rounded), at risk from the day
    # after, and every snapshot of that period gives the reason of that day: 9 days, not 39.
    entry = "overdue: 9 days vs. their usual 5"
    assert snapshots == [
        (dt.date(2026, 4, 30), "active", dt.date(2026, 4, 28), "active: last order that day, 2 orders"),
        (dt.date(2026, 5, 31), "active", dt.date(2026, 4, 28), "active: last order that day, 2 orders"),
        (dt.date(2026, 6, 30), "active", dt.date(2026, 4, 28), "active: last order that day, 2 orders"),
        (dt.date(2026, 7, 31), "at_risk", dt.date(2026, 7, 1), entry),
        (dt.date(2026, 8, 31), "at_risk", dt.date(2026, 7, 1), entry),
        (dt.date(2026, 9, 15), "at_risk", dt.date(2026, 7, 1), entry),
    ]
    # The stage card says why now; the timeline says why then.
    assert (insight.stage, insight.stage_since, insight.stage_reason) == ("at_risk", dt.date(2026, 7, 1), "overdue: 85 days vs. their usual 5")
    with tenant_context(tenant_a):
        timeline = stage_changes(tenant_a, Customer.objects.get(pk=customer))
    assert [(c["label"], c["since"], c["reason"]) for c in timeline] == [
        ("At risk", dt.date(2026, 7, 1), entry), ("Active", dt.date(2026, 4, 28), "active: last order that day, 2 orders"),
        ("New", dt.date(2026, 4, 23), "first order that day (between two monthly snapshots)"),  # before the first month end
    ]
    client.force_login(alice)
    page = client.get(f"/customers/{customer}/").content.decode()
    assert f"<strong>At risk</strong> from 2026-07-01 <span class=\"muted\">— {entry}</span>" in page and "overdue: 39 days" not in page
    assert api_a.get(f"/api/v1/insights/{customer}/stages/").json()["results"][3] == {"as_of": "2026-07-31", "stage": "at_risk", "since": "2026-07-01", "reason": entry}


def test_a_stage_begins_after_the_stage_it_follows_ended() -> None:
    as_of = dt.date(2026, 7, 31)
    rows = [(1, "2026-05-10", 30.0), (2, "2026-04-20", 900.0), (2, "2026-05-20", 900.0), (2, "2026-06-20", 900.0)]
    history = history_from_frames(pd.DataFrame(rows, columns=["customer", "ordered_at", "amount"]))
    scoring = pd.DataFrame({"purchase_probability": [0.5, 0.9], "value_tier": ["low", "high"]}, index=[1, 2])
    active_at_june_end = pd.DataFrame({"stage": ["active"], "as_of": [dt.date(2026, 6, 30)], "since": [dt.date(2026, 6, 20)],
                                       "reason": ["active: last order today, 3 orders"]}, index=[2])

    stages = lifecycle.stages_as_of(history, as_of, lifecycle.Thresholds(), predictions=scoring, previous=active_at_june_end)

    # New holds for the 60-day repurchase window: at risk (past 45 days) from the day after it.
    assert stages.loc[1, ["stage", "since", "entry_reason"]].tolist() == [Stage.AT_RISK, dt.date(2026, 7, 10), "overdue: 61 days vs. the shop's usual 30"]
    assert stages.at[1, "reason"] == "overdue: 82 days vs. the shop's usual 30"
    # Loyal now: from the day after June 30, when the snapshot still showed them active.
    assert stages.loc[2, ["stage", "since", "entry_reason"]].tolist() == [Stage.LOYAL, dt.date(2026, 7, 1), "loyal: 3 orders, lifetime spend in the shop's top 20% of buyers"]
    # A stage the previous snapshot showed goes on: its day and its reason are kept.
    loyal_before = active_at_june_end.assign(stage="loyal", since=dt.date(2026, 6, 25), reason="loyal: 3 orders, top 20% of buyers (June)")
    again = lifecycle.stages_as_of(history, as_of, lifecycle.Thresholds(), predictions=scoring, previous=loyal_before)
    assert again.loc[2, ["since", "entry_reason"]].tolist() == [dt.date(2026, 6, 25), "loyal: 3 orders, top 20% of buyers (June)"]
