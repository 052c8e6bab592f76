"""Backtest-safe customer features and labels.

Everything is computed *as of* a date D: features see only orders and reviews at or
before D, labels only the horizon (D, D+H]. A :class:`History` holds a tenant's rows up to
a ceiling; :func:`features_as_of` and :func:`labels_after` cut it at D themselves, so a
row after D can never reach a feature, whatever the ceiling was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.db.models import Q
from django.db.models.functions import Coalesce

from clmsite.models import Tenant
from clmsite.tenancy import shop_day_end, shop_zone, tenant_context

DAY = np.timedelta64(1, "D")
# Rolling windows (days) for counts and spend, and the comparison period of the trend.
WINDOWS = (30, 90, 180, 365)
TREND_DAYS = 90
TOP_CATEGORIES = 8


@dataclass
class History:
    """A tenant's customers, orders, order lines and reviews, up to ``ceiling``."""

    customers: pd.DataFrame  # customer (pk), external_id, first_seen
    orders: pd.DataFrame  # customer, ordered_at, amount
    lines: pd.DataFrame  # customer, ordered_at, category, product, quantity, amount
    reviews: pd.DataFrame  # review (pk), customer, created_at, rating, text, sentiment_score
    ceiling: pd.Timestamp | None
    categories: list[str]
    # The shop's currency as profiles write money (modeling.profiles): None is "$", which
    # US-dollar shops and tests keep; others write their code ("EUR 240").
    currency: str | None = None

    @property
    def first_order_at(self) -> pd.Timestamp | None:
        return self.orders["ordered_at"].min() if len(self.orders) else None

    @property
    def last_order_at(self) -> pd.Timestamp | None:
        return self.orders["ordered_at"].max() if len(self.orders) else None


def as_timestamp(value: dt.date | dt.datetime | pd.Timestamp) -> pd.Timestamp:
    """A date means the end of that day: as of 2024-03-31 includes orders on the 31st. The
    day is the shop's: a History's times are on the shop's clock (:func:`shop_clock`)."""
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
    if isinstance(value, dt.datetime):
        stamp = pd.Timestamp(value)
        return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    return pd.Timestamp(dt.datetime.combine(value, dt.time.max), tz="UTC").floor("s")


def shop_clock(stamps: pd.Series, zone: Any) -> pd.Series:
    """UTC instants as the shop's clock reads them, still labelled UTC, so that every day
    counted from them (gaps, recency, stages, windows, as-of dates) is the shop's day. With
    no zone (UTC), as they are."""
    if zone is None:
        return stamps
    return stamps.dt.tz_convert(zone).dt.tz_localize(None).dt.tz_localize("UTC")


def typical_first_order(orders: pd.DataFrame) -> float | None:
    """The median of the customers' first orders (``orders`` in time order): what a sign-up's
    first order is worth here, for the scoring and the playbook alike. None without orders."""
    return float(orders.groupby("customer")["amount"].first().median()) if len(orders) else None


