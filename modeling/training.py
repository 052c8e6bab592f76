"""Training: every family on the same backtest-safe windows, champions chosen on the
most recent window, metrics kept next to the baselines measured in the same run.

``train_models`` is the one code path behind the UI button, the API, the CLI and the
beat schedule (they reach it through ``modeling.jobs_api.do_start_training`` or the
task; the CLI's ``--sync`` calls it directly).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from modeling import metrics, registry
from modeling.families.base import CustomerModel, Progress, TrainingData, coherent_predictions, no_progress, served_together
from modeling.features import History, examples, features_as_of, labels_after, load_history, plan_windows
from modeling.jobs import JobCancelled
from modeling.models import ModelVersion

log = logging.getLogger(__name__)

FAMILIES = ("bgnbd", "tabular", "transformer")
CUSTOMER_TARGETS = ("purchase", "orders", "revenue")


def family_class(name: str) -> type[CustomerModel]:
    if name == "tabular":
        from modeling.families.tabular import TabularModel

        return TabularModel
    if name == "bgnbd":
        from modeling.families.bgnbd import BGNBDModel

        return BGNBDModel
    if name == "transformer":
        from modeling.families.transformer import TransformerModel

        return TransformerModel
    raise ValueError(f"Unknown model family {name!r}; expected one of {', '.join(FAMILIES)}")


@dataclass
class TrainingReport:
    as_of: dt.date
    horizon_days: int
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    champions: dict[str, int] = field(default_factory=dict)  # target -> ModelVersion id
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # family -> validation metrics
    seconds: float = 0.0
    # The validation window and each family's predictions on it, to score the champions served
    # together (served_together); not part of the job's result.
    validation: tuple[TrainingData, dict[str, pd.DataFrame]] | None = field(default=None, repr=False)

    def summary(self) -> str:
        parts = [f"Trained {', '.join(self.trained) or 'nothing'} as of {self.as_of} (horizon {self.horizon_days} days)."]
        if self.skipped:
            parts.append("Skipped: " + "; ".join(self.skipped) + ".")
        return " ".join(parts)

    @property
    def serves_customers(self) -> bool:
        """Whether a customer model from this training serves: what a training is asked for.
        False when no family that may serve trained (or there were no orders to learn from)."""
        return any(target in self.champions for target in CUSTOMER_TARGETS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(), "horizon_days": self.horizon_days, "trained": self.trained, "skipped": self.skipped,
            "champions": self.champions, "metrics": self.metrics, "seconds": round(self.seconds, 1),
        }


def data_fingerprint(history: History) -> str:
    """A short hash of what the models saw, to tell whether two versions learnt from the same data."""
    digest = hashlib.sha256()
    for frame, columns in ((history.orders, ["customer", "ordered_at", "amount"]), (history.reviews, ["review", "rating"])):
        digest.update(pd.util.hash_pandas_object(frame[columns].astype(str), index=False).values.tobytes())
    return digest.hexdigest()


def persistence_baseline(x_valid: pd.DataFrame, horizon_days: int, x_train: pd.DataFrame | None = None, y_train: pd.DataFrame | None = None) -> pd.DataFrame:
    """The naive forecast: the next horizon repeats the last one. Its chance to buy ranks
    customers by recent activity, then recency; with training examples (``x_train``,
    ``y_train``) the rank is made a probability (isotonic, fitted on them alone), so its log
    loss and Brier score compare with the models' as probabilities, not as a rank's."""
    window = min((w for w in (30, 90, 180, 365) if w >= horizon_days), default=365)
    scale = horizon_days / window

    def rank(x: pd.DataFrame) -> pd.Series:
        return (x[f"orders_{window}d"] > 0).astype(float) * 0.5 + 0.5 / (1.0 + x["recency_days"] / 30.0)

    probability = rank(x_valid)
    if x_train is not None and y_train is not None and len(x_train) and y_train["purchased"].nunique() > 1:
        from sklearn.isotonic import IsotonicRegression

        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(rank(x_train), y_train["purchased"].astype(float))
        probability = pd.Series(isotonic.predict(probability), index=x_valid.index)
    return pd.DataFrame(
        {
            "purchase_probability": probability,
            "expected_orders": x_valid[f"orders_{window}d"] * scale,
            "expected_revenue": x_valid[f"spent_{window}d"] * scale,
        },
        index=x_valid.index,
    )


# "Recent buyers" for the AUC that long-lapsed customers (easy to rank last) do not lift.
RECENT_DAYS = 180


def evaluate(predictions: pd.DataFrame, labels: pd.DataFrame, features: pd.DataFrame | None = None) -> dict[str, Any]:
    """The same metrics for every candidate and baseline. With ``features`` also the AUC among
    the customers who ordered in the last RECENT_DAYS: long-lapsed customers, sure not to buy,
    are easy to rank and lift the headline AUC."""
    y = labels.loc[predictions.index]
    out = metrics.purchase_metrics(y["purchased"].to_numpy(), predictions["purchase_probability"].to_numpy())
    if features is not None:
        recent = (features["recency_days"].reindex(predictions.index) <= RECENT_DAYS).to_numpy()
        scores = metrics.purchase_metrics(y["purchased"].to_numpy()[recent], predictions["purchase_probability"].to_numpy()[recent])
        at = list(out).index("auc") + 1  # shown next to the AUC
        out = dict([*list(out.items())[:at], ("auc_recent", scores["auc"]), ("n_recent", int(recent.sum())), *list(out.items())[at:]])
    out.update(metrics.count_metrics(y["orders"].to_numpy(), predictions["expected_orders"].to_numpy(), prefix="orders_"))
    out.update(metrics.count_metrics(y["revenue"].to_numpy(), predictions["expected_revenue"].to_numpy(), prefix="revenue_"))
    return out


# Each target's charts, by the key its version stores them under; a page shows only its target's.
TARGET_CHARTS = {"purchase": ("calibration", "gain"), "orders": ("deciles",), "revenue": ("deciles",)}


def charts(predictions: pd.DataFrame, labels: pd.DataFrame, target: str) -> dict[str, Any]:
    """The validation charts of one target: calibration and cumulative gain for the purchase
    probability; mean predicted vs mean actual by decile of the prediction for a count."""
    y = labels.loc[predictions.index]
    if target == "purchase":
        return {
            "calibration": metrics.calibration_bins(y["purchased"].to_numpy(), predictions["purchase_probability"].to_numpy()),
            "gain": metrics.gain_curve(y["purchased"].to_numpy(), predictions["purchase_probability"].to_numpy()),
        }
    column = "expected_orders" if target == "orders" else "expected_revenue"
    return {"deciles": decile_bins(y[target].to_numpy(), predictions[column].to_numpy())}


def decile_bins(actual: np.ndarray, predicted: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """The customers ranked by prediction and cut in ``bins`` groups of (nearly) equal size,
    lowest first: each group's mean predicted and mean actual value."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    groups = np.array_split(np.argsort(predicted, kind="stable"), max(1, min(bins, len(predicted))))
    return [{"decile": position + 1, "n": len(group), "predicted": round(float(predicted[group].mean()), 4), "actual": round(float(actual[group].mean()), 4)}
            for position, group in enumerate(groups) if len(group)]


