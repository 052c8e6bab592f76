"""The one interface every customer-model family implements (transformer, tabular, BG/NBD).

A family is fitted on stacked examples from several past cutoffs, validated on the most
recent window, saved to a directory of safe files (JSON, safetensors, LightGBM text — never
pickle), loaded back, and asked for the three customer targets at any as-of date.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from modeling.features import History, Window

Progress = Callable[[float, str], None]
# Columns every family's predict() returns, indexed by customer pk.
PREDICTION_COLUMNS = ("purchase_probability", "expected_orders", "expected_revenue")


def no_progress(fraction: float, message: str = "") -> None:
    return None


def at_least_the_chance_of_one(expected_orders: Any, purchase_probability: Any) -> Any:
    """Expected orders raised to the probability of buying where below it.

    For any count of orders, E[orders] >= P(orders >= 1): a customer with a 40% chance of
    buying expects at least 0.4 orders. Families that learn the two with separate heads
    (trees, transformer), and a champion set that serves them from two families, can break
    that; a page showing "expected orders 0.2" under "40% likely to buy" would contradict
    itself. Applied where a family predicts (so validation scores what is served) and where
    the two are put together for a customer."""
    return np.maximum(expected_orders, purchase_probability)


def order_value_ceiling(history: History, as_of: Any, features: pd.DataFrame) -> pd.Series:
    """The most one order of each customer's plausibly brings: the larger of three times
    their own average order and the 99th percentile of the shop's orders up to ``as_of``
    (the same for a chunk of customers as for all of them)."""
    from modeling.features import as_timestamp

    amounts = history.orders.loc[history.orders["ordered_at"] <= as_timestamp(as_of), "amount"]
    shop = float(amounts.quantile(0.99)) if len(amounts) else 0.0
    return np.maximum(3 * features["avg_order_value"].fillna(0.0), shop)


def within_expected_orders(expected_revenue: Any, expected_orders: Any, ceiling: Any) -> Any:
    """Expected revenue lowered to expected orders × the order-value ceiling where above it.

    Revenue and orders learnt by separate heads, or served by two families (orders from
    BG/NBD, revenue from the trees), can disagree: "0.0 orders expected" beside a predicted
    value of 14 ranks a customer 0.05% likely to buy in the High tier. Applied where the
    trees and the transformer predict (so validation scores what is served) and where two
    families' champions are put together."""
    return np.minimum(expected_revenue, np.asarray(expected_orders) * np.asarray(ceiling))


@dataclass
class TrainingData:
    """Everything a family may learn from: all of it ends at the as-of date."""

    history: History
    horizon_days: int
    train_windows: list[Window]
    validation: Window
    x_train: pd.DataFrame  # index (cutoff, customer)
    y_train: pd.DataFrame  # columns purchased, orders, revenue
    x_valid: pd.DataFrame  # index customer: features at the validation cutoff
    y_valid: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)  # tenant settings (e.g. max training seconds)


class CustomerModel(abc.ABC):
    """A fitted model for purchase probability, expected orders and expected revenue."""

    family: ClassVar[str]
    strategy: str = ""
    base_model: str = ""

    @abc.abstractmethod
    def fit(self, data: TrainingData, progress: Progress = no_progress) -> None: ...

    @abc.abstractmethod
    def predict(self, history: History, as_of: dt.date | dt.datetime | pd.Timestamp, features: pd.DataFrame, progress: Progress = no_progress) -> pd.DataFrame:
        """Scores for the customers in ``features`` (computed as of ``as_of``) with the
        columns in PREDICTION_COLUMNS. ``history`` is there for families that read more
        than the features (the transformer reads the text profile); it must be cut at
        ``as_of`` by the family itself through features.py helpers."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted model as safe files only (JSON, safetensors, LightGBM text)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path) -> CustomerModel: ...

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def feature_importance(self, target: str = "purchase") -> list[tuple[str, float]]:
        """(feature, importance) pairs of the target's model, most important first; empty if
        not meaningful."""
        return []
