"""BG/NBD for repeat purchases and Gamma-Gamma for spend: the classic probabilistic baseline.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") describes each
customer by a purchase rate λ ~ Gamma(r, α) and a chance p ~ Beta(a, b) of dropping out
right after each purchase. It needs no labels, only each customer's recency-frequency
summary, so it is a strong, explainable baseline for the learned families. Spend comes from
the Gamma-Gamma model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves").

Time is counted in whole calendar days (UTC) and expressed in weeks (``unit_days=7``), the
paper's unit, so that the fitted α reads like the published one. See :func:`rfm_summary`
for why the summary is not derived from ``features_as_of``'s end-of-day ages.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

from modeling.families.base import PREDICTION_COLUMNS, CustomerModel, Progress, TrainingData, no_progress
from modeling.features import DAY, History, as_timestamp

Array = NDArray[np.float64]
UNIT_DAYS = 7
# Parameters are fitted on the log scale within these bounds: on degenerate data (say,
# nobody has bought twice yet) the likelihood keeps improving as a parameter runs off to 0
# or infinity, and the bounds keep the result finite instead of overflowing.
LOG_BOUNDS = (-12.0, 12.0)
# Fewer repeat buyers than this cannot pin down Gamma-Gamma's three parameters; the spend
# of every customer is then the population's mean order value.
MIN_REPEAT_BUYERS = 20
FILE_NAME = "bgnbd.json"


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    v: float

    @property
    def population_mean(self) -> float:
        """Mean spend per transaction of a customer we know nothing about (needs q > 1)."""
        return self.p * self.v / (self.q - 1.0)


# --- The summary ---------------------------------------------------------------------------


def rfm_summary(orders: pd.DataFrame, calibration_end: dt.date | dt.datetime | pd.Timestamp, unit_days: float = UNIT_DAYS) -> pd.DataFrame:
    """Each customer's BG/NBD summary from the orders (customer, ordered_at, amount) up to
    ``calibration_end`` (a date means the end of that day, as everywhere in the app).

    Columns: ``frequency`` (repeat purchases: days with an order after the first), ``recency`` (first to
    last order) and ``T`` (first order to the end of calibration), both in ``unit_days``;
    ``monetary_value`` (mean amount of the repeat orders, 0 without any) and ``total_spent``.

    Times are whole calendar days between the order's date and the cut's date. This is the
    definition of the published CDNOW summary (and of lifetimes'
    ``summary_data_from_transaction_data``): a customer who first bought on 1997-01-01 has
    T = 272 days = 38.86 weeks at a calibration ending 1997-09-30. ``features_as_of``
    measures ages to the *end* of the as-of day instead, which makes every T almost a day
    longer (273 - 1 s): on CDNOW that moves a from the published 0.793 to 0.815, so
    this model uses this summary for fitting and scoring alike.

    A purchase is a day with an order, as lifetimes counts it and as the features and the
    stages do: orders on one day (a split or an add-on order) are one purchase, of their
    summed amount. For CDNOW the app holds one order per customer-day anyway (several lines
    on one day form one order), which is the paper's transaction.
    """
    cut = as_timestamp(calibration_end)
    seen = orders[pd.to_datetime(orders["ordered_at"], utc=True) <= cut]
    columns = ["frequency", "recency", "T", "monetary_value", "total_spent"]
    if seen.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="customer"), dtype=float)
    seen = seen.assign(day=pd.to_datetime(seen["ordered_at"], utc=True).dt.floor("D"))
    days = seen.groupby(["customer", "day"], sort=True)["amount"].sum().astype(float).reset_index()
    grouped = days.groupby("customer")
    first_day, last_day = grouped["day"].min(), grouped["day"].max()
    first_amount = grouped["amount"].first()
    summary = pd.DataFrame(index=first_day.index)
    summary["frequency"] = grouped.size() - 1.0
    summary["recency"] = (last_day - first_day) / DAY / unit_days
    summary["T"] = (cut.floor("D") - first_day) / DAY / unit_days
    summary["total_spent"] = grouped["amount"].sum().astype(float)
    repeat_spend = summary["total_spent"] - first_amount
    summary["monetary_value"] = (repeat_spend / summary["frequency"].where(summary["frequency"] > 0)).fillna(0.0)
    summary.index.name = "customer"
    return summary[columns].astype(float)


# --- BG/NBD --------------------------------------------------------------------------------


def _floats(*values: ArrayLike) -> list[Array]:
    return [np.asarray(value, dtype=float) for value in values]


def bgnbd_log_likelihood(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:  # noqa: N803
    """Each customer's log-likelihood (FHL 2005, eq. 6), written in logs throughout.

    The likelihood is A·(B + C) with C present only for repeat buyers; its two terms are
    combined with logaddexp because for long-lived heavy buyers each alone under- or
    overflows.
    """
    x, t_x, t = _floats(frequency, recency, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    still_alive = -(r + x) * np.log(alpha + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped_out = np.where(x > 0, np.log(a) - np.log(np.where(x > 0, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(still_alive, dropped_out)


def _maximize(negative_log_likelihood: Callable[[Array], float], start: Array) -> Array:
    """L-BFGS-B (numerical gradient) on log-parameters. It reaches the published CDNOW
    values in about 100 likelihood evaluations, where Nelder-Mead needs about 700, which
    matters for a tenant with a million customers. Its linear algebra is on 4 x 4
    matrices, where multi-threaded BLAS costs far more than it saves (5x slower fits on a
    busy two-core worker), hence one thread."""
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            negative_log_likelihood,
            start,
            method="L-BFGS-B",
            bounds=[LOG_BOUNDS] * len(start),
            options={"maxiter": 2_000, "ftol": 1e-12, "gtol": 1e-8},
        )
    return np.exp(result.x)


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, penalizer: float = 0.0) -> BGNBDParams:  # noqa: N803
    """Maximum-likelihood r, α, a, b. ``penalizer`` adds an L2 penalty on the parameters
    (lifetimes' convention), which helps small or degenerate samples."""
    x, t_x, t = _floats(frequency, recency, T)
    if len(x) == 0:
        raise ValueError("BG/NBD needs at least one customer")
    # Customers with the same (x, t_x, T) add the same term, and at day granularity there
    # are far fewer distinct summaries than customers: each is evaluated once, weighted.
    rows, counts = np.unique(np.column_stack([x, t_x, t]), axis=0, return_counts=True)
    weights = counts / len(x)

    def negative(log_params: Array) -> float:
        params = BGNBDParams(*np.exp(log_params))
        penalty = penalizer * float(np.sum(np.exp(log_params) ** 2))
        return -float(np.sum(weights * bgnbd_log_likelihood(params, rows[:, 0], rows[:, 1], rows[:, 2]))) + penalty

    return BGNBDParams(*(float(value) for value in _maximize(negative, np.zeros(4))))


def _dropout_odds(params: BGNBDParams, x: Array, t_x: Array, t: Array) -> Array:
    """P(dropped out at T) / P(alive at T) given the history; 0 for non-repeaters, who in
    BG/NBD cannot have dropped out (dropout happens only right after a purchase)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(np.where(x > 0, b + x - 1, 1.0)) + (r + x) * (np.log(alpha + t) - np.log(alpha + t_x))
        return np.where(x > 0, np.exp(log_odds), 0.0)


def probability_alive(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:  # noqa: N803
    x, t_x, t = _floats(frequency, recency, T)
    return 1.0 / (1.0 + _dropout_odds(params, x, t_x, t))


def expected_purchases(params: BGNBDParams, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:  # noqa: N803
    """Expected purchases in (T, T + t] given the history (FHL 2005, eq. 10): P(alive)
    times the expected purchases of a customer still alive at T."""
    x, t_x, age = _floats(frequency, recency, T)
    return _expected_purchases_if_alive(params, t, x, age) / (1.0 + _dropout_odds(params, x, t_x, age))


def _expected_purchases_if_alive(params: BGNBDParams, t: float, x: Array, age: Array) -> Array:
    """E[(1 - ((α+T)/(α+T+pt))^(r+x)) / p] over the dropout chance's posterior Beta(a, b+x).

    Eq. 10 computes it as ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; z), which is
    0 · ∞ for a heavy buyer (large x). Euler's transformation gives the same number as
    ((α+T)/(α+T+t))^(a-1) · 2F1(a+b-1-r, a-1; a+b+x-1; z), which is 0 · ∞ for a large a
    instead (a fit where everyone drops out alike sends a and b to their bound). Each
    customer gets the form with the smaller exponent. When a and x are both large, both
    fail; the posterior of p is then so narrow that evaluating at its mean is accurate.
    """
    r, alpha, b = params.r, params.alpha, params.b
    # At a = 1 the formula is 0/0 (its limit is finite); a fit landing exactly there is
    # nudged off it rather than special-cased.
    a = params.a if abs(params.a - 1.0) > 1e-6 else 1.0 + 1e-6
    ratio = (alpha + age) / (alpha + age + t)
    z = t / (alpha + age + t)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        direct = ratio ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        transformed = ratio ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
        exact = (a + b + x - 1) / (a - 1) * (1.0 - np.where(r + x > abs(a - 1), transformed, direct))
    p = a / (a + b + x)
    at_mean = (1.0 - ((alpha + age) / (alpha + age + p * t)) ** (r + x)) / p
    return np.where(np.isfinite(exact), exact, at_mean)


def probability_of_purchase(params: BGNBDParams, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:  # noqa: N803
    """P(at least one purchase in (T, T + t]). A customer alive at T stays alive until the
    next purchase, so this is P(alive) times P(a Poisson(λ) event within t), with λ's
    posterior Gamma(r + x, α + T)."""
    x, t_x, age = _floats(frequency, recency, T)
    no_purchase = ((params.alpha + age) / (params.alpha + age + t)) ** (params.r + x)
    return probability_alive(params, x, t_x, age) * (1.0 - no_purchase)


# --- Gamma-Gamma ---------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
    """Log-likelihood of each repeat buyer's mean spend m over x transactions, up to a term
    that does not depend on the parameters."""
    x, m = _floats(frequency, monetary_value)
    p, q, v = params.p, params.q, params.v
    return gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(v + m * x)


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike, penalizer: float = 0.0) -> GammaGammaParams | None:
    """Maximum-likelihood p, q, v on the customers with repeat purchases of positive value
    (``penalizer`` as in :func:`fit_bgnbd`, with v measured in units of the mean spend).

    None when the model cannot be trusted: too few repeat buyers, or q <= 1, where the
    population mean spend would be infinite. Callers then use the population mean.
    """
    x, m = _floats(frequency, monetary_value)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) < MIN_REPEAT_BUYERS:
        return None
    # v is in currency units; fitting on spend relative to its mean keeps it within the
    # optimizer's bounds for any currency (p and q do not depend on the unit).
    scale = float(np.mean(m))
    relative = m / scale

    def negative(log_params: Array) -> float:
        params = GammaGammaParams(*np.exp(log_params))
        penalty = penalizer * float(np.sum(np.exp(log_params) ** 2))
        return -float(np.sum(gamma_gamma_log_likelihood(params, x, relative))) / len(x) + penalty

    # Start where the prior mean spend (p·v / (q - 1)) equals the observed mean.
    p, q, v = _maximize(negative, np.log([1.0, 2.0, 1.0]))
    if q <= 1.0:
        return None
    return GammaGammaParams(float(p), float(q), float(v) * scale)


def expected_average_value(params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
    """Expected spend per future transaction: the customer's own mean shrunk towards the
    population mean, more weakly the more transactions it rests on."""
    x, m = _floats(frequency, monetary_value)
    p, q, v = params.p, params.q, params.v
    return (p * (v + x * m)) / (p * x + q - 1.0)


# --- The family ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Parameters fitted on one summary, and where that summary was cut."""

    as_of: str
    customers: int
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams | None
    mean_order_value: float  # the spend fallback when gamma_gamma is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        spend = data["gamma_gamma"]
        return cls(data["as_of"], data["customers"], BGNBDParams(**data["bgnbd"]), GammaGammaParams(**spend) if spend else None, data["mean_order_value"])