# An AUC lead of this or less on one validation window is a tie (on CDNOW's 2,357 customers
# the families' test AUCs move by a few thousandths with thread counts alone). A tie goes to the
# lower log loss: the pages show the chance as a percentage, so calibration decides.
AUC_TIE = 0.005


# Each family's part of the training bar, by the time it takes on a CPU (the demo, 2026-12-07):
# in equal parts the bar reached 62% in seconds, then sat for minutes while the transformer ran.
PROGRESS_WEIGHTS = {"transformer": 8.0, "tabular": 1.0, "bgnbd": 1.0}


def better(target: str, candidate: dict[str, Any], incumbent: dict[str, Any], *, margin: float = 0.0) -> bool:
    """Champion rule per target: purchase by AUC, within AUC_TIE by log loss; counts by
    deviance (lower than the incumbent's by ``margin``, a share; MAE for versions saved before
    deviance was measured, see metrics.DEVIANCE_POWER)."""
    if target == "purchase":
        a, b = candidate.get("auc"), incumbent.get("auc")
        if a is None or b is None or abs(a - b) <= AUC_TIE:
            return (candidate.get("log_loss") or np.inf) < (incumbent.get("log_loss") or np.inf)
        return a > b
    prefix = "orders_" if target == "orders" else "revenue_"
    key = f"{prefix}deviance" if candidate.get(f"{prefix}deviance") is not None and incumbent.get(f"{prefix}deviance") is not None else f"{prefix}mae"
    return (candidate.get(key) if candidate.get(key) is not None else np.inf) < (1 - margin) * (incumbent.get(key) if incumbent.get(key) is not None else np.inf)


