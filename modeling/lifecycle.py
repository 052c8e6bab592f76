"""The lifecycle engine: each customer's stage as of a date, the date it began and why.

Stages come from the tenant's own buying rhythm and, when a scoring exists for the date,
the models' outputs:

* thresholds derive from the tenant's inter-purchase gaps up to the date (median gap =
  the usual cadence, 75th percentile = the repurchase window, 90th percentile or twice the
  median = the lapse threshold); the tenant can override each in the UI;
* a customer is at risk when overdue against their *own* median gap (or the tenant's,
  after one order) unless the scoring still gives them a 70% chance to buy, or when the
  purchase probability falls below a threshold; a repeat buyer lapses past the lapse
  threshold and twice their own median gap;
* "Loyal/VIP" needs a repeat buyer whose lifetime spend is in the shop's top 20% of buyers
  (on every date, scored or not);
* gaps, cadence and "bought again" count days with an order (``features.order_days``):
  orders on one day are one purchase.

Each stage has the day it began and a reason as of that day (``entry_reason``, what the
stage history shows for the period) next to the reason as of the date.

Everything is computed from a :class:`History` cut at the date, so stages can be
recomputed for any past date (backfill) without seeing later orders.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from modeling.features import History, as_timestamp, features_as_of, order_days
from modeling.models import Stage

# Lifetime spend in this top share of the shop's buyers (with a repeat order, in rhythm) makes Loyal/VIP.
LOYAL_SPEND_SHARE = 0.2
# An overdue customer the model still gives this chance to buy within the horizon keeps their
# stage (with the overdue noted), rather than At risk.
STILL_LIKELY = 0.7
FUNNEL = [Stage.PROSPECT, Stage.NEW, Stage.ACTIVE, Stage.LOYAL, Stage.REACTIVATED, Stage.AT_RISK, Stage.LAPSED]


@dataclass
class Thresholds:
    usual_gap_days: int = 30
    repurchase_window_days: int = 60
    lapse_days: int = 180
    overdue_factor: float = 1.5
    at_risk_probability: float = 0.3
    derived_from_gaps: int = 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


EDITABLE = ("usual_gap_days", "repurchase_window_days", "lapse_days", "overdue_factor", "at_risk_probability")
# The thresholds the shop's order gaps set; the others are fixed defaults unless overridden.
DERIVED = ("usual_gap_days", "repurchase_window_days", "lapse_days")


def derive_thresholds(history: History, as_of: dt.date, overrides: dict | None = None) -> Thresholds:
    """Thresholds from the gaps between consecutive days with an order up to ``as_of``
    (orders on one day are one purchase, ``features.order_days``), then the tenant's
    overrides (``tenant.settings["lifecycle"]``) on top."""
    return thresholds_from_orders(history.orders, as_of, overrides)


def thresholds_from_orders(orders: pd.DataFrame, as_of: dt.date, overrides: dict | None = None) -> Thresholds:
    """:func:`derive_thresholds` from an orders frame alone (customer, ordered_at), so the
    Lifecycle page can show the derived values without loading the whole history."""
    gaps = order_days(orders[orders["ordered_at"] <= as_timestamp(as_of)])["gap"].dropna().to_numpy()
    thresholds = Thresholds()
    if len(gaps) >= 20:
        usual = float(np.median(gaps))
        thresholds = Thresholds(
            usual_gap_days=max(1, round(usual)),
            repurchase_window_days=max(7, round(float(np.quantile(gaps, 0.75)))),
            lapse_days=max(30, round(max(float(np.quantile(gaps, 0.9)), 2 * usual))),
            derived_from_gaps=len(gaps),
        )
    return with_overrides(thresholds, overrides)


def _below(p: float, threshold: float) -> str:
    """"29.6% is below 30%": a decimal more where whole percents would read "30% is below 30%"."""
    shown = f"{p:.0%}" if f"{p:.0%}" != f"{threshold:.0%}" else f"{p:.1%}"
    return f"{shown} is below {threshold:.0%}"


def with_overrides(thresholds: Thresholds, overrides: dict | None) -> Thresholds:
    """The thresholds with the tenant's overrides (``tenant.settings["lifecycle"]``) on top."""
    changes = {key: type(getattr(thresholds, key))(value) for key, value in (overrides or {}).items() if key in EDITABLE and value not in (None, "")}
    return replace(thresholds, **changes)


