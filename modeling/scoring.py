"""Batch scoring: the active models score every customer as of a date.

Scoring ``as_of`` D reads only orders and reviews up to D (``load_history`` cuts there
and the features cut again), so a prediction as of D is the same whatever was loaded
since. Customers are scored in chunks so that several workers can share one tenant; the
last chunk to finish assigns value tiers, which need every customer's predicted value.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Count, Max, Min, Q

from clmsite.models import Tenant
from clmsite.tenancy import lock_tenant, tenant_context
from modeling import lifecycle, registry
from modeling.explain import explain_rows, money_text
from modeling.families.base import (
    CustomerModel,
    Progress,
    coherent_predictions,
    no_progress,
    served_together,
)
from modeling.features import History, features_as_of, load_history, typical_first_order
from modeling.models import ModelVersion, Prediction
from modeling.profiles import customer_profiles, profile_hash
from modeling.training import family_class

log = logging.getLogger(__name__)
CHUNK_SIZE = 2000
TARGET_COLUMNS = {"purchase": "purchase_probability", "orders": "expected_orders", "revenue": "expected_revenue"}
# The largest value the column holds (twelve digits before the point): a forecast from orders of
# the largest amounts a file may hold can pass it, and the whole scoring failed on one customer.
MAX_PREDICTED_VALUE = 999_999_999_999.99
DEFAULT_TIER_QUANTILES = {"high": 0.8, "medium": 0.5}  # top 20% high, next 30% medium


class NoActiveModel(Exception):
    """Scoring needs an active model for every customer target; train first."""


@dataclass
class ScoreReport:
    as_of: dt.date
    scored: int = 0
    prospects: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return f"Scored {self.scored:,} customers as of {self.as_of} ({self.prospects:,} without orders yet)."


_MODEL_CACHE: dict[tuple[str, str], CustomerModel] = {}


def load_model(version: ModelVersion) -> CustomerModel:
    """Load a version's model once per process, after verifying every file's checksum."""
    key = (version.artifact_path, version.artifact_sha256)
    if key not in _MODEL_CACHE:
        directory = Path(version.artifact_path)
        registry.verify_artifact(directory, version.artifact_sha256)
        _MODEL_CACHE[key] = family_class(version.family).load(directory)
    return _MODEL_CACHE[key]


def explainer_version(purchase: ModelVersion) -> ModelVersion | None:
    """The boosted-trees version whose attributions explain ``purchase``'s predictions: itself,
    or the trees trained in the same run beside another family."""
    if purchase.family == "tabular":
        return purchase
    with tenant_context(purchase.tenant):
        return ModelVersion.objects.filter(target="purchase", family="tabular", job_id=purchase.job_id, as_of=purchase.as_of).order_by("-pk").first()


def explainer_for(versions: dict[str, ModelVersion]) -> Any:
    """The boosted-trees model of the serving purchase version's run, for attributions."""
    version = explainer_version(versions["purchase"])
    return load_model(version) if version is not None and (version is versions["purchase"] or version.artifact_path) else None


# A prospect's chance of a first order depends on how long ago they signed up: most who order
# do so soon after. Age brackets, by days since sign-up (upper bounds), then older.
PROSPECT_AGES = (30, 90, 365)
PROSPECT_AGE_LABELS = ("up to 30 days", "31 to 90 days", "3 to 12 months", "over a year")  # after signing up
MIN_PROSPECTS = 20  # a bracket with fewer prospects takes the pooled share; fewer in all, DEFAULT_PROSPECT_RATE
DEFAULT_PROSPECT_RATE = 0.05


def _age_bracket(days: Any) -> Any:
    return np.searchsorted(PROSPECT_AGES, days, side="left")


def prospect_rates(history: History, as_of: pd.Timestamp, horizon_days: int) -> tuple[dict[int, float], float]:
    """Of the customers known before the last horizon without an order then, the share who
    ordered in it: by age bracket of their sign-up at its start (PROSPECT_AGES), and pooled.
    In the demo shop 21 of 25 week-old sign-ups ordered, and none of 274 older than 90 days."""
    start = as_of - pd.Timedelta(days=horizon_days)
    customers = history.customers
    known = customers[customers["first_seen"].notna() & (pd.to_datetime(customers["first_seen"], utc=True) <= start)]
    before = set(history.orders.loc[history.orders["ordered_at"] <= start, "customer"])
    prospects = known[~known["customer"].isin(before)]
    if len(prospects) < MIN_PROSPECTS:
        return {}, DEFAULT_PROSPECT_RATE
    during = set(history.orders.loc[(history.orders["ordered_at"] > start) & (history.orders["ordered_at"] <= as_of), "customer"])
    ordered = prospects["customer"].isin(during)
    brackets = _age_bracket((start - pd.to_datetime(prospects["first_seen"], utc=True)).dt.days.to_numpy())
    by_bracket = pd.Series(ordered.to_numpy()).groupby(brackets).agg(["mean", "size"])
    return {int(b): float(row["mean"]) for b, row in by_bracket.iterrows() if row["size"] >= MIN_PROSPECTS}, float(ordered.mean())


