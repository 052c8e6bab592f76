"""Learning who responds: a T-learner on completed campaigns of the same action.

Two classifiers on the members' features as of each launch, one fitted on treatment and
one on control members (outcome: ordered within the attribution window); a customer's
predicted uplift is the difference. It is validated on held-out campaign data: the last
completed campaign when there are several, else a random 30% of the members, by comparing
the observed uplift among the top 30% by predicted uplift with the overall uplift.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from campaigns.models import Campaign, CampaignMember
from clmsite.models import Tenant
from clmsite.tenancy import shop_day, shop_today, tenant_context

MIN_TREATED, MIN_CONTROL = 150, 60
TOP_SHARE = 0.3
PERSUADABLE_UPLIFT = 0.02  # and at least this predicted uplift
FEATURES = ["orders", "recency_days", "tenure_days", "total_spent", "avg_order_value", "orders_90d", "spent_365d", "gap_median",
            "rate_per_month", "reviews", "sentiment_mean", "categories_bought"]


@dataclass
class UpliftModel:
    action: str
    treated: Any
    control: Any
    columns: list[str]
    validation: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: pd.DataFrame) -> pd.Series:
        x = _matrix(features, self.columns)
        return pd.Series(self.treated.predict_proba(x)[:, 1] - self.control.predict_proba(x)[:, 1], index=features.index)


def _matrix(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    frame = features.reindex(columns=columns).astype(float)
    return frame.fillna(0.0).to_numpy()


def _fit(x: np.ndarray, y: np.ndarray) -> Any:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    if len(set(y)) < 2:  # everyone (or no one) converted: a constant rate
        model = _Constant(float(y.mean()) if len(y) else 0.0)
    return model.fit(x, y)


class _Constant:
    def __init__(self, rate: float) -> None:
        self.rate = rate

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Constant:
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(x), 1 - self.rate), np.full(len(x), self.rate)])


def training_frame(tenant: Tenant, action: str) -> pd.DataFrame:
    """One row per member of the completed campaigns of ``action``: campaign, group,
    features as of the launch date, converted (0/1)."""
    from customers.models import Order
    from modeling.features import features_as_of, load_history

    with tenant_context(tenant):
        campaigns = list(Campaign.objects.filter(action=action, state=Campaign.State.COMPLETED).exclude(launched_at=None).order_by("launched_at"))
        if not campaigns:
            return pd.DataFrame()
        history = load_history(tenant, ceiling=shop_day(max(c.launched_at for c in campaigns), tenant))
        frames = []
        for campaign in campaigns:
            members = pd.DataFrame.from_records(list(CampaignMember.objects.filter(campaign=campaign).values_list("customer_id", "group")), columns=["customer", "group"])
            converted = set(Order.objects.filter(customer_id__in=members["customer"].tolist(), ordered_at__gt=campaign.launched_at,
                                                 ordered_at__lte=campaign.attribution_ends).exclude(status__in=Order.NOT_REVENUE)
                            .values_list("customer_id", flat=True))
            launch = shop_day(campaign.launched_at, tenant) - dt.timedelta(days=1)  # features strictly before the launch day
            features = features_as_of(history, launch).reindex(members["customer"])
            features = features.reset_index(drop=True)
            frame = pd.concat([members.reset_index(drop=True), features], axis=1)
            frame["campaign"] = campaign.pk
            frame["converted"] = frame["customer"].isin(converted).astype(int)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def fit_uplift(tenant: Tenant, action: str, *, seed: int = 0) -> UpliftModel | None:
    """The T-learner for ``action``, validated on held-out data; None without enough data."""
    data = training_frame(tenant, action)
    if data.empty or (data["group"] == "treatment").sum() < MIN_TREATED or (data["group"] == "control").sum() < MIN_CONTROL:
        return None
    columns = [c for c in FEATURES if c in data]
    campaigns = sorted(data["campaign"].unique())
    if len(campaigns) >= 2:
        holdout_mask = data["campaign"] == campaigns[-1]
        scheme = f"held-out campaign {campaigns[-1]}"
    else:
        holdout_mask = pd.Series(np.random.default_rng(seed).random(len(data)) < 0.3, index=data.index)
        scheme = "random 30% of members"
    train, test = data[~holdout_mask], data[holdout_mask]
    model = _t_learner(train, columns, action)
    model.validation = {"scheme": scheme, **evaluate(model, test)}
    final = _t_learner(data, columns, action)  # served on all the data, with the held-out score above
    final.validation = model.validation
    return final


def _t_learner(data: pd.DataFrame, columns: list[str], action: str) -> UpliftModel:
    treated, control = data[data["group"] == "treatment"], data[data["group"] == "control"]
    return UpliftModel(action, _fit(_matrix(treated, columns), treated["converted"].to_numpy()),
                       _fit(_matrix(control, columns), control["converted"].to_numpy()), columns)


def evaluate(model: UpliftModel, test: pd.DataFrame) -> dict[str, Any]:
    """Observed uplift among the top 30% by predicted uplift vs in everyone held out."""
    def observed(rows: pd.DataFrame) -> float | None:
        t, c = rows[rows["group"] == "treatment"], rows[rows["group"] == "control"]
        return float(t["converted"].mean() - c["converted"].mean()) if len(t) and len(c) else None

    if test.empty:
        return {"holdout_members": 0}
    predicted = model.predict(test)
    top = test[predicted >= predicted.quantile(1 - TOP_SHARE)]
    return {"holdout_members": len(test), "uplift_all": observed(test), "uplift_top30": observed(top), "top_share": TOP_SHARE}


_CACHE: dict[tuple[int, str, tuple[int, ...]], UpliftModel | None] = {}


def model_for(tenant: Tenant, action: str) -> UpliftModel | None:
    with tenant_context(tenant):
        key = (tenant.pk, action, tuple(Campaign.objects.filter(action=action, state=Campaign.State.COMPLETED).values_list("pk", flat=True).order_by("pk")))
    if key not in _CACHE:
        _CACHE[key] = fit_uplift(tenant, action)
    return _CACHE[key]


def persuadable_customer_ids(tenant: Tenant, action: str) -> list[int] | None:
    """The top 30% of customers by predicted uplift for ``action`` (the share the held-out
    validation measures), keeping only those predicted to gain at least 2 points; None when
    no completed campaign of that action teaches the model yet."""

    from modeling.features import features_as_of, load_history

    model = model_for(tenant, action)
    if model is None:
        return None
    today = shop_today(tenant)
    features = features_as_of(load_history(tenant, ceiling=today), today)
    uplift = model.predict(features)
    cut = max(float(uplift.quantile(1 - TOP_SHARE)), PERSUADABLE_UPLIFT) if len(uplift) else PERSUADABLE_UPLIFT
    return [int(c) for c in uplift[uplift >= cut].index]