def stages_as_of(
    history: History, as_of: dt.date, thresholds: Thresholds, *, features: pd.DataFrame | None = None, predictions: pd.DataFrame | None = None,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer known at ``as_of``: stage, since (date), reason (as of ``as_of``)
    and entry_reason (as of ``since``: why the customer entered the stage, which the stage
    history shows for the period).

    ``predictions`` (indexed by customer; ``purchase_probability`` and ``value_tier``) are
    the scoring of that same date, when there is one. ``previous`` (indexed by customer;
    ``stage``, ``as_of``, ``since``, ``reason``) is each customer's latest stage snapshot
    before ``as_of``: a stage it already showed continues that period, with its since and its
    entry reason; a stage it did not show began after that snapshot's date.

    Rhythm and "bought again" count days with an order (``order_days``): a customer whose
    three orders are all from one day is new, not a repeat buyer with a one-day cadence."""
    cut = as_timestamp(as_of)
    features = features if features is not None else features_as_of(history, as_of)
    customers = history.customers.assign(first_seen=pd.to_datetime(history.customers["first_seen"], utc=True))
    known = customers[customers["first_seen"].isna() | (customers["first_seen"] <= cut)]["customer"]
    population = pd.Index(known).union(features.index)
    day = pd.Timestamp(as_of)

    # Per customer: stage, the day it began, its reason as a template of the days since the
    # last order ({days}: "45", {ago}: "45 days ago"), and that last order's date.
    first_seen = customers.set_index("customer")["first_seen"].reindex(population)
    periods: dict[Any, tuple[str, dt.date, str, dt.date | None]] = {
        customer: (Stage.PROSPECT.value, ts.date() if pd.notna(ts) else as_of, "no purchase yet", None) for customer, ts in first_seen.items()
    }
    first_after: dict[Any, dt.date] = {}  # each customer's first order day after their previous snapshot
    if len(features):
        f = features
        gaps = order_days(history.orders[history.orders["ordered_at"] <= cut])
        if previous is not None and len(previous):
            known = gaps[gaps["customer"].isin(previous.index)]
            later = known[known["day"].dt.date > known["customer"].map(previous["as_of"])]
            first_after = later.groupby("customer")["day"].first().dt.date.to_dict()
        recency = np.floor(f["recency_days"]).astype(int)  # calendar days since the last order
        count, days = f["orders"].astype(int), f["order_days"].astype(int)
        own_gap = f["gap_median"].where(days >= 2, thresholds.usual_gap_days).fillna(thresholds.usual_gap_days).clip(lower=1)
        overdue_after = (thresholds.overdue_factor * own_gap).round().astype(int)
        is_return, lapse_after = returns_and_lapse_days(gaps, thresholds.lapse_days)
        lapse_after = lapse_after.reindex(f.index).fillna(thresholds.lapse_days).astype(int)
        # Each customer's latest return: the last order day after a silence longer than their
        # lapse threshold, and that silence. Orders after it (back on Dec 3, again on Dec 5) do
        # not hide it: the customer is reactivated for the window after coming back.
        returns = gaps[is_return].groupby("customer")[["day", "gap"]].last()
        came_back = returns["day"].dt.date.reindex(f.index)
        away = returns["gap"].reindex(f.index)
        # Loyal/VIP: lifetime spend in the top 20% of the shop's buyers, known on every date.
        # The predicted value tier (the top 20% of everyone's predicted value, lapsed customers
        # included) held nearly every buyer still in rhythm, so Active was all but empty on a
        # scored date while the month-ends between scorings were cut by spend.
        top_spender = f["total_spent"] > f["total_spent"].quantile(1 - LOYAL_SPEND_SHARE)
        probability = predictions["purchase_probability"].reindex(f.index) if predictions is not None and "purchase_probability" in predictions else pd.Series(np.nan, index=f.index)
        last_order = (day - pd.to_timedelta(recency, unit="D")).dt.date

        window = thresholds.repurchase_window_days
        for customer in f.index:
            r, n, d, last = int(recency[customer]), int(count[customer]), int(days[customer]), last_order[customer]
            lapse = int(lapse_after[customer])
            p = probability[customer]
            back = came_back[customer] if pd.notna(came_back[customer]) else None
            usual = "their usual" if d >= 2 else "the shop's usual"
            # New and Reactivated hold for the repurchase window after the first order or the
            # return: a stage that follows them begins the day after it.
            if d == 1:
                after_window = last + dt.timedelta(days=window + 1)
            else:
                after_window = max(last, back + dt.timedelta(days=window + 1)) if back is not None else last
            if r > lapse:
                # From the first day past the threshold, as "more than" reads.
                own = f"; twice their usual {lapse // 2:,}" if lapse > thresholds.lapse_days else ""
                stage, start, template = Stage.LAPSED, last + dt.timedelta(days=lapse + 1), f"lapsed: {{days}} days since the last order (lapse threshold {lapse:,}{own})"
            elif back is not None and (as_of - back).days <= window:
                stage, start, template = Stage.REACTIVATED, back, f"reactivated: came back {{ago}} after {round(away[customer]):,} days away"
                last = back  # the reason counts the days from the return
            elif d == 1 and r <= window:
                stage, start, template = Stage.NEW, last, f"new: first order {{ago}} (usual repurchase window {window} days)"
            elif r > overdue_after[customer] and not (pd.notna(p) and p >= STILL_LIKELY):
                # From the first day past the overdue mark, when the factors say "overdue" too (explain._rhythm).
                stage, start = Stage.AT_RISK, max(last + dt.timedelta(days=int(overdue_after[customer]) + 1), after_window)
                template = f"overdue: {{days}} days vs. {usual} {round(own_gap[customer])}"
            elif pd.notna(p) and p < thresholds.at_risk_probability:
                stage, start, template = Stage.AT_RISK, as_of, f"purchase probability {_below(p, thresholds.at_risk_probability)}"
            else:
                if d >= 2 and top_spender[customer]:
                    stage, template = Stage.LOYAL, f"loyal: {n} orders, lifetime spend in the shop's top {LOYAL_SPEND_SHARE:.0%} of buyers"
                else:
                    stage, template = Stage.ACTIVE, f"active: last order {{ago}}, {n} order{'s' if n != 1 else ''}"
                start = after_window
                if r > overdue_after[customer]:
                    # Overdue by their rhythm, but the model still expects an order: At risk beside
                    # "96% likely to buy" read as a contradiction, so the stage stays and says so.
                    template += f"; overdue ({{days}} days vs. {usual} {round(own_gap[customer])}) but still {p:.0%} likely to buy"
            periods[customer] = (stage.value, min(start, as_of), template, last)

    before: dict[Any, dict[str, Any]] = previous.to_dict("index") if previous is not None else {}
    rows = []
    for customer, (stage, start, template, last) in periods.items():
        shown = before.get(customer)
        if shown is not None and shown["stage"] == stage:  # the period goes on
            since, entry = shown["since"], shown["reason"]
        else:
            since = max(start, shown["as_of"] + dt.timedelta(days=1)) if shown is not None else start
            if shown is not None and shown["stage"] in (Stage.AT_RISK, Stage.NEW) and stage in (Stage.ACTIVE, Stage.LOYAL) and customer in first_after:
                # The order that ended the At risk or New period began this one (At risk until the
                # 27th of a month with orders on the 1st, 9th and 13th read as a contradiction).
                since = min(since, first_after[customer])
            entry = _reason(template, min(last, since) if last is not None else None, since, looking_back=True)
            if shown is not None and shown["stage"] == Stage.LOYAL and stage == Stage.ACTIVE:  # no order moved them: the shop's top spenders did
                entry += f"; no longer in the shop's top {LOYAL_SPEND_SHARE:.0%} of spenders"
        rows.append((customer, stage, since, _reason(template, last, as_of), entry))
    result = pd.DataFrame.from_records(rows, columns=["customer", "stage", "since", "reason", "entry_reason"]).set_index("customer")
    return result.reindex(population)


def returns_and_lapse_days(gaps: pd.DataFrame, lapse_days: int) -> tuple[pd.Series, pd.Series]:
    """Which gaps (rows of ``order_days``) were a lapse and a return, and each repeat
    buyer's lapse threshold.

    The shop's threshold pools every gap, so frequent buyers set it: a customer who buys
    every ten weeks is not lapsed at eight. A gap is a lapse when longer than the shop's
    threshold and than twice the customer's median gap before it (the first gap: the
    shop's threshold alone). The gaps that were not lapses are the customer's rhythm, and a
    repeat buyer lapses past twice its median when that is longer than the shop's threshold."""
    known = gaps.dropna(subset=["gap"])
    before = known.groupby("customer")["gap"].expanding().median().groupby(level=0).shift(1).droplevel(0)
    is_return = known["gap"] > np.maximum(2 * before.reindex(known.index).fillna(0), lapse_days)
    rhythm = known.loc[~is_return].groupby("customer")["gap"].median()
    return is_return.reindex(gaps.index, fill_value=False), np.maximum((2 * rhythm).round(), lapse_days).astype(int)


def _reason(template: str, last_order: dt.date | None, day: dt.date, *, looking_back: bool = False) -> str:
    """A stage's reason as of ``day``: the template with the days since the last order then.
    ``looking_back``: the reason a stage history shows for the day the period began, read
    later ("that day", "3 days before"), where "today" would mean the day it is read."""
    if last_order is None:
        return template
    days = (day - last_order).days
    if looking_back:
        ago = "that day" if days == 0 else "1 day before" if days == 1 else f"{days:,} days before"
    else:
        ago = "today" if days == 0 else "1 day ago" if days == 1 else f"{days:,} days ago"
    return template.format(days=f"{days:,}", ago=ago)


def backfill_dates(history: History, as_of: dt.date, months: int) -> list[dt.date]:
    """Month ends before ``as_of`` (at most ``months``, none before the first order)."""
    first = history.first_order_at
    if first is None or months <= 0:
        return []
    ends = pd.date_range(end=pd.Timestamp(as_of) - pd.Timedelta(days=1), periods=months, freq="ME")
    return [d.date() for d in ends if d.date() < as_of and d.date() >= first.date()]


def transition_matrix(before: pd.Series, after: pd.Series) -> pd.DataFrame:
    """Counts of customers from each stage (rows, at the first date) to each stage (columns,
    at the second). Customers unknown at the first date come from "none"."""
    joined = pd.DataFrame({"from": before, "to": after}).dropna(subset=["to"]).fillna({"from": "none"})
    order = ["none"] + [s.value for s in FUNNEL]
    return pd.crosstab(joined["from"], joined["to"]).reindex(index=order, columns=order[1:], fill_value=0)
