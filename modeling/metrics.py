"""Validation metrics, always computed the same way for every candidate and baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

CALIBRATION_BINS = 10


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)


def purchase_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """AUC, PR-AUC, log loss and Brier for 'buys again in the horizon'."""
    y = np.asarray(y_true, dtype=float)
    p = _clip(probability)
    both_classes = 0 < y.sum() < len(y)
    return {
        "n": int(len(y)),
        "positive_rate": round(float(y.mean()), 4) if len(y) else None,
        "auc": round(float(skm.roc_auc_score(y, p)), 4) if both_classes else None,
        "pr_auc": round(float(skm.average_precision_score(y, p)), 4) if both_classes else None,
        "log_loss": round(float(skm.log_loss(y, p, labels=[0, 1])), 4) if len(y) else None,
        "brier": round(float(skm.brier_score_loss(y, p)), 4) if len(y) else None,
        "mean_predicted": round(float(p.mean()), 4) if len(y) else None,
    }


# The deviance a count target's champion is chosen by: Poisson for orders, Tweedie between
# Poisson and Gamma for money (many zeros, a long tail of big spends). MAE would reward a
# forecast of zero for everyone: on CDNOW's validation window it beat every model (orders
# MAE 0.208 against 0.275), as most customers buy nothing in a quarter. A deviance punishes
# a forecast of nothing for a customer who buys. Forecasts are floored at DEVIANCE_FLOOR, so
# an exact zero costs a finite, large amount.
DEVIANCE_POWER = {"orders_": 1.0, "revenue_": 1.5}
DEVIANCE_FLOOR = 1e-3


def count_metrics(actual: np.ndarray, predicted: np.ndarray, *, prefix: str = "") -> dict[str, Any]:
    """The deviance (the champion's measure, see DEVIANCE_POWER), MAE, RMSE and the error of
    the total (what a merchant plans with)."""
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if not len(a):
        return {}
    total_actual, total_predicted = float(a.sum()), float(p.sum())
    deviance = skm.mean_tweedie_deviance(np.clip(a, 0.0, None), np.clip(p, DEVIANCE_FLOOR, None), power=DEVIANCE_POWER.get(prefix, 1.0))
    return {
        f"{prefix}deviance": round(float(deviance), 4),
        f"{prefix}mae": round(float(np.abs(a - p).mean()), 4),
        f"{prefix}rmse": round(float(np.sqrt(((a - p) ** 2).mean())), 4),
        f"{prefix}total_actual": round(total_actual, 2),
        f"{prefix}total_predicted": round(total_predicted, 2),
        f"{prefix}total_error_pct": round(100 * (total_predicted - total_actual) / total_actual, 2) if total_actual else None,
    }


def calibration_bins(y_true: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability: mean predicted vs observed rate."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probability, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append({"bin": b, "low": float(edges[b]), "high": float(edges[b + 1]), "n": int(mask.sum()),
                        "predicted": round(float(p[mask].mean()), 4), "observed": round(float(y[mask].mean()), 4)})
    return out


def gain_curve(y_true: np.ndarray, score: np.ndarray, points: int = 20) -> list[dict[str, float]]:
    """Share of all buyers found in the top x% of customers ranked by score (and the lift)."""
    y = np.asarray(y_true, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    found = np.cumsum(y[order])
    total = y.sum() or 1.0
    n = len(y)
    curve = []
    for k in range(1, points + 1):
        cut = max(1, int(round(n * k / points)))
        share = float(found[cut - 1] / total) if n else 0.0
        fraction = k / points
        curve.append({"population": round(fraction, 3), "gain": round(share, 4), "lift": round(share / fraction, 3)})
    return curve


def classification_metrics(y_true: list[int], y_pred: list[int]) -> dict[str, Any]:
    return {
        "accuracy": round(float(skm.accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(skm.f1_score(y_true, y_pred, average="macro")), 4),
    }