# Below these a model has too few customers who did and did not buy again to learn from, or a
# validation window too small to tell it from the baseline: a 4-customer shop got "0% to buy"
# for everyone, from models that lost to persistence.
MIN_EXAMPLES = {"training": (40, 5), "validation": (20, 3)}  # (customers, of each outcome)


def check_enough_examples(train_labels: pd.Series, valid_labels: pd.Series, validation_cutoff: dt.date) -> None:
    short = []
    for part, labels in (("training", train_labels), ("validation", valid_labels)):
        rows, each = MIN_EXAMPLES[part]
        bought = int(labels.sum())
        if len(labels) < rows or min(bought, len(labels) - bought) < each:
            short.append(f"the {part} windows hold {len(labels):,} customer{'s' if len(labels) != 1 else ''}, {bought:,} of whom bought again "
                         f"(at least {rows} needed, and {each} who did and {each} who did not)")
    if short:
        raise ValueError(f"too little history to learn from: {'; '.join(short)} (validation from {validation_cutoff}). Import more of the shop's "
                         "order history, or train again when it has more customers; until then stages, RFM groups and saved segments work without predictions")


def build_training_data(history: History, as_of: dt.date, horizon_days: int, settings: dict[str, Any] | None = None) -> TrainingData:
    train_windows, validation = plan_windows(history, as_of, horizon_days)
    if not train_windows:
        from modeling.features import MIN_HISTORY_DAYS

        needed = (validation.cutoff - pd.Timedelta(days=horizon_days + MIN_HISTORY_DAYS)).date()
        raise ValueError(f"not enough history for a training window before the validation window: the first order must be on or before {needed} "
                         f"(one horizon and {MIN_HISTORY_DAYS} days before {validation.cutoff.date()}); use a later as-of date or a shorter horizon")
    x_train, y_train = examples(history, train_windows)
    x_valid = features_as_of(history, validation.cutoff)
    y_valid = labels_after(history, validation.cutoff, horizon_days, x_valid.index)
    check_enough_examples(y_train["purchased"], y_valid["purchased"], validation.cutoff.date())
    return TrainingData(history, horizon_days, train_windows, validation, x_train, y_train, x_valid.reindex(columns=x_train.columns), y_valid, settings or {})


