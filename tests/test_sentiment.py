"""Review sentiment: both candidates against the majority baseline on English and Chinese
reviews, safe persistence, scoring every review of a tenant, and the skipped cases."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from customers.models import Customer, Review
from modeling.sentiment import (
    LABELS,
    TIE_MARGIN,
    NgramSentimentModel,
    SentimentModelCorrupt,
    SentimentTrainingResult,
    load_sentiment_model,
    review_texts_and_ratings,
    score_reviews,
    sentiment_of,
    train_sentiment,
    weak_label,
)
from tests.conftest import write_csv

FIXTURES = Path(__file__).parent / "fixtures"
# The transformer is the slow candidate (2 CPU cores): a short budget keeps the file fast.
# It is enough to get both candidates' scores, not for the transformer to win.
TRANSFORMER_SECONDS = 20


def english_reviews() -> tuple[list[str], list[int | None]]:
    from customers.services.demo import generate_shop

    shop = generate_shop(customers=1000, seed=11, end_date=dt.date(2025, 1, 1))
    return [r.text for r in shop.reviews], [r.rating for r in shop.reviews]


def chinese_reviews() -> tuple[list[str], list[int | None]]:
    with (FIXTURES / "reviews_zh.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [int(row["rating"]) for row in rows]


@pytest.fixture(scope="module")
def english_result() -> SentimentTrainingResult:
    texts, ratings = english_reviews()
    return train_sentiment(texts, ratings, seed=0, max_transformer_seconds=TRANSFORMER_SECONDS)


@pytest.fixture(scope="module")
def chinese_result() -> SentimentTrainingResult:
    texts, ratings = chinese_reviews()
    return train_sentiment(texts, ratings, seed=0, max_transformer_seconds=TRANSFORMER_SECONDS)


def test_weak_labels_follow_the_stars() -> None:
    assert [weak_label(r) for r in (1, 2, 3, 4, 5)] == [0, 0, 1, 2, 2]
    assert weak_label(None) is None
    assert weak_label(0) is None


def assert_beats_majority(result: SentimentTrainingResult) -> None:
    assert result.status == "trained"
    champion = result.champion_metrics
    baseline = result.baseline
    assert champion["macro_f1"] > baseline["macro_f1"] + 0.3
    assert champion["accuracy"] > baseline["accuracy"]
    assert result.beats_baseline
    assert result.metrics["beats_baseline"] is True
    assert result.baseline_metrics == {"majority_class": baseline}


@pytest.mark.slow
def test_english_sentiment_beats_the_majority_class(english_result: SentimentTrainingResult) -> None:
    # Given demo-shop reviews, when trained, then the champion beats the majority class on held-out reviews.
    assert_beats_majority(english_result)
    assert english_result.baseline["label"] == "positive"
    assert english_result.label_counts["neutral"] > 0


@pytest.mark.slow
def test_chinese_sentiment_beats_the_majority_class(chinese_result: SentimentTrainingResult) -> None:
    assert_beats_majority(chinese_result)
    ngram = chinese_result.candidates["ngram"].metrics
    # Every class is learned, not just the big ones: char n-grams read Chinese unsegmented.
    assert min(ngram["f1"].values()) > 0.6


@pytest.mark.slow
@pytest.mark.parametrize("language", ["english", "chinese"])
def test_both_candidates_are_scored_on_the_same_split(language: str, request: pytest.FixtureRequest) -> None:
    result: SentimentTrainingResult = request.getfixturevalue(f"{language}_result")
    candidates = result.metrics["candidates"]
    assert set(candidates) == {"ngram", "transformer"}
    for kind, scores in candidates.items():
        assert scores["ok"] is True, f"{kind}: {scores.get('error')}"
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1
        assert set(scores["f1"]) == set(LABELS)
    assert candidates["transformer"]["info"]["train_examples"] < result.split["train"]  # early-stops on a slice of train
    assert result.split["train"] + result.split["valid"] == sum(result.label_counts.values())
    # Higher macro-F1 serves; a tie (within TIE_MARGIN) goes to the cheaper n-gram model.
    best = "transformer" if candidates["transformer"]["macro_f1"] - candidates["ngram"]["macro_f1"] >= TIE_MARGIN else "ngram"
    assert result.champion == best
    assert result.metrics["macro_f1"] == candidates[best]["macro_f1"]


@pytest.mark.slow
def test_a_saved_transformer_candidate_loads_through_the_same_wrapper(chinese_result: SentimentTrainingResult, tmp_path: Path) -> None:
    model = chinese_result.candidates["transformer"].model
    assert model is not None
    manifest = model.save(tmp_path / "transformer")
    loaded = load_sentiment_model(tmp_path / "transformer")
    texts = ["质量很好，物流很快。", "太差了，不会再买。", "还行吧，就是有点贵。"]
    assert manifest["kind"] == "text-classifier"
    assert type(loaded).__name__ == "TextClassifier"
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)


def test_a_failing_transformer_is_recorded_and_ngram_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("encoder directory not found")

    monkeypatch.setattr("modeling.sentiment._train_transformer", broken)
    texts, ratings = chinese_reviews()

    result = train_sentiment(texts, ratings)

    assert result.status == "trained"
    assert result.champion == "ngram"
    transformer = result.metrics["candidates"]["transformer"]
    assert transformer["ok"] is False
    assert transformer["error"] == "RuntimeError: encoder directory not found"
    assert "macro_f1" not in transformer
    assert result.beats_baseline


def rated_examples(texts: list[str], ratings: list[int | None]) -> tuple[list[str], list[int]]:
    pairs = [(text, label) for text, rating in zip(texts, ratings, strict=True) if (label := weak_label(rating)) is not None]
    return [text for text, _ in pairs], [label for _, label in pairs]


def test_a_tie_goes_to_the_cheaper_ngram_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a "transformer" that is the very same model, so both score exactly alike
    monkeypatch.setattr("modeling.sentiment._train_transformer", lambda texts, labels, **kwargs: NgramSentimentModel.train(texts, labels))
    texts, ratings = chinese_reviews()

    result = train_sentiment(texts, ratings)

    candidates = result.metrics["candidates"]
    assert candidates["transformer"]["macro_f1"] == candidates["ngram"]["macro_f1"]
    assert result.champion == "ngram"


@pytest.fixture(scope="module")
def fitted_ngram() -> tuple[NgramSentimentModel, list[str]]:
    zh_texts, zh_ratings = chinese_reviews()
    en_texts, en_ratings = english_reviews()
    # Both languages in one model, so the round trip covers ASCII and CJK vocabulary.
    texts, labels = rated_examples(zh_texts[:300] + en_texts[:300], zh_ratings[:300] + en_ratings[:300])
    return NgramSentimentModel.train(texts, labels), zh_texts[300:400] + en_texts[300:400]


def test_ngram_model_round_trip_gives_identical_probabilities(fitted_ngram: tuple[NgramSentimentModel, list[str]], tmp_path: Path) -> None:
    model, held_out = fitted_ngram

    manifest = model.save(tmp_path / "ngram")
    loaded = load_sentiment_model(tmp_path / "ngram")

    assert isinstance(loaded, NgramSentimentModel)
    assert np.array_equal(loaded.predict_proba(held_out), model.predict_proba(held_out))
    assert manifest["kind"] == "ngram"
    assert set(manifest["files"]) == {p.name for p in (tmp_path / "ngram").iterdir()} - {"manifest.json"}
    written = [p.suffix for p in (tmp_path / "ngram").rglob("*")]
    assert set(written) == {".json", ".safetensors"}
    probabilities = model.predict_proba(held_out)
    assert probabilities.shape == (len(held_out), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["weights.safetensors", "vocabulary_char.json", "settings.json"])
def test_a_tampered_ngram_file_is_refused(fitted_ngram: tuple[NgramSentimentModel, list[str]], tmp_path: Path, name: str) -> None:
    model, _ = fitted_ngram
    model.save(tmp_path)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(SentimentModelCorrupt, match=name):
        load_sentiment_model(tmp_path)


def test_a_manifest_that_leaves_a_file_out_is_refused(fitted_ngram: tuple[NgramSentimentModel, list[str]], tmp_path: Path) -> None:
    model, _ = fitted_ngram
    manifest = model.save(tmp_path)
    del manifest["files"]["settings.json"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "settings.json").write_text("{}")

    with pytest.raises(SentimentModelCorrupt, match="settings.json"):
        load_sentiment_model(tmp_path)


def test_a_tenant_without_neutral_ratings_still_gets_three_columns(tmp_path: Path) -> None:
    # Given a shop whose customers never give three stars
    texts, ratings = chinese_reviews()
    kept = [(text, rating) for text, rating in zip(texts, ratings, strict=True) if rating != 3]

    result = train_sentiment([t for t, _ in kept], [r for _, r in kept], candidates=("ngram",))

    assert result.model is not None
    probabilities = result.model.predict_proba(texts[:50])
    assert probabilities.shape == (50, 3)
    assert not probabilities[:, 1].any()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert result.champion_metrics["f1"]["neutral"] is None
    assert result.beats_baseline
    result.save(tmp_path)
    assert np.array_equal(load_sentiment_model(tmp_path).predict_proba(texts[:50]), probabilities)


def test_a_tiny_tenant_is_skipped_with_a_reason() -> None:
    texts, ratings = chinese_reviews()

    result = train_sentiment(texts[:12], ratings[:12])

    assert result.status == "skipped"
    assert result.reason == "only 12 rated reviews with text; sentiment needs at least 30"
    assert result.model is None and result.champion == "" and result.candidates == {}
    assert result.metrics["status"] == "skipped"
    with pytest.raises(ValueError, match="no sentiment model"):
        result.save(Path("unused"))


def test_unrated_and_single_class_reviews_are_skipped_with_a_reason() -> None:
    unrated = train_sentiment(["nice"] * 50, [None] * 50)
    all_positive = train_sentiment([f"great tent number {i}" for i in range(50)], [5] * 50)

    assert unrated.reason == "only 0 rated reviews with text; sentiment needs at least 30"
    assert all_positive.status == "skipped"
    assert all_positive.reason == "every rated review is positive; sentiment needs at least two classes"
    assert all_positive.label_counts == {"negative": 0, "neutral": 0, "positive": 50}


REVIEWS_CSV = """customer_id,review_id,created_at,text,rating
c1,r1,2024-01-20,Love these boots. Solid build and quick delivery.,5
c1,r2,2024-02-20,"Broke the first time I used it. Returning it.",
c2,r3,2024-03-01,"Great fit, but delivery took almost two weeks. It's okay.",3
c2,r4,2024-03-05,Highly recommend. Worth every penny.,
c3,r5,2024-03-09,Support was rude and refused the exchange. Save your money.,1
c3,r6,2024-03-10,No comment.,4
"""


@pytest.mark.django_db
def test_score_reviews_fills_every_review_of_the_tenant_only(tenant_a: Tenant, tenant_b: Tenant, tmp_path: Path) -> None:
    # Given two shops with reviews, some unrated, and a model trained on English reviews
    from customers.services.imports import import_csv

    assert import_csv(tenant_a, "reviews", write_csv(tmp_path / "a.csv", REVIEWS_CSV)).ok
    assert import_csv(tenant_b, "reviews", write_csv(tmp_path / "b.csv", REVIEWS_CSV)).ok
    with tenant_context(tenant_a):
        Review.objects.filter(external_id="r6").update(text="")
    model = NgramSentimentModel.train(*rated_examples(*english_reviews()))
    steps: list[float] = []

    # When shop A's reviews are scored in chunks of two
    counts = score_reviews(tenant_a, model, progress=lambda fraction, message: steps.append(fraction), chunk_size=2)

    # Then every review has a label and a score: a rated one its stars' (its text may even be
    # empty), an unrated one the model's
    with tenant_context(tenant_a):
        scored = {r.external_id: (r.rating, r.sentiment, r.sentiment_score) for r in Review.objects.all()}
    assert sum(counts.values()) == 6
    assert counts["blank"] == 0
    assert scored["r6"] == (4, "positive", 0.5) and scored["r3"] == (3, "neutral", 0.0) and scored["r5"] == (1, "negative", -1.0)
    for external_id in ("r1", "r2", "r3", "r4", "r5"):
        _, sentiment, score = scored[external_id]
        assert sentiment in LABELS
        assert score is not None and -1.0 <= score <= 1.0
    assert scored["r2"][0] is None and scored["r2"][1] == "negative"
    assert scored["r4"][0] is None and scored["r4"][1] == "positive"
    assert scored["r1"][2] > 0 > scored["r5"][2]
    assert steps == [pytest.approx(2 / 6), pytest.approx(4 / 6), 1.0]
    # And shop B's reviews were not touched
    with tenant_context(tenant_b):
        assert set(Review.objects.values_list("sentiment", "sentiment_score")) == {("", None)}


@pytest.mark.django_db
def test_review_texts_and_ratings_reads_the_tenant_oldest_first(shop_a_data: Tenant, shop_b_data: Tenant) -> None:
    texts, ratings = review_texts_and_ratings(shop_a_data)

    assert texts == ["Great fit but slow delivery", "Socks wore out after a week"]
    assert ratings == [4, 1]


def test_stars_outrank_the_text_model_and_a_model_below_the_majority_class_does_not_serve() -> None:
    # A model that reads a 5-star review as negative does not overrule the stars
    model = NgramSentimentModel.train(*rated_examples(*english_reviews()))
    text = "Support was rude and refused the exchange. Save your money."
    assert sentiment_of(model, [text])[0][0] == "negative"
    assert sentiment_of(model, [text], [5])[0] == ("positive", 1.0)
    assert sentiment_of(model, [text, ""], [None, None])[1] == ("", None)


@pytest.mark.django_db
def test_a_sentiment_model_that_loses_to_the_majority_class_is_not_served(tenant_a: Tenant, settings: Any, tmp_path: Path) -> None:
    settings.MODEL_DIR = tmp_path / "models"
    # Given reviews whose texts say nothing about their stars (the same few words and 37 order numbers, each under several ratings)
    import pandas as pd

    from modeling import registry
    from modeling.features import load_history
    from modeling.sentiment_training import train_sentiment_champion
    from modeling.training import TrainingReport

    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="c1")
        for i in range(120):
            Review.objects.create(customer=customer, external_id=f"r{i}", text=f"Order number {i % 37}", rating=5 if i % 5 else 1,
                                  created_at=pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=i))
    report = TrainingReport(as_of=dt.date(2024, 3, 1), horizon_days=90)
    served = train_sentiment_champion(tenant_a, load_history(tenant_a, ceiling=dt.date(2024, 3, 1)), dt.date(2024, 3, 1), "t1", report, lambda f, m="": None)
    assert served is None and any("no model beat always answering 'positive'" in line for line in report.skipped)
    assert registry.active_versions(tenant_a).get("sentiment") is None
