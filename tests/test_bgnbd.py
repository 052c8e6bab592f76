"""BG/NBD and Gamma-Gamma: the published CDNOW numbers, the model's known properties, and
the family behind the common interface."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from customers.services.demo import read_cdnow
from modeling.families.base import PREDICTION_COLUMNS, TrainingData
from modeling.families.bgnbd import (
    FILE_NAME,
    BGNBDModel,
    BGNBDParams,
    calibrate,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
    probability_of_purchase,
    rfm_summary,
)
from modeling.features import examples, features_as_of, history_from_frames, labels_after, plan_windows

CALIBRATION_END = dt.date(1997, 9, 30)  # the end of week 39
PUBLISHED = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


@pytest.fixture(scope="module")
def cdnow_orders() -> pd.DataFrame:
    """The product's CDNOW copy as the app imports it: one order per customer per day."""
    lines = pd.DataFrame([(line.customer_id, line.date, float(line.dollars)) for line in read_cdnow()], columns=["customer", "day", "amount"])
    orders = lines.groupby(["customer", "day"], as_index=False)["amount"].sum()
    return pd.DataFrame({"customer": orders["customer"], "ordered_at": pd.to_datetime(orders["day"], utc=True), "amount": orders["amount"]})


@pytest.fixture(scope="module")
def calibration(cdnow_orders: pd.DataFrame) -> pd.DataFrame:
    return rfm_summary(cdnow_orders, CALIBRATION_END)


@pytest.fixture(scope="module")
def fitted(calibration: pd.DataFrame) -> BGNBDParams:
    return fit_bgnbd(calibration["frequency"], calibration["recency"], calibration["T"])


# --- The published numbers -----------------------------------------------------------------


def test_summary_counts_whole_days_in_weeks(cdnow_orders: pd.DataFrame, calibration: pd.DataFrame) -> None:
    # Customer 00004 bought on 1997-01-01, 01-18 and 08-02 before the cut (and 12-12 after).
    assert len(calibration) == 2357
    assert calibration["frequency"].sum() == 2457
    row = calibration.loc["00004"]
    assert row["frequency"] == 2
    assert row["recency"] == pytest.approx(213 / 7)
    assert row["T"] == pytest.approx(272 / 7)
    assert row["monetary_value"] == pytest.approx((29.73 + 14.96) / 2)


def test_summary_agrees_with_features_except_the_end_of_day(cdnow_orders: pd.DataFrame, calibration: pd.DataFrame) -> None:
    # features_as_of counts the same orders but measures ages to the end of the as-of day,
    # one day (less a second) later: the reason the model keeps its own summary.
    features = features_as_of(history_from_frames(cdnow_orders), CALIBRATION_END)
    summary = calibration.loc[features.index]
    assert (features["orders"] - 1 == summary["frequency"]).all()
    assert np.allclose(features["tenure_days"] - features["recency_days"], summary["recency"] * 7)
    assert np.allclose(features["tenure_days"] - summary["T"] * 7, 1 - 1 / 86_400)


def test_fit_recovers_the_published_parameters(fitted: BGNBDParams) -> None:
    assert fitted.r == pytest.approx(PUBLISHED.r, abs=0.01)
    assert fitted.alpha == pytest.approx(PUBLISHED.alpha, abs=0.01)
    assert fitted.a == pytest.approx(PUBLISHED.a, abs=0.01)
    assert fitted.b == pytest.approx(PUBLISHED.b, abs=0.01)


def test_the_models_calibration_uses_the_same_summary(cdnow_orders: pd.DataFrame) -> None:
    calibration, _ = calibrate(history_from_frames(cdnow_orders).orders, CALIBRATION_END)

    assert calibration.customers == 2357
    assert (calibration.bgnbd.r, calibration.bgnbd.alpha, calibration.bgnbd.a, calibration.bgnbd.b) == pytest.approx(
        (PUBLISHED.r, PUBLISHED.alpha, PUBLISHED.a, PUBLISHED.b), abs=0.01
    )


def test_conditional_expectation_of_the_papers_example_customer() -> None:
    # FHL 2005: x = 2, t_x = 30.43, T = 38.86 weeks expects 1.226 purchases in the next 39 weeks.
    assert expected_purchases(PUBLISHED, 39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=0.001)


def test_gamma_gamma_recovers_the_published_parameters(calibration: pd.DataFrame) -> None:
    # Fader, Hardie & Lee (2005), "RFM and CLV": p = 6.25, q = 3.74, γ = 15.44 on the 946 repeat buyers.
    assert (calibration["frequency"] > 0).sum() == 946
    spend = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    assert spend is not None
    assert (spend.p, spend.q, spend.v) == pytest.approx((6.25, 3.74, 15.44), abs=0.01)


def test_holdout_repeat_purchases_track_the_actual(cdnow_orders: pd.DataFrame, calibration: pd.DataFrame, fitted: BGNBDParams) -> None:
    holdout = cdnow_orders[cdnow_orders["ordered_at"].dt.date > CALIBRATION_END]
    assert len(holdout) == 1882  # weeks 40-78: 1997-10-01 .. 1998-06-30
    predicted = expected_purchases(fitted, 39, calibration["frequency"], calibration["recency"], calibration["T"]).sum()
    assert predicted == pytest.approx(1882, rel=0.15)


# --- Known properties ----------------------------------------------------------------------


def test_non_repeaters_are_alive_for_sure() -> None:
    assert probability_alive(PUBLISHED, [0, 0, 0], [0, 0, 0], [1, 20, 39]) == pytest.approx([1.0, 1.0, 1.0])