def calibrate(orders: pd.DataFrame, as_of: dt.date | dt.datetime | pd.Timestamp, unit_days: float = UNIT_DAYS) -> tuple[Calibration, pd.DataFrame]:
    """Fit BG/NBD and Gamma-Gamma on every customer's summary at ``as_of``."""
    summary = rfm_summary(orders, as_of, unit_days)
    if summary.empty:
        raise ValueError(f"no orders by {as_timestamp(as_of).date()} to fit BG/NBD on")
    calibration = Calibration(
        as_of=as_timestamp(as_of).date().isoformat(),
        customers=len(summary),
        bgnbd=fit_bgnbd(summary["frequency"], summary["recency"], summary["T"]),
        gamma_gamma=fit_gamma_gamma(summary["frequency"], summary["monetary_value"]),
        mean_order_value=float(summary["total_spent"].sum() / (summary["frequency"].sum() + len(summary))),
    )
    return calibration, summary


class BGNBDModel(CustomerModel):
    """BG/NBD + Gamma-Gamma behind the common interface.

    BG/NBD learns from the summary alone, not from labels. ``fit`` calibrates on the
    summary at the validation cutoff, so that the validation window is a true holdout.
    ``predict`` then recalibrates on all customers' summaries at its own as-of date, which
    is how the model is meant to be used: the newest behaviour sets the parameters, and
    scoring at the validation cutoff reproduces the fit. ``refit_on_predict=False`` keeps
    the fitted parameters instead.
    """

    family: ClassVar[str] = "bgnbd"
    strategy = "maximum likelihood"
    base_model = "BG/NBD + Gamma-Gamma"

    def __init__(self, *, refit_on_predict: bool = True, unit_days: float = UNIT_DAYS) -> None:
        self.refit_on_predict = refit_on_predict
        self.unit_days = unit_days
        self.horizon_days = 0
        self.fitted: Calibration | None = None
        self.scoring: Calibration | None = None  # the last recalibration in predict

    def fit(self, data: TrainingData, progress: Progress = no_progress) -> None:
        progress(0.0, "Fitting BG/NBD and Gamma-Gamma at the validation cutoff")
        self.horizon_days = data.horizon_days
        self.fitted, _ = calibrate(data.history.orders, data.validation.cutoff, self.unit_days)
        progress(1.0, "BG/NBD fitted")

    def predict(self, history: History, as_of: dt.date | dt.datetime | pd.Timestamp, features: pd.DataFrame, progress: Progress = no_progress) -> pd.DataFrame:
        """Scores for ``features.index``. The parameters are refitted on all the customers
        in ``history`` at ``as_of``, not only those in ``features``: a chunk of customers
        must get the same parameters as the whole tenant, so ``history`` must hold the
        whole population. Customers without orders by then are scored as if they had
        just made their first."""
        if self.fitted is None:
            raise ValueError("the BG/NBD model has not been fitted")
        progress(0.0, "Summarising customers")
        if self.refit_on_predict:
            self.scoring, summary = calibrate(history.orders, as_of, self.unit_days)
            calibration = self.scoring
        else:
            summary, calibration = rfm_summary(history.orders, as_of, self.unit_days), self.fitted
        summary = summary.reindex(features.index, fill_value=0.0)
        x, t_x, age = summary["frequency"], summary["recency"], summary["T"]
        horizon = self.horizon_days / self.unit_days
        out = pd.DataFrame(index=features.index)
        out["purchase_probability"] = np.clip(probability_of_purchase(calibration.bgnbd, horizon, x, t_x, age), 0.0, 1.0)
        out["expected_orders"] = np.maximum(expected_purchases(calibration.bgnbd, horizon, x, t_x, age), 0.0)
        if calibration.gamma_gamma is None:
            value: Array | float = calibration.mean_order_value
        else:
            value = expected_average_value(calibration.gamma_gamma, x, summary["monetary_value"])
        out["expected_revenue"] = out["expected_orders"] * value
        progress(1.0, "Scored")
        return out[list(PREDICTION_COLUMNS)]

    def save(self, directory: Path) -> None:
        if self.fitted is None:
            raise ValueError("the BG/NBD model has not been fitted")
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "family": self.family,
            "unit_days": self.unit_days,
            "horizon_days": self.horizon_days,
            "refit_on_predict": self.refit_on_predict,
            "fitted": self.fitted.as_dict(),
            "scoring": self.scoring.as_dict() if self.scoring else None,
        }
        (directory / FILE_NAME).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> BGNBDModel:
        state = json.loads((directory / FILE_NAME).read_text(encoding="utf-8"))
        model = cls(refit_on_predict=state["refit_on_predict"], unit_days=state["unit_days"])
        model.horizon_days = state["horizon_days"]
        model.fitted = Calibration.from_dict(state["fitted"])
        model.scoring = Calibration.from_dict(state["scoring"]) if state["scoring"] else None
        return model

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "unit_days": self.unit_days,
            "horizon_days": self.horizon_days,
            "refit_on_predict": self.refit_on_predict,
            "fitted": self.fitted.as_dict() if self.fitted else None,
            "scoring": self.scoring.as_dict() if self.scoring else None,
        }