def load_history(tenant: Tenant, *, ceiling: dt.date | dt.datetime | None = None, customer_ids: list[int] | None = None,
                 loaded_before: dt.datetime | None = None) -> History:
    """Read the tenant's data once, ignoring everything after ``ceiling`` (and, for one
    customer's page, everyone but ``customer_ids``; with ``loaded_before``, the customers and
    orders imported since then, which the predictions of that moment did not see)."""
    from customers.models import Customer, Order, OrderItem, Review

    zone = shop_zone(tenant)
    limit = moment = None
    if isinstance(ceiling, dt.datetime):  # an instant (pd.Timestamp is one too)
        moment = as_timestamp(ceiling).to_pydatetime()
        limit = shop_clock(pd.Series([pd.Timestamp(moment)]), zone).iloc[0]
    elif ceiling is not None:  # the end of the shop's day
        limit, moment = as_timestamp(ceiling), shop_day_end(ceiling, tenant)
    with tenant_context(tenant):
        orders_qs = Order.objects.exclude(status__in=Order.NOT_REVENUE)
        lines_qs = OrderItem.objects.exclude(order__status__in=Order.NOT_REVENUE)
        reviews_qs = Review.objects.all()
        customers_qs = Customer.objects.all()
        if customer_ids is not None:
            customers_qs = customers_qs.filter(pk__in=customer_ids)
            orders_qs = orders_qs.filter(customer_id__in=customer_ids)
            lines_qs = lines_qs.filter(order__customer_id__in=customer_ids)
            reviews_qs = reviews_qs.filter(customer_id__in=customer_ids)
        if moment is not None:
            # Only customers who existed by then: first seen by then, or with an order by then,
            # or (first seen unknown) loaded by then. A customer who arrived later is not
            # scored at a date before they arrived.
            customers_qs = customers_qs.filter(
                Q(first_seen__lte=moment) | Q(first_seen__isnull=True, created_at__lte=moment) | Q(pk__in=Order.objects.filter(ordered_at__lte=moment).values("customer_id"))
            )
            orders_qs = orders_qs.filter(ordered_at__lte=moment)
            lines_qs = lines_qs.filter(order__ordered_at__lte=moment)
            reviews_qs = reviews_qs.filter(created_at__lte=moment)
        if loaded_before is not None:
            customers_qs = customers_qs.filter(created_at__lt=loaded_before)
            orders_qs = orders_qs.filter(created_at__lt=loaded_before)
            lines_qs = lines_qs.filter(order__created_at__lt=loaded_before)
        customers = pd.DataFrame.from_records(
            # First seen unknown: when the customer was loaded, as the limit above reads it (a
            # customer loaded today without a date had a stage history back a year).
            customers_qs.annotate(seen=Coalesce("first_seen", "created_at")).values_list("pk", "external_id", "seen", "country"),
            columns=["customer", "external_id", "first_seen", "country"]
        )
        orders = pd.DataFrame.from_records(orders_qs.values_list("customer_id", "ordered_at", "amount"), columns=["customer", "ordered_at", "amount"])
        lines = pd.DataFrame.from_records(
            lines_qs.values_list("order__customer_id", "order__ordered_at", "product__category", "product__name", "quantity", "amount"),
            columns=["customer", "ordered_at", "category", "product", "quantity", "amount"],
        )
        reviews = pd.DataFrame.from_records(
            reviews_qs.values_list("pk", "customer_id", "created_at", "rating", "text", "sentiment_score"),
            columns=["review", "customer", "created_at", "rating", "text", "sentiment_score"],
        )
    for frame, column in ((orders, "ordered_at"), (lines, "ordered_at"), (reviews, "created_at"), (customers, "first_seen")):
        frame[column] = shop_clock(pd.to_datetime(frame[column], utc=True), zone)
    orders["amount"] = orders["amount"].astype(float)
    lines["amount"] = lines["amount"].astype(float)
    lines["category"] = lines["category"].fillna("").replace("", "Other")
    reviews["rating"] = pd.to_numeric(reviews["rating"], errors="coerce")
    reviews["sentiment_score"] = pd.to_numeric(reviews["sentiment_score"], errors="coerce")
    categories = lines.groupby("category")["amount"].sum().sort_values(ascending=False).index.tolist()[:TOP_CATEGORIES]
    currency = None if tenant.currency in ("", "USD") else tenant.currency
    return History(customers, orders.sort_values("ordered_at", kind="stable"), lines, reviews, limit, categories, currency)


def history_from_frames(orders: pd.DataFrame, *, reviews: pd.DataFrame | None = None, lines: pd.DataFrame | None = None) -> History:
    """A History from plain frames (the CDNOW benchmark and tests)."""
    orders = orders.copy()
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True)
    orders["amount"] = orders["amount"].astype(float)
    ids = orders["customer"].unique()
    customers = pd.DataFrame({"customer": ids, "external_id": ids.astype(str), "first_seen": pd.NaT, "country": ""})
    if lines is None:
        lines = orders.assign(category="Other", product="", quantity=1)[["customer", "ordered_at", "category", "product", "quantity", "amount"]]
    if reviews is None:
        reviews = pd.DataFrame({"review": [], "customer": [], "created_at": pd.to_datetime([], utc=True), "rating": [], "text": [], "sentiment_score": []})
    categories = lines.groupby("category")["amount"].sum().sort_values(ascending=False).index.tolist()[:TOP_CATEGORIES]
    return History(customers, orders.sort_values("ordered_at", kind="stable"), lines, reviews, None, categories)