def serving_versions(tenant: Tenant) -> dict[str, ModelVersion]:
    """The active version of every customer target, or NoActiveModel naming those without one."""
    versions = registry.active_versions(tenant)
    missing = [t for t in ("purchase", "orders", "revenue") if t not in versions]
    if missing:
        raise NoActiveModel(f"No active model for {', '.join(missing)}. Train models first.")
    return versions


def score_customers(tenant: Tenant, as_of: dt.date, *, customer_ids: list[int] | None = None, progress: Progress = no_progress) -> ScoreReport:
    """Score (a chunk of) the tenant's customers as of ``as_of`` and store the predictions."""
    from modeling.features import as_timestamp

    versions = serving_versions(tenant)
    report = ScoreReport(as_of=as_of, model_versions={t: v.pk for t, v in versions.items()})
    progress(0.05, "Loading data")
    history = load_history(tenant, ceiling=as_of)
    cut = as_timestamp(as_of)
    features = features_as_of(history, as_of)
    population = history.customers["customer"]  # the customers known on the as-of date
    if customer_ids is not None:  # a chunk: its ids may hold customers who came later
        population = population[population.isin(customer_ids)]
    if customer_ids is not None:
        features = features.loc[features.index.intersection(customer_ids)]
    horizon = versions["purchase"].horizon_days
    progress(0.15, "Scoring")
    scores = pd.DataFrame(index=features.index)
    if len(features):
        # Targets served by the same artifact (one family fits all three) are predicted once.
        predicted_by_artifact: dict[str, pd.DataFrame] = {}
        for position, target in enumerate(TARGET_COLUMNS):
            version = versions[target]
            if version.artifact_path not in predicted_by_artifact:
                model = load_model(version)
                predicted_by_artifact[version.artifact_path] = model.predict(history, as_of, model.features_for(history, as_of, features))
            progress(0.15 + 0.2 * (position + 1), f"Scored {target}")
        by_target = {target: predicted_by_artifact[versions[target].artifact_path] for target in TARGET_COLUMNS}
        if len(predicted_by_artifact) == 1:
            scores = by_target["purchase"][list(TARGET_COLUMNS.values())]
        else:  # champions of two or three families: each gives what it won on (served_together), as training validated
            scores = served_together(by_target["purchase"], by_target["orders"], by_target["revenue"], features["avg_order_value"])
        scores = coherent_predictions(scores, history, as_of, features, horizon)
        explainer = explainer_for(versions)
        overdue_factor = tenant.settings.get("lifecycle", {}).get("overdue_factor") or lifecycle.Thresholds().overdue_factor
        # The factors speak of the features the explainer read: its own categories.
        explained = explainer.features_for(history, as_of, features) if explainer is not None else features
        categories = explainer.categories if explainer is not None and explainer.categories is not None else history.categories
        words = {"categories": categories, "currency": tenant.currency, "overdue_factor": overdue_factor}
        contributions = explainer.contributions(explained) if explainer is not None else None
        trees_chance = (explainer.predict(history, as_of, explained)["purchase_probability"]
                        if explainer is not None and versions["purchase"].family != "tabular" else pd.Series(dtype=float))
        explanations = explain_rows(explained, contributions, **words)
        # The value's factors need attributions: the rule-of-thumb fallback speaks of buying again.
        value_explanations = explain_rows(explained, explainer.contributions(explained, head="revenue"), **words) if explainer is not None else {}
        profiles = customer_profiles(history, as_of, features)
    else:
        explanations, value_explanations, profiles, trees_chance = {}, {}, pd.Series(dtype=str), pd.Series(dtype=float)
    prospects = [c for c in population if c not in features.index]
    rates, pooled = prospect_rates(history, cut, horizon) if prospects else ({}, 0.0)
    signed_up = pd.to_datetime(history.customers.set_index("customer")["first_seen"], utc=True)
    typical = typical_first_order(history.orders)
    prospect_value = typical if typical is not None else 0.0
    rows = []
    for customer, row in scores.iterrows():
        probability = float(np.clip(row["purchase_probability"], 0.0, 1.0))
        prediction = _prediction(tenant, customer, as_of, horizon, probability, float(row["expected_orders"]), float(row["expected_revenue"]),
                                 explanations.get(customer, []), report.model_versions, profile_hash(profiles.get(customer, "")))
        prediction.profile = profiles.get(customer, "")  # kept, so the customer page need not rebuild it per request
        prediction.value_explanation = value_explanations.get(customer, [])
        if customer in trees_chance.index:
            prediction.explainer_probability = round(float(trees_chance[customer]), 6)
        rows.append(prediction)
    for customer in prospects:
        since = signed_up.get(customer)
        bracket = int(_age_bracket((cut - since).days)) if since is not None and pd.notna(since) else None
        if bracket is not None and bracket in rates:
            rate, like = rates[bracket], f"with no order {PROSPECT_AGE_LABELS[bracket]} after signing up"
        else:
            # Too few of their age to measure: the pooled share, which long-silent sign-ups can pull
            # to nothing, is not read as "unlikely" for a sign-up of last week.
            rate, like = max(pooled, DEFAULT_PROSPECT_RATE), "who had signed up with no order"
        factors = [{"text": "no purchase yet", "effect": "-", "weight": 0.0},
                   # Raises the chance where their age orders more than sign-ups do overall; a 0% does not.
                   {"text": f"{rate:.0%} of customers {like} ordered within the next {horizon} days", "effect": "+" if rate > 0 and rate >= pooled else "-", "weight": 0.0}]
        prediction = _prediction(tenant, customer, as_of, horizon, rate, rate, rate * prospect_value, factors, report.model_versions, "")
        prediction.value_explanation = [{"text": f"a first order here is typically {money_text(prospect_value, tenant.currency)}", "effect": "+", "weight": 0.0},
                                        {"text": f"times the {rate:.0%} chance of one within {horizon} days", "effect": "-", "weight": 0.0}]
        rows.append(prediction)
    progress(0.85, "Saving predictions")
    with tenant_context(tenant), transaction.atomic():
        # Two scorings of one date (the command's and a job's, or a job's parallel batches)
        # write one after the other: the later replaces the earlier's rows rather than both
        # inserting and one failing on the unique (customer, as_of).
        lock_tenant(tenant)
        provisional_tiers(rows, as_of)
        ids = [p.customer_id for p in rows]
        Prediction.objects.filter(as_of=as_of, customer_id__in=ids).delete()
        Prediction.objects.bulk_create(rows, batch_size=1000)
    report.scored = len(rows)
    report.prospects = len(prospects)
    if customer_ids is None:
        assign_value_tiers(tenant, as_of)
    progress(1.0, report.summary())
    return report


