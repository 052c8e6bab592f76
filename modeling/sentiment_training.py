"""Sentiment inside a training run: champion/challenger on the reviews known at the
as-of date, both candidates registered with their scores. The champion scores the run's
reviews in memory, so that per-customer sentiment can feed the customer models; it is
promoted and applied to the stored reviews only with them, at the end of the run, so a
cancelled run changes nothing that serves."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import transaction

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from modeling import registry
from modeling.families.base import Progress
from modeling.features import History
from modeling.models import ModelVersion

if TYPE_CHECKING:
    from modeling.sentiment import SentimentModel
    from modeling.training import TrainingReport


def train_sentiment_champion(
    tenant: Tenant, history: History, as_of: dt.date, job_key: Any, report: TrainingReport, progress: Progress
) -> tuple[ModelVersion, SentimentModel] | None:
    """Train and register the candidates; returns the champion's version and model, not yet
    promoted, after scoring ``history.reviews`` with it."""
    from modeling.sentiment import sentiment_of, train_sentiment

    reviews = history.reviews
    if reviews.empty:
        report.skipped.append("sentiment: no reviews up to the as-of date")
        return None
    ratings = [None if r != r else int(r) for r in reviews["rating"].tolist()]  # NaN -> None
    result = train_sentiment(
        reviews["text"].fillna("").tolist(), ratings, progress=lambda f, m="": progress(0.9 * f, m),
        max_transformer_seconds=float(tenant.settings.get("max_sentiment_seconds", 180)),
        candidates=tuple(tenant.settings.get("sentiment_candidates", ("ngram", "transformer"))),
    )
    if not result.trained:
        report.skipped.append(f"sentiment: {result.reason}")
        return None
    versions: dict[str, ModelVersion] = {}
    with tenant_context(tenant), transaction.atomic():
        for kind, candidate in result.candidates.items():
            if not candidate.ok or candidate.model is None:
                report.skipped.append(f"sentiment {kind}: {candidate.error}")
                continue
            directory = registry.artifact_dir(tenant, job_key, f"sentiment-{kind}")
            if directory.exists():
                shutil.rmtree(directory)
            candidate.model.save(directory)
            others = {other: c.metrics for other, c in result.candidates.items() if other != kind and c.ok}
            versions[kind] = ModelVersion.objects.create(
                target=ModelVersion.Target.SENTIMENT, family=kind, strategy=candidate.info.get("strategy", ""),
                base_model=str(candidate.info.get("base_model", "")), hyperparameters=candidate.info, as_of=as_of,
                horizon_days=0, validation_window=result.split, data_fingerprint="", metrics={**candidate.metrics, "label_counts": result.label_counts},
                baseline_metrics={**result.baseline_metrics, **others}, charts={}, artifact_path=str(directory),
                artifact_sha256=registry.write_manifest(directory), is_champion=kind == result.champion and result.beats_baseline,
                job_id=job_key if isinstance(job_key, int) else None,
            )
            report.metrics[f"sentiment-{kind}"] = candidate.metrics
    if not result.beats_baseline:
        scores = result.candidates[result.champion].metrics
        report.skipped.append(f"sentiment: no model beat always answering '{result.baseline.get('label')}' on the held-out reviews "
                              f"(accuracy {scores.get('accuracy', 0):.2f} vs {result.baseline.get('accuracy', 0):.2f}, macro-F1 "
                              f"{scores.get('macro_f1', 0):.2f} vs {result.baseline.get('macro_f1', 0):.2f}), so none serves")
        return None
    report.trained.append(f"sentiment ({result.champion})")
    progress(0.92, "Scoring the reviews' sentiment for the customer models")
    scores = sentiment_of(result.model, reviews["text"].fillna("").tolist(), ratings)
    history.reviews["sentiment_score"] = [score for _label, score in scores]
    progress(1.0, "Sentiment done")
    return versions[result.champion], result.model


def apply_sentiment(tenant: Tenant, champion: ModelVersion, model: SentimentModel) -> None:
    """Promote the champion and write its sentiment on every stored review."""
    from modeling.sentiment import score_reviews

    registry.do_promote_model_version(tenant, champion.pk)
    score_reviews(tenant, model)


def score_unscored_reviews(tenant: Tenant) -> int:
    """Reviews imported since the last training have no sentiment yet: the active
    sentiment model scores them (before customers are scored, so their features see it)."""
    from customers.models import Review
    from modeling.sentiment import load_sentiment_model, sentiment_of

    version = registry.active_versions(tenant).get(ModelVersion.Target.SENTIMENT)
    if version is None:
        return 0
    with tenant_context(tenant):
        pending = list(Review.objects.filter(sentiment="").exclude(text="").only("pk", "text", "rating")[:50_000])
        if not pending:
            return 0
        registry.verify_artifact(Path(version.artifact_path), version.artifact_sha256)
        model = load_sentiment_model(Path(version.artifact_path))
        for review, (label, score) in zip(pending, sentiment_of(model, [r.text for r in pending], [r.rating for r in pending]), strict=True):
            review.sentiment, review.sentiment_score = label, None if score is None else round(score, 4)
        Review.objects.bulk_update(pending, ["sentiment", "sentiment_score"], batch_size=1000)
    return len(pending)