def order_days(orders: pd.DataFrame) -> pd.DataFrame:
    """Each customer's days with an order (the shop's days: :func:`shop_clock`), oldest first, with the whole days since
    their previous one (``gap``, NaN on the first).

    Orders on the same day (an order split in two, an add-on bought an hour later) are one
    purchase occasion: counted as orders they would make gaps of 0 days, a "usual" rhythm of
    a day and a customer who has "bought again" without coming back. Gaps, cadence, the
    overdue rule and "bought again" count these days; order counts and money stay per order.
    """
    days = pd.DataFrame({"customer": orders["customer"], "day": orders["ordered_at"].dt.floor("D")})
    days = days.drop_duplicates().sort_values(["customer", "day"], kind="stable").reset_index(drop=True)
    days["gap"] = days.groupby("customer")["day"].diff() / DAY
    return days


# A gap shorter than this share of a customer's mean gap ends the same purchase occasion as
# the order before it (the second half of a pair, an add-on the next day).
OCCASION_SHARE = 0.25


def usual_gaps(days: pd.DataFrame) -> pd.Series:
    """Each customer's usual gap (days, indexed by customer): the median gap between their
    purchase occasions, from :func:`order_days`. A gap shorter than a quarter of the
    customer's mean gap folds into the occasion before it, so that a customer who orders in
    pairs (days 0 and 2, 60 and 62, 120 and 122) usually orders every 60 days, not every 2,
    and is not "overdue" a week after a pair (2026-12-08). Regular gaps are untouched: none is
    below a quarter of their mean. Customers with one day have none (absent)."""
    customer = days["customer"]
    mean = days.groupby(customer)["gap"].transform("mean")
    starts = days["gap"].isna() | (days["gap"] >= OCCASION_SHARE * mean)
    previous_start = days["day"].where(starts).groupby(customer).ffill().groupby(customer).shift()
    gaps = ((days["day"] - previous_start) / DAY)[starts & days["gap"].notna()]
    return gaps.groupby(customer[gaps.index]).median().rename("gap")


def _safe_ratio(numerator: pd.Series, denominator: pd.Series, default: float = 0.0) -> pd.Series:
    out = numerator / denominator.replace(0, np.nan)
    return out.replace([np.inf, -np.inf], np.nan).fillna(default)


def _category_mix(history: History, cut: pd.Timestamp) -> pd.DataFrame | None:
    """Spend per customer (rows) and category (columns) up to ``cut``; None without lines."""
    lines = history.lines[history.lines["ordered_at"] <= cut]
    if lines.empty:
        return None
    return lines.pivot_table(index="customer", columns="category", values="amount", aggfunc="sum", fill_value=0.0)


def _category_shares(mix: pd.DataFrame, categories: list[str], index: pd.Index) -> dict[str, pd.Series]:
    """``category_<i>_share``: each customer's share of spend in ``categories[i]``."""
    total = mix.sum(axis=1).replace(0, np.nan)
    shares = {}
    for position, category in enumerate(categories):
        share = (mix[category] / total) if category in mix else pd.Series(0.0, index=mix.index)
        shares[f"category_{position}_share"] = share.reindex(index).fillna(0.0)
    return shares