def _prediction(tenant: Tenant, customer: int, as_of: dt.date, horizon: int, probability: float, orders: float, revenue: float,
                explanation: list[dict[str, Any]], versions: dict[str, int], digest: str) -> Prediction:
    """The stored row; ``orders`` and ``revenue`` already agree with ``probability`` (coherent_predictions, or a prospect's rate)."""
    return Prediction(
        tenant=tenant, customer_id=int(customer), as_of=as_of, horizon_days=horizon,
        purchase_probability=round(probability, 6), churn_probability=round(1.0 - probability, 6),
        expected_orders=round(orders, 6), predicted_value=Decimal(str(round(min(revenue, MAX_PREDICTED_VALUE), 2))),
        value_tier=Prediction.Tier.LOW, explanation=explanation, model_versions=versions, profile_hash=digest,
    )


def tier_quantiles(tenant: Tenant) -> dict[str, float]:
    """The quantiles of predicted value the high and medium tiers start at: the shop's settings, else the defaults."""
    return {**DEFAULT_TIER_QUANTILES, **tenant.settings.get("value_tier_quantiles", {})}


def tier_meaning(tenant: Tenant, tier: str, as_of: dt.date | None = None) -> str:
    """What a value tier holds, in words: "the top 20% of predicted values". With ``as_of``, the
    shares the tiers of that scoring really hold: the settings' quantiles change at once, the
    tiers only at the next scoring (and customers tied at a quantile stay in the tier below)."""
    quantiles = tier_quantiles(tenant)
    high, low = round(100 * (1 - quantiles["high"])), round(100 * quantiles["medium"])
    if as_of is not None:
        with tenant_context(tenant):
            counts = Prediction.objects.filter(as_of=as_of).aggregate(
                n=Count("id"), high=Count("id", filter=Q(value_tier=Prediction.Tier.HIGH)), low=Count("id", filter=Q(value_tier=Prediction.Tier.LOW)))
        if counts["n"]:
            high, low = round(100 * counts["high"] / counts["n"]), round(100 * counts["low"] / counts["n"])
            if max(high, low, 100 - high - low) == 100:  # one tier holds everyone: their values tie
                return "every customer of this scoring is in it (their predicted values tie)"
    return {"high": f"the top {high}% of predicted values", "medium": f"the {100 - high - low}% below the top {high}%",
            "low": f"the bottom {low}% of predicted values"}.get(tier, "")