STACK_HORIZON_WEEKS = 13.0


def stacked_features(features: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD's view of each customer, as features for the other families.

    Fitted on the very rows it describes (one cutoff's population, data up to that cutoff
    only), so it adds no information from after the cutoff: it distils recency, frequency
    and tenure into P(alive) and expected purchases, which trees find hard to learn from
    few examples. Columns are NaN when the population is too small to fit.
    """
    out = pd.DataFrame(index=features.index, columns=["bgnbd_p_alive", "bgnbd_expected_13w"], dtype=float)
    if len(features) < 50:
        return out
    purchases = features["order_days"] if "order_days" in features else features["orders"]  # days with an order, as rfm_summary counts
    x = (purchases - 1).clip(lower=0).to_numpy(dtype=float)
    t_x = ((features["tenure_days"] - features["recency_days"]) / UNIT_DAYS).clip(lower=0).to_numpy(dtype=float)
    age = (features["tenure_days"] / UNIT_DAYS).to_numpy(dtype=float)
    try:
        params = fit_bgnbd(x, t_x, age, penalizer=0.001)
    except (ValueError, FloatingPointError):
        return out
    out["bgnbd_p_alive"] = probability_alive(params, x, t_x, age)
    out["bgnbd_expected_13w"] = expected_purchases(params, STACK_HORIZON_WEEKS, x, t_x, age)
    return out.replace([np.inf, -np.inf], np.nan)