def with_categories(features: pd.DataFrame, history: History, as_of: dt.date | dt.datetime | pd.Timestamp, categories: list[str]) -> pd.DataFrame:
    """``features`` with the category shares of ``categories`` (a model's, in its order) in
    place of the shop's current top categories: the shop's ranking is recomputed from its data
    at every load, so ``category_1_share`` can be Jackets when a model learns and Hiking boots
    when it scores (the demo shop's two swapped between June and September)."""
    if list(categories) == list(history.categories) or features.empty:
        return features
    mix = _category_mix(history, as_timestamp(as_of))
    aligned = features.drop(columns=[c for c in features.columns if c.startswith("category_") and c.endswith("_share")])
    if mix is None:
        return aligned.assign(**{f"category_{i}_share": 0.0 for i in range(len(categories))})
    return aligned.assign(**_category_shares(mix, list(categories), features.index))


def features_as_of(history: History, as_of: dt.date | dt.datetime | pd.Timestamp) -> pd.DataFrame:
    """One row per customer who had ordered by ``as_of``; only rows at or before it count.

    Index: customer pk. Columns are numeric features (names are stable: the models and the
    explanations rely on them).
    """
    cut = as_timestamp(as_of)
    orders = history.orders[history.orders["ordered_at"] <= cut]
    if orders.empty:
        return pd.DataFrame(index=pd.Index([], name="customer"))
    age_days = (cut - orders["ordered_at"]) / DAY
    orders = orders.assign(age=age_days.to_numpy())
    grouped = orders.groupby("customer")
    first = grouped["age"].max()
    last = grouped["age"].min()
    frame = pd.DataFrame(index=first.index)
    frame["orders"] = grouped.size()
    frame["recency_days"] = last
    frame["tenure_days"] = first
    frame["total_spent"] = grouped["amount"].sum()
    frame["avg_order_value"] = frame["total_spent"] / frame["orders"]
    frame["last_order_value"] = grouped["amount"].last()
    for window in WINDOWS:
        recent = orders[orders["age"] <= window].groupby("customer")
        frame[f"orders_{window}d"] = recent.size().reindex(frame.index, fill_value=0)
        frame[f"spent_{window}d"] = recent["amount"].sum().reindex(frame.index, fill_value=0.0)
    # The rhythm counts days with an order (``order_days``): the gaps between them, the
    # customer's cadence, how overdue they are against it, their rate and its trend.
    days = order_days(orders)
    days["age"] = (cut.floor("D") - days["day"]) / DAY  # whole calendar days before the cut's date
    by_day = days.groupby("customer")
    frame["order_days"] = by_day.size()
    recent_days = days[days["age"] < TREND_DAYS].groupby("customer").size().reindex(frame.index, fill_value=0)
    previous_days = days[(days["age"] >= TREND_DAYS) & (days["age"] < 2 * TREND_DAYS)].groupby("customer").size().reindex(frame.index, fill_value=0)
    frame["order_trend"] = recent_days - previous_days
    gaps = by_day["gap"]
    frame["gap_mean"] = gaps.mean().reindex(frame.index)
    frame["gap_median"] = usual_gaps(days).reindex(frame.index)  # the usual gap, between purchase occasions
    frame["gap_std"] = gaps.std().reindex(frame.index)
    frame["overdue_ratio"] = _safe_ratio(frame["recency_days"], frame["gap_median"], default=np.nan)
    frame["rate_per_month"] = frame["order_days"] / np.maximum(frame["tenure_days"], 30.0) * 30.0
    # Category mix: share of spend in each of the tenant's top categories.
    mix = _category_mix(history, cut)
    if mix is not None:
        for column, share in _category_shares(mix, history.categories, frame.index).items():
            frame[column] = share
        frame["categories_bought"] = (mix > 0).sum(axis=1).reindex(frame.index).fillna(0)
    # Reviews and their sentiment, as known at the cut.
    reviews = history.reviews[history.reviews["created_at"] <= cut]
    by_customer = reviews.groupby("customer")
    frame["reviews"] = by_customer.size().reindex(frame.index, fill_value=0)
    frame["rating_mean"] = by_customer["rating"].mean().reindex(frame.index)
    frame["negative_reviews"] = reviews[reviews["rating"] <= 2].groupby("customer").size().reindex(frame.index, fill_value=0)
    frame["sentiment_mean"] = by_customer["sentiment_score"].mean().reindex(frame.index)
    frame["sentiment_last"] = by_customer["sentiment_score"].last().reindex(frame.index)
    frame["days_since_review"] = ((cut - by_customer["created_at"].max()) / DAY).reindex(frame.index)
    frame.index.name = "customer"
    from modeling.families.bgnbd import stacked_features

    frame = frame.join(stacked_features(frame))
    return frame.astype(float)