def test_expected_purchases_grow_with_frequency_and_shrink_with_a_long_silence() -> None:
    more = expected_purchases(PUBLISHED, 39, [0, 1, 2, 5, 10, 20], [30] * 6, [30] * 6)
    assert np.all(np.diff(more) > 0)
    longer_silence = expected_purchases(PUBLISHED, 39, [5] * 4, [38, 30, 20, 10], [39] * 4)
    assert np.all(np.diff(longer_silence) < 0)


def test_probabilities_are_probabilities_and_below_the_expected_count(calibration: pd.DataFrame) -> None:
    args = (calibration["frequency"], calibration["recency"], calibration["T"])
    purchase = probability_of_purchase(PUBLISHED, 39, *args)
    assert np.all((purchase >= 0) & (purchase <= 1))
    # The count is a non-negative integer, so its mean is at least P(count > 0).
    assert np.all(expected_purchases(PUBLISHED, 39, *args) >= purchase - 1e-12)


def test_heavy_buyers_stay_finite() -> None:
    values = expected_purchases(PUBLISHED, 52, [50, 300, 2000], [100, 100, 100], [104, 104, 104])
    assert np.all(np.isfinite(values))
    assert values[0] == pytest.approx(18.7, abs=0.1)


def test_gamma_gamma_is_the_population_mean_for_a_first_time_buyer(calibration: pd.DataFrame) -> None:
    spend = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    assert spend is not None
    assert expected_average_value(spend, 0, 0) == pytest.approx(spend.population_mean)
    assert spend.population_mean == pytest.approx(35.17, abs=0.01)


def test_gamma_gamma_declines_with_too_few_repeat_buyers() -> None:
    assert fit_gamma_gamma([1, 2, 3, 0], [10.0, 20.0, 15.0, 0.0]) is None


# --- The family ----------------------------------------------------------------------------


def synthetic_orders(customers: int, seed: int) -> pd.DataFrame:
    """Customers who arrive over 2023 and buy at their own pace until they drop out."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2023-01-01", tz="UTC")
    for customer in range(1, customers + 1):
        moment = start + pd.Timedelta(days=float(rng.uniform(0, 300)))
        gap_days = rng.uniform(10, 90)
        while moment < pd.Timestamp("2024-03-31", tz="UTC"):
            rows.append((customer, moment, round(float(rng.gamma(4, 12)), 2)))
            if rng.random() < 0.15:
                break
            moment += pd.Timedelta(days=float(rng.exponential(gap_days)))
    return pd.DataFrame(rows, columns=["customer", "ordered_at", "amount"])


def training_data(orders: pd.DataFrame, as_of: dt.date, horizon_days: int) -> TrainingData:
    history = history_from_frames(orders)
    train, validation = plan_windows(history, as_of, horizon_days)
    x_train, y_train = examples(history, train)
    x_valid = features_as_of(history, validation.cutoff)
    y_valid = labels_after(history, validation.cutoff, horizon_days, x_valid.index)
    return TrainingData(history, horizon_days, train, validation, x_train, y_train, x_valid, y_valid)


AS_OF = dt.date(2024, 3, 31)


@pytest.fixture(scope="module")
def synthetic() -> TrainingData:
    return training_data(synthetic_orders(150, seed=3), AS_OF, 30)


@pytest.fixture(scope="module")
def synthetic_model(synthetic: TrainingData) -> BGNBDModel:
    model = BGNBDModel()
    model.fit(synthetic)
    return model


@pytest.fixture
def model(synthetic_model: BGNBDModel) -> BGNBDModel:
    """A fresh copy per test: predict() records its recalibration on the model."""
    return copy.deepcopy(synthetic_model)


def test_model_fits_and_scores_a_synthetic_history(synthetic: TrainingData, model: BGNBDModel) -> None:
    features = features_as_of(synthetic.history, AS_OF)

    scores = model.predict(synthetic.history, AS_OF, features)

    assert list(scores.columns) == list(PREDICTION_COLUMNS)
    assert scores.index.equals(features.index)
    assert not scores.isna().any().any()
    assert scores["purchase_probability"].between(0, 1).all()
    assert (scores["expected_orders"] >= 0).all()
    assert (scores["expected_revenue"] >= 0).all()
    settings = model.hyperparameters()
    assert settings["horizon_days"] == 30
    assert settings["fitted"]["as_of"] == synthetic.validation.cutoff.date().isoformat()
    assert settings["scoring"]["as_of"] == AS_OF.isoformat()


def test_scoring_at_the_validation_cutoff_refits_the_same_parameters(synthetic: TrainingData, model: BGNBDModel) -> None:
    model.predict(synthetic.history, synthetic.validation.cutoff, synthetic.x_valid)

    assert model.scoring == model.fitted


def test_a_tiny_history_falls_back_to_the_mean_order_value() -> None:
    data = training_data(synthetic_orders(8, seed=5), AS_OF, 30)
    model = BGNBDModel()
    model.fit(data)
    features = features_as_of(data.history, AS_OF)

    scores = model.predict(data.history, AS_OF, features)

    assert model.scoring is not None
    assert model.scoring.gamma_gamma is None
    assert not scores.isna().any().any()
    assert np.allclose(scores["expected_revenue"], scores["expected_orders"] * model.scoring.mean_order_value)


@pytest.mark.parametrize("refit_on_predict", [True, False])
def test_save_and_load_give_identical_predictions(synthetic: TrainingData, model: BGNBDModel, tmp_path: Path, refit_on_predict: bool) -> None:
    model.refit_on_predict = refit_on_predict
    features = features_as_of(synthetic.history, AS_OF)
    before = model.predict(synthetic.history, AS_OF, features)

    model.save(tmp_path)
    loaded = BGNBDModel.load(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == [FILE_NAME]
    assert loaded.hyperparameters() == model.hyperparameters()
    pd.testing.assert_frame_equal(loaded.predict(synthetic.history, AS_OF, features), before)