def train_customer_models(
    tenant: Tenant,
    history: History,
    as_of: dt.date,
    horizon_days: int,
    *,
    families: tuple[str, ...],
    job_id: int | str,
    report: TrainingReport,
    progress: Progress = no_progress,
) -> list[ModelVersion]:
    """Fit each family, evaluate on the validation window, save, and register candidates."""
    data = build_training_data(history, as_of, horizon_days, settings=tenant.settings)
    fingerprint = data_fingerprint(history)
    baseline = evaluate(persistence_baseline(data.x_valid, horizon_days, data.x_train, data.y_train), data.y_valid, data.x_valid)
    fitted: dict[str, tuple[CustomerModel, pd.DataFrame, dict[str, Any], Path, str]] = {}
    raw_by_family: dict[str, pd.DataFrame] = {}
    report.validation = (data, raw_by_family)
    weights = [PROGRESS_WEIGHTS.get(name, 1.0) for name in families]
    for position, name in enumerate(families):
        start, share = sum(weights[:position]) / sum(weights), weights[position] / sum(weights)

        def family_progress(fraction: float, message: str, start: float = start, share: float = share, name: str = name) -> None:
            progress(start + share * min(fraction, 1.0), f"{name}: {message}")

        try:
            model = family_class(name)()
            model.fit(data, lambda f, m: family_progress(0.9 * f, m))
            raw = model.predict(history, data.validation.cutoff, data.x_valid, lambda f, m: family_progress(0.9 + 0.1 * f, m))
            predictions = coherent_predictions(raw, history, data.validation.cutoff, data.x_valid, horizon_days)
        except JobCancelled:
            raise  # a cancel stops the whole training, not one family
        except Exception as exc:  # a family that cannot train must not stop the others
            log.exception("family %s failed for tenant %s", name, tenant.pk)
            report.skipped.append(f"{name} failed ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        scores = evaluate(predictions, data.y_valid, data.x_valid)  # the model as validated, before any refit
        model.refit_with_validation(data)
        directory = registry.artifact_dir(tenant, job_id, name)
        if directory.exists():
            shutil.rmtree(directory)
        model.save(directory)
        sha = registry.write_manifest(directory)
        fitted[name] = (model, predictions, scores, directory, sha)
        report.trained.append(name)
        report.metrics[name] = scores
        raw_by_family[name] = raw
    # Each version is shown beside the persistence baseline and every other family of this run,
    # so that a page never shows a champion beside fewer rivals than it beat.
    baselines = {"persistence": baseline} | {name: fitted[name][2] for name in fitted}
    versions = []
    with tenant_context(tenant), transaction.atomic():
        for name, (model, predictions, scores, directory, sha) in fitted.items():
            for target in CUSTOMER_TARGETS:
                versions.append(
                    ModelVersion.objects.create(
                        target=target, family=name, strategy=model.strategy, base_model=model.base_model,
                        hyperparameters=model.hyperparameters(), as_of=as_of, horizon_days=horizon_days,
                        training_windows=[w.as_dict() for w in data.train_windows], validation_window=data.validation.as_dict(),
                        data_fingerprint=fingerprint, metrics=scores,
                        baseline_metrics={k: v for k, v in baselines.items() if k != name},
                        feature_importance=[list(pair) for pair in model.feature_importance(target)[:25]],
                        charts=charts(predictions, data.y_valid, target), artifact_path=str(directory), artifact_sha256=sha,
                        job_id=job_id if isinstance(job_id, int) else None,
                    )
                )
    return versions


# A learned family displaces BG/NBD, the probabilistic baseline, on a count target (orders,
# revenue) only when its validation deviance is lower by this share: a 1% edge on one window is
# noise (on CDNOW the transformer won orders by 1.2% of MAE on validation and lost by 14% out of time).
BASELINE_MARGIN = 0.02


def margin_over(incumbent_family: str) -> float:
    """The share by which a challenger's deviance must beat the incumbent's: BASELINE_MARGIN over BG/NBD, none over another family."""
    return BASELINE_MARGIN if incumbent_family == "bgnbd" else 0.0


def chosen_families(family: str) -> tuple[str, ...]:
    """The families a training may serve from: ``auto`` (every family), one family, or a
    comma-separated list such as ``bgnbd,tabular`` (the demo's quick first set)."""
    if family == "auto":
        return FAMILIES
    names = tuple(dict.fromkeys(name.strip() for name in family.split(",")))
    if "" in names:  # "bgnbd,,tabular": a name left out, not one to guess
        raise ValueError(f"An empty family name in {family!r}; expected auto, or one or more of {', '.join(FAMILIES)}, comma-separated")
    if "auto" in names:
        raise ValueError("auto means every family and stands alone; or list families, such as bgnbd,tabular")
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"Unknown family {', '.join(unknown)}; expected auto, or one or more of {', '.join(FAMILIES)}")
    return names