def labels_after(history: History, as_of: dt.date | dt.datetime | pd.Timestamp, horizon_days: int, customers: pd.Index) -> pd.DataFrame:
    """Orders and revenue in (as_of, as_of + horizon] for the given customers."""
    start = as_timestamp(as_of)
    end = start + pd.Timedelta(days=horizon_days)
    if history.ceiling is not None and history.ceiling < end:
        raise ValueError(f"labels need data up to {end.date()}, but the history stops at {history.ceiling.date()}")
    window = history.orders[(history.orders["ordered_at"] > start) & (history.orders["ordered_at"] <= end)]
    grouped = window.groupby("customer")
    labels = pd.DataFrame(index=customers)
    labels["orders"] = grouped.size().reindex(customers, fill_value=0).astype(float)
    labels["revenue"] = grouped["amount"].sum().reindex(customers, fill_value=0.0)
    labels["purchased"] = (labels["orders"] > 0).astype(float)
    return labels


@dataclass
class Window:
    cutoff: pd.Timestamp
    horizon_days: int

    @property
    def label_end(self) -> pd.Timestamp:
        return self.cutoff + pd.Timedelta(days=self.horizon_days)

    def as_dict(self) -> dict[str, str]:
        return {"cutoff": self.cutoff.date().isoformat(), "label_end": self.label_end.date().isoformat()}


MIN_HISTORY_DAYS = 30


def plan_windows(history: History, as_of: dt.date | dt.datetime, horizon_days: int, *, max_train_windows: int = 4) -> tuple[list[Window], Window]:
    """Training cutoffs and the validation cutoff, all with labels ending by ``as_of``.

    Validation labels are the most recent full horizon (as_of - H, as_of]. Training label
    windows end at or before the validation cutoff, so no training label overlaps the
    validation period. Training cutoffs step back by a third of the horizon while at least
    a month of history precedes them.
    """
    end = as_timestamp(as_of)
    horizon = pd.Timedelta(days=horizon_days)
    validation = Window(end - horizon, horizon_days)
    start = history.first_order_at
    if start is None:
        raise ValueError("no orders before the as-of date")
    earliest = start + pd.Timedelta(days=MIN_HISTORY_DAYS)
    step = pd.Timedelta(days=max(horizon_days // 3, 7))
    train: list[Window] = []
    cutoff = validation.cutoff - horizon
    while cutoff >= earliest and len(train) < max_train_windows:
        train.append(Window(cutoff, horizon_days))
        cutoff -= step
    if validation.cutoff < earliest:
        needed = (validation.cutoff - pd.Timedelta(days=MIN_HISTORY_DAYS)).date()
        raise ValueError(f"not enough history: the first order ({start.date()}) must be on or before {needed}, {MIN_HISTORY_DAYS} days before "
                         f"the validation window starts ({validation.cutoff.date()}); use a later as-of date or a shorter horizon")
    return train, validation


def examples(history: History, windows: list[Window]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack (features, labels) over several cutoffs; the index is (cutoff, customer)."""
    feature_frames, label_frames = [], []
    for window in windows:
        features = features_as_of(history, window.cutoff)
        if features.empty:
            continue
        labels = labels_after(history, window.cutoff, window.horizon_days, features.index)
        key = window.cutoff.date().isoformat()
        feature_frames.append(pd.concat({key: features}, names=["cutoff"]))
        label_frames.append(pd.concat({key: labels}, names=["cutoff"]))
    if not feature_frames:
        return pd.DataFrame(), pd.DataFrame()
    features = pd.concat(feature_frames)
    return features, pd.concat(label_frames).loc[features.index]