def provisional_tiers(rows: list[Prediction], as_of: dt.date) -> None:
    """Tier new rows by where the latest ranked date (this one, else the one before) put its
    tiers' floors, until :func:`assign_value_tiers` ranks the whole date: a rescoring used to
    show its finished chunks all "low" (USD 386 among them) for as long as it ran. In the
    caller's tenant context."""
    ranked = Prediction.objects.filter(as_of__lte=as_of, value_tier=Prediction.Tier.HIGH).aggregate(latest=Max("as_of"))["latest"]
    if ranked is None:
        return
    floors = Prediction.objects.filter(as_of=ranked).aggregate(
        high=Min("predicted_value", filter=Q(value_tier=Prediction.Tier.HIGH)), medium=Min("predicted_value", filter=Q(value_tier=Prediction.Tier.MEDIUM)))
    for row in rows:
        if row.predicted_value >= floors["high"]:
            row.value_tier = Prediction.Tier.HIGH
        elif floors["medium"] is not None and row.predicted_value >= floors["medium"]:
            row.value_tier = Prediction.Tier.MEDIUM


def assign_value_tiers(tenant: Tenant, as_of: dt.date) -> dict[str, float]:
    """High / medium / low by quantiles of predicted value among all of the date's predictions.
    A tier holds the values above its quantile: customers tied at a quantile's value (a shop with
    thousands of sign-ups who share one "no order yet" value) stay in the tier below, so tied
    prospects never outrank the buyers worth more than them."""
    quantiles = tier_quantiles(tenant)
    with tenant_context(tenant), transaction.atomic():
        values = np.array([float(v) for v in Prediction.objects.filter(as_of=as_of).values_list("predicted_value", flat=True)])
        if not len(values):
            return {}
        high = float(np.quantile(values, quantiles["high"]))
        medium = float(np.quantile(values, quantiles["medium"]))
        dated = Prediction.objects.filter(as_of=as_of)
        dated.update(value_tier=Prediction.Tier.LOW)
        dated.filter(predicted_value__gt=Decimal(str(medium))).update(value_tier=Prediction.Tier.MEDIUM)
        dated.filter(predicted_value__gt=Decimal(str(high))).update(value_tier=Prediction.Tier.HIGH)
    return {"high": high, "medium": medium}


def withdraw_unfinished_date(tenant: Tenant, as_of: dt.date, since: dt.datetime) -> int:
    """Take back the predictions a scoring that failed or was cancelled wrote for ``as_of``, when
    no scoring of that date had written any before ``since`` (the job's start): a half-scored new
    date must not become the latest one. A date scored before keeps one prediction per customer,
    this run's for the chunks that finished. Returns how many were taken back."""
    with tenant_context(tenant), transaction.atomic():
        dated = Prediction.objects.filter(as_of=as_of)
        if dated.filter(created_at__lt=since).exists():
            return 0
        deleted, _ = dated.delete()
    return deleted


def settle_unfinished_date(tenant: Tenant, as_of: dt.date, since: dt.datetime) -> tuple[int, int]:
    """After a scoring that failed or was cancelled, started at ``since``: a date no scoring
    completed before is taken back whole (:func:`withdraw_unfinished_date`); a date scored
    before keeps this run's predictions for the chunks that finished, and its value tiers are
    ranked again over them all. Those rows were written in the low tier, for the last chunk to
    rank, and a cancel left a USD 4,263 customer reading "Low value" (2026-12-07). Returns
    (withdrawn, rescored) counts."""
    withdrawn = withdraw_unfinished_date(tenant, as_of, since)
    if withdrawn:
        return withdrawn, 0
    with tenant_context(tenant):
        rescored = Prediction.objects.filter(as_of=as_of, created_at__gte=since).count()
    if rescored:
        assign_value_tiers(tenant, as_of)
    return 0, rescored


def chunk_customer_ids(tenant: Tenant, size: int | None = None) -> list[list[int]]:
    from customers.models import Customer

    size = size or CHUNK_SIZE
    with tenant_context(tenant):
        ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
