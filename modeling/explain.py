"""Explanations in plain words: the top factors behind a customer's purchase probability.

Contributions come from the boosted trees' exact per-feature attributions (TreeSHAP,
LightGBM ``pred_contrib``) on the purchase head, whichever family serves; they say which
facts about the customer move the prediction and in which direction. Each feature has a
sentence template filled with the customer's own values.

Money is written as the pages write it, the shop's currency code first ("EUR 1,245"), and
recency against the customer's rhythm in the lifecycle's terms (see ``_rhythm``), so a factor
never contradicts the stage shown next to it. Rhythm, rate and trend count days with an order
(``features.order_days``), as the stage does.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

from modeling.lifecycle import Thresholds

TOP_FACTORS = 3
OVERDUE_FACTOR = Thresholds.overdue_factor  # the lifecycle's default; a shop may override it


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def whole_units(amount: float) -> str:
    """Money to the unit as the pages round it (half up, as Django's floatformat does), with
    thousands separated: Python's format rounds 20.5 to 20 but 21.5 to 22, so a segment's
    description said USD 20 beside a table's 21."""
    return f"{Decimal(str(amount)).quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def money_text(value: float | None, currency: str | None) -> str:
    """As the pages show money: "EUR 1,245". Without a currency (a caller that does not know
    the shop) the dollar sign these texts always had: "$1,245"."""
    if value is None:
        return "—"
    return f"{currency} {whole_units(value)}" if currency else f"${whole_units(value)}"


def _days(n: float) -> str:
    """``1 day``, ``0 days``, ``12 days``: a whole number of days with its noun."""
    whole = int(n)
    return f"{whole} day" if whole == 1 else f"{whole} days"


def _ago(n: float) -> str:
    """``today``, ``1 day ago``, ``12 days ago``: "0 days ago" read as a slip."""
    return "today" if int(n) == 0 else f"{_days(n)} ago"


OVERDUE_PREFIX = "overdue: "


def _rhythm(recency: float, gap: float, overdue_factor: float) -> str:
    """Days since the last order against the customer's median gap, by the lifecycle's rule
    (``lifecycle.stages_as_of``): overdue past ``overdue_factor`` × the gap, "within" only up
    to the gap itself, "past" in between. Whole calendar days, as the stage counts them; the
    gap rounded as the stage and the customer page round it."""
    days, usual = math.floor(recency), max(1, round(gap))
    if days > round(overdue_factor * gap):
        ratio = recency / gap
        times = f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"  # 1.7×, and 446× rather than 446.0×
        return f"{OVERDUE_PREFIX}no order for {_days(days)}, {times}× their usual gap of {_days(usual)}"
    if days > usual:
        return f"last order {_ago(days)}, a little past their usual {usual}-day rhythm"
    return f"last order {_ago(days)}, within their usual {usual}-day rhythm"


def describe(feature: str, row: pd.Series, categories: list[str], *, currency: str | None = None, overdue_factor: float = OVERDUE_FACTOR) -> str | None:
    """One sentence for one feature of one customer, or None when it says nothing useful."""
    v = _num(row.get(feature))
    gap = _num(row.get("gap_median"))
    # Days with an order (features.order_days): orders on one day are one purchase, so a
    # rhythm, a rate and a trend are about these days, as the stage's are.
    days = _num(row.get("order_days"))
    days = days if days is not None else _num(row.get("orders"))
    if feature == "recency_days" and v is not None:
        return _rhythm(v, gap, overdue_factor) if gap and gap >= 1 else f"last order {_ago(math.floor(v))}"
    if feature == "overdue_ratio" and v is not None and gap and gap >= 1:
        return _rhythm(_num(row.get("recency_days")) or v * gap, gap, overdue_factor)
    if feature == "orders" and v is not None:
        if v <= 1:
            return "only one order so far"
        return f"{v:.0f} orders, all on one day" if days is not None and days <= 1 else f"{v:.0f} orders so far"
    if feature == "order_days" and v is not None:
        return "bought on one day only" if v <= 1 else f"bought on {v:.0f} different days"
    if feature == "tenure_days" and v is not None:
        return f"first order {_ago(math.floor(v))}"  # calendar days, as "last order" and the stage count them
    if feature == "order_trend" and v is not None:
        if days is not None and days <= 1:  # one day of orders: no pace to compare yet
            return None
        if v > 0:
            return "ordering more often than the quarter before"
        if v < 0:
            return "ordering less often than the quarter before"
        return "ordering as often as the quarter before"
    if feature.startswith("orders_") and feature.endswith("d") and v is not None:
        days = feature[len("orders_") : -1]
        return f"{v:.0f} order{'' if round(v) == 1 else 's'} in the last {days} days"
    if feature.startswith("spent_") and feature.endswith("d") and v is not None:
        days = feature[len("spent_") : -1]
        return f"spent {money_text(v, currency)} in the last {days} days"
    if feature == "total_spent":
        return f"spent {money_text(v, currency)} in total"
    if feature in ("avg_order_value", "last_order_value"):
        label = "average order" if feature == "avg_order_value" else "last order"
        return f"{label} of {money_text(v, currency)}"
    if feature == "rate_per_month" and v is not None:
        return f"buys about {v:.1f} times a month" if days is None or days > 1 else None
    if feature == "gap_median" and v is not None:
        return "usually orders every day" if round(v) <= 1 else f"usually orders every {round(v)} days"
    if feature == "gap_mean" and v is not None:  # not "usually": that is the median, as the customer page says
        # Named beside the usual gap where the two differ: "usually every 6 days" on the page and
        # "on average 7 days between orders" in the factors read as two rhythms for one customer.
        usual = f", usually {_days(max(1, round(gap)))}" if gap is not None and max(1, round(gap)) != round(v) else ""
        return f"on average {_days(round(v))} between orders{usual}"
    if feature == "gap_std" and v is not None:
        # Steady while the gaps vary by at most half the usual gap (a memoryless buyer's vary by about all of it).
        steady = gap is not None and v <= 0.5 * gap
        return f"{'steady' if steady else 'irregular'} rhythm (±{_days(round(v))})"
    if feature.startswith("category_") and feature.endswith("_share") and v is not None:
        index = int(feature.split("_")[1])
        name = categories[index] if index < len(categories) else "one category"
        return f"{v:.0%} of spend on {name}" if v > 0 else f"never bought {name}"
    if feature == "categories_bought" and v is not None:
        return f"bought from {v:.0f} categor{'y' if round(v) == 1 else 'ies'}"
    if feature == "negative_reviews" and v is not None:
        return f"left {v:.0f} negative review{'s' if v != 1 else ''}" if v else "no negative reviews"
    if feature == "reviews" and v is not None:
        return f"wrote {v:.0f} review{'s' if v != 1 else ''}" if v else "no reviews"
    if feature == "rating_mean" and v is not None:
        return f"average rating {v:.1f}★"
    if feature in ("sentiment_mean", "sentiment_last") and v is not None:
        tone = "positive" if v > 0.2 else "negative" if v < -0.2 else "mixed"
        return f"{'latest review' if feature == 'sentiment_last' else 'reviews'} read {tone}"
    if feature == "days_since_review" and v is not None:
        return f"last review {_ago(round(v))}"
    return None


FEATURE_LABELS = {
    "recency_days": "days since the last order", "overdue_ratio": "days since the last order ÷ usual gap", "orders": "orders so far",
    "order_days": "days with an order", "tenure_days": "days since the first order", "order_trend": "days with an order this quarter vs the one before",
    "total_spent": "total spent", "avg_order_value": "average order value", "last_order_value": "last order value", "rate_per_month": "days with an order per month",
    "gap_mean": "mean gap between orders", "gap_median": "usual gap between orders", "gap_std": "spread of the gaps between orders",
    "categories_bought": "categories bought from", "negative_reviews": "negative reviews", "reviews": "reviews written",
    "rating_mean": "average rating", "sentiment_mean": "review tone", "sentiment_last": "latest review's tone",
    "days_since_review": "days since the last review", "bgnbd_p_alive": "BG/NBD: probability still a customer",
    "bgnbd_expected_13w": "BG/NBD: expected orders in 13 weeks",
}


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def feature_label(feature: str) -> str:
    """What a model input means, for charts of feature importance (no customer's value in it)."""
    if feature in FEATURE_LABELS:
        return FEATURE_LABELS[feature]
    for prefix, words in (("orders_", "orders in the last {} days"), ("spent_", "spent in the last {} days")):
        if feature.startswith(prefix) and feature.endswith("d") and feature[len(prefix) : -1].isdigit():
            return words.format(feature[len(prefix) : -1])
    if feature.startswith("category_") and feature.endswith("_share"):
        if not feature.split("_")[1].isdigit():
            return feature
        rank = int(feature.split("_")[1]) + 1
        return "share of spend on the shop's biggest category" if rank == 1 else f"share of spend on the shop's {_ordinal(rank)}-biggest category"
    return feature.replace("_", " ")


def explain_rows(
    features: pd.DataFrame, contributions: pd.DataFrame | None, categories: list[str], top: int = TOP_FACTORS,
    *, currency: str | None = None, overdue_factor: float = OVERDUE_FACTOR,
) -> dict[Any, list[dict[str, Any]]]:
    """Top factors per customer: [{"text", "effect": "+"|"-", "weight"}]. The factors that
    push the way the prediction went (below the model's typical customer, its base value:
    those that lower it) come first, strongest first, then the others. Ranked by size alone, a customer 10%
    likely to buy could be shown only what raises the chance.
    ``currency`` is the shop's (``tenant.currency``) and ``overdue_factor`` its lifecycle
    threshold, so the words match the pages and the stage."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for customer, row in features.iterrows():
        if contributions is not None and customer in contributions.index:
            weights = contributions.loc[customer]
        else:
            weights = _fallback_weights(row)
        by_size = weights.reindex(weights.abs().sort_values(ascending=False).index)
        net = np.sign(float(weights.sum()))
        ranked = pd.concat([by_size[np.sign(by_size) == net], by_size[np.sign(by_size) != net]]) if net else by_size
        factors, seen = [], set()
        for feature, weight in ranked.items():
            if len(factors) >= top:
                break
            if abs(weight) < 1e-6:
                continue
            text = describe(str(feature), row, categories, currency=currency, overdue_factor=overdue_factor)
            if text is None or text in seen:
                continue
            seen.add(text)
            if weight > 0 and text.startswith(OVERDUE_PREFIX):
                # Overdue by their own rhythm, yet recent against the typical customer, who has
                # often stopped buying: "▲ overdue" read as a contradiction on the page.
                text = text.removeprefix(OVERDUE_PREFIX) + ": overdue for them, still recent next to the typical customer"
            factors.append({"text": text, "effect": "+" if weight > 0 else "-", "weight": round(float(weight), 4)})
        out[customer] = factors
    return out


def _fallback_weights(row: pd.Series) -> pd.Series:
    """Without attributions: recency against cadence, frequency and reviews, by rule of thumb."""
    recency = _num(row.get("recency_days")) or 0.0
    gap = _num(row.get("gap_median")) or 60.0
    return pd.Series(
        {
            "recency_days": -np.tanh((recency - 1.5 * gap) / max(gap, 1.0)),
            "orders": np.tanh(((_num(row.get("orders")) or 1.0) - 1.0) / 3.0),
            "negative_reviews": -0.5 * min(_num(row.get("negative_reviews")) or 0.0, 2.0),
            "order_trend": 0.3 * np.sign(_num(row.get("order_trend")) or 0.0),
        }
    )