def champion_for(target: str, candidates: list[Any], *, family: Callable[[Any], str], metrics: Callable[[Any], dict[str, Any]]) -> Any:
    """The candidate that serves ``target``, by the validation metrics. The purchase chance: the
    best AUC, and among the candidates within AUC_TIE of it the lowest log loss (in any order
    of candidates: a pairwise tie is not transitive). Orders and revenue: the baseline first,
    then each challenger that beats the one ahead (by BASELINE_MARGIN, when that one is BG/NBD)."""
    if target == "purchase" and candidates:
        loss = lambda c: (metrics(c).get("log_loss") if metrics(c).get("log_loss") is not None else np.inf, family(c) != "bgnbd")  # noqa: E731
        ranked = [c for c in candidates if metrics(c).get("auc") is not None]
        if not ranked:
            return min(candidates, key=loss)
        best = max(metrics(c)["auc"] for c in ranked)
        return min((c for c in ranked if metrics(c)["auc"] >= best - AUC_TIE - 1e-12), key=loss)
    champion = None
    for candidate in sorted(candidates, key=lambda c: family(c) != "bgnbd"):
        margin = margin_over(family(champion)) if champion is not None else 0.0
        if champion is None or better(target, metrics(candidate), metrics(champion), margin=margin):
            champion = candidate
    return champion


def served_together_metrics(champions: dict[str, ModelVersion], data: TrainingData, raw: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The validation metrics of the champions as scoring serves them when they are not one
    family (served_together): the mix is validated too, not only each champion alone."""
    frames = {target: raw[champions[target].family] for target in CUSTOMER_TARGETS}
    mixed = served_together(frames["purchase"], frames["orders"], frames["revenue"], data.x_valid["avg_order_value"])
    return evaluate(coherent_predictions(mixed, data.history, data.validation.cutoff, data.x_valid, data.horizon_days), data.y_valid, data.x_valid)


def choose_champions(versions: list[ModelVersion]) -> dict[str, ModelVersion]:
    targets = dict.fromkeys(v.target for v in versions)
    return {t: champion_for(t, [v for v in versions if v.target == t], family=lambda v: v.family, metrics=lambda v: v.metrics) for t in targets}


def train_models(
    tenant: Tenant,
    as_of: dt.date,
    horizon_days: int | None = None,
    *,
    family: str = "auto",
    job_id: int | str | None = None,
    progress: Progress = no_progress,
    acting_user: Any = None,
) -> TrainingReport:
    """Train sentiment and customer models as of ``as_of`` and promote the champions."""
    started = time.monotonic()
    horizon = horizon_days or tenant.horizon_days
    report = TrainingReport(as_of=as_of, horizon_days=horizon)
    job_key = job_id if job_id is not None else f"sync-{int(time.time())}"
    progress(0.01, "Loading data")
    history = load_history(tenant, ceiling=as_of)

    from modeling.sentiment_training import apply_sentiment, train_sentiment_champion

    # Scores the history's reviews in memory; promoted with the customer models at the end.
    sentiment = train_sentiment_champion(tenant, history, as_of, job_key, report, lambda f, m: progress(0.02 + 0.2 * f, m))

    families = servable = chosen_families(family)
    champions: dict[str, ModelVersion] = {}
    if history.orders.empty:
        report.skipped.append("customer models: no orders up to the as-of date")
    else:
        # BG/NBD is the baseline every other family is shown against, so it always trains.
        if "bgnbd" not in families:
            families = ("bgnbd", *families)
        try:
            versions = train_customer_models(
                tenant, history, as_of, horizon, families=families, job_id=job_key, report=report,
                progress=lambda f, m: progress(0.25 + 0.7 * f, m),
            )
        except ValueError as exc:
            versions = []
            report.skipped.append(f"customer models: {exc}")
        eligible = [v for v in versions if v.family in servable]  # BG/NBD trains as the baseline either way
        champions = choose_champions(eligible)
        if len({version.family for version in champions.values()}) > 1 and report.validation is not None:
            report.metrics["served_together"] = served_together_metrics(champions, *report.validation)
    # The last point a cancel stops the run: nothing it trained serves before this line.
    getattr(progress, "checkpoint", progress)(0.96, "Promoting the champions")
    if sentiment is not None:
        apply_sentiment(tenant, *sentiment)
        report.champions["sentiment"] = sentiment[0].pk
    for target, version in champions.items():
        with tenant_context(tenant):
            ModelVersion.objects.filter(pk=version.pk).update(is_champion=True)
        registry.do_promote_model_version(tenant, version.pk, acting_user=acting_user)
        report.champions[target] = version.pk
    report.seconds = time.monotonic() - started
    progress(1.0, report.summary())
    return report
