"""An out-of-time backtest of every family on a plain order log (no database needed).

Train exactly as ``training.train_models`` does (rolling windows before the as-of date,
champion chosen on the most recent window), then score at the as-of date and compare with
what really happened in the following horizon. The CDNOW quality benchmark and its test
use it; nothing after the as-of date is visible to any family.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from modeling.families.base import coherent_predictions, no_progress
from modeling.features import History, features_as_of, history_from_frames, labels_after
from modeling.training import CUSTOMER_TARGETS, build_training_data, evaluate, family_class


@dataclass
class BacktestRow:
    family: str
    validation: dict[str, Any]
    test: dict[str, Any]
    train_seconds: float
    served_for: list[str]


def cdnow_history() -> History:
    from customers.services.demo import read_cdnow

    days: dict[tuple[str, dt.date], float] = {}
    for line in read_cdnow():
        days[(line.customer_id, line.date)] = days.get((line.customer_id, line.date), 0.0) + float(line.dollars)
    orders = pd.DataFrame([{"customer": int(c), "ordered_at": pd.Timestamp(d, tz="UTC"), "amount": a} for (c, d), a in days.items()])
    return history_from_frames(orders)


def backtest(history: History, as_of: dt.date, horizon_days: int, families: tuple[str, ...]) -> list[BacktestRow]:
    """Fit each family as training would, then score at ``as_of`` against the truth after it."""
    from modeling.training import champion_for

    data = build_training_data(history, as_of, horizon_days)
    test_features = features_as_of(history, as_of).reindex(columns=data.x_train.columns)
    truth = labels_after(history, as_of, horizon_days, test_features.index)
    rows = []
    for name in families:
        started = time.monotonic()
        model = family_class(name)()
        model.fit(data, no_progress)
        seconds = time.monotonic() - started
        validation = evaluate(coherent_predictions(model.predict(history, data.validation.cutoff, data.x_valid), history, data.validation.cutoff,
                                                   data.x_valid, horizon_days), data.y_valid)
        model.refit_with_validation(data)  # as training does before it saves the model that serves
        test = evaluate(coherent_predictions(model.predict(history, as_of, test_features), history, as_of, test_features, horizon_days), truth)
        rows.append(BacktestRow(name, validation, test, seconds, []))
    for target in CUSTOMER_TARGETS:
        champion = champion_for(target, rows, family=lambda r: r.family, metrics=lambda r: r.validation)
        if champion is not None:
            champion.served_for.append(target)
    return rows
