"""The shared encoder, the text classifier, profiles and the transformer family.

Everything runs offline on the packaged all-MiniLM-L6-v2 with small data, on CPU.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from modeling import encoder as enc
from modeling.encoder import EmbeddingCache, TextClassifier
from modeling.families.base import PREDICTION_COLUMNS, TrainingData
from modeling.families.transformer import TransformerModel
from modeling.features import examples, features_as_of, history_from_frames, labels_after, plan_windows
from modeling.profiles import customer_profiles, profile_hash

POSITIVE = ["great product, love it", "excellent quality and fast delivery", "works perfectly, very happy", "amazing fit, would buy again", "superb, highly recommend"]
NEGATIVE = ["terrible, broke after a day", "awful quality, very disappointed", "slow delivery and rude support", "waste of money, do not buy", "poor fit and cheap material"]
SUFFIXES = ["", " overall", " honestly", " for me", " this time", " again"]


def sentiment_examples(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        pool = POSITIVE if label else NEGATIVE
        texts.append(pool[rng.integers(len(pool))] + SUFFIXES[rng.integers(len(SUFFIXES))])
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def encoder() -> tuple[Any, torch.nn.Module]:
    return enc.load_encoder()


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    texts, labels = sentiment_examples(120, seed=0)
    valid_texts, valid_labels = sentiment_examples(20, seed=1)
    return TextClassifier.train(texts, labels, num_labels=2, valid_texts=valid_texts, valid_labels=valid_labels, max_seconds=60, seed=0)


@pytest.fixture(scope="module")
def saved_classifier(classifier: TextClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("classifier") / "model"
    classifier.save(directory)
    return directory


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# --- Encoder and fast embedding --------------------------------------------------------


def test_pretrained_encoder_loads_offline_and_places_similar_sentences_closer(encoder: tuple[Any, torch.nn.Module]) -> None:
    tokenizer, model = encoder
    vectors = enc.embed_texts(["The shoes fit well and arrived fast.", "Great fit, quick delivery.", "Quarterly tax filing deadlines for corporations."], tokenizer, model)
    assert vectors.shape == (3, 384)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2


def test_fast_embed_matches_the_plain_fp32_loop(encoder: tuple[Any, torch.nn.Module]) -> None:
    tokenizer, model = encoder
    texts = [f"Customer for {i} months. {i % 4 + 1} orders." + " Bought socks." * (i % 5) for i in range(1, 12)]
    plain = enc.plain_embed_texts(texts, tokenizer, model, batch_size=4)
    fast = enc.embed_texts(texts, tokenizer, enc.inference_model(model, torch.device("cpu"), quantize=False), batch_size=4)
    quantized = enc.embed_texts(texts, tokenizer, enc.inference_model(model, torch.device("cpu"), quantize=True), batch_size=4)
    assert np.allclose(fast, plain, atol=1e-4)
    assert cosine(quantized, plain).min() > 0.98


def test_an_int8_vector_is_the_texts_own_whatever_the_order_or_the_cache(encoder: tuple[Any, torch.nn.Module]) -> None:
    """Dynamic int8 scales activations per batch: in batches, a text's vector moved with its
    batch-mates (and so did the number of learned segments). Each text alone, it does not."""
    tokenizer, model = encoder
    quantized = enc.inference_model(model, torch.device("cpu"), quantize=True)
    assert enc.solo_batches(quantized) and not enc.solo_batches(model)
    texts = [f"Customer for {i} months. {i % 4 + 1} orders." + " Bought socks." * (i % 5) for i in range(1, 20)]
    forward = enc.embed_texts(texts, tokenizer, quantized)
    backward = enc.embed_texts(texts[::-1], tokenizer, quantized)[::-1]
    cache = enc.EmbeddingCache("test")
    enc.embed_texts(texts[::3], tokenizer, quantized, cache=cache)  # a third already cached
    partly_cached = enc.embed_texts(texts, tokenizer, quantized, cache=cache)
    assert np.array_equal(forward, backward) and np.array_equal(forward, partly_cached)


class CountingModel(torch.nn.Module):
    """Wraps an encoder and counts the rows it embeds."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.rows = 0

    def forward(self, **inputs: Any) -> Any:
        self.rows += int(inputs["input_ids"].shape[0])
        return self.model(**inputs)


def test_embedding_cache_reembeds_only_changed_texts(encoder: tuple[Any, torch.nn.Module], tmp_path: Path) -> None:
    tokenizer, model = encoder
    counting = CountingModel(model)
    texts = [f"Customer {i} bought running shoes." for i in range(20)]
    cache = EmbeddingCache("ns-1", tmp_path / "cache.safetensors")
    first = enc.embed_texts(texts, tokenizer, counting, cache=cache)
    assert counting.rows == 20
    changed = [*texts[:-1], "Customer 19 now buys jackets."]
    second = enc.embed_texts(changed, tokenizer, counting, cache=cache)
    assert counting.rows == 21
    assert np.array_equal(second[:-1], first[:-1])
    cache.save()
    reopened = EmbeddingCache("ns-1", tmp_path / "cache.safetensors")
    assert len(reopened) == 21
    assert np.array_equal(reopened.get(enc.text_hash(texts[0])), first[0])
    assert len(EmbeddingCache("another-model", tmp_path / "cache.safetensors")) == 0


def test_embedding_cache_forgets_the_least_recently_used_beyond_its_bound() -> None:
    cache = EmbeddingCache("ns", max_entries=2)
    cache.put("a", np.zeros(3))
    cache.put("b", np.ones(3))
    cache.get("a")
    cache.put("c", np.full(3, 2.0))
    assert sorted(cache.vectors) == ["a", "c"]


def test_safetensors_helpers_check_the_sha256(tmp_path: Path) -> None:
    digest = enc.save_safetensors({"w": torch.arange(4.0)}, tmp_path / "w.safetensors")
    assert digest == enc.sha256_file(tmp_path / "w.safetensors")
    assert torch.equal(enc.load_safetensors(tmp_path / "w.safetensors", digest)["w"], torch.arange(4.0))
    with pytest.raises(ValueError, match="sha256"):
        enc.load_safetensors(tmp_path / "w.safetensors", "0" * 64)


def test_choose_strategy_uses_lora_for_small_cpu_data_and_a_frozen_encoder_for_large() -> None:
    cpu = torch.device("cpu")
    assert enc.choose_strategy(cpu, 100, max_seconds=240).name == "lora"
    assert enc.choose_strategy(cpu, 50_000, max_seconds=240).name == "frozen-head"
    assert enc.choose_strategy(cpu, 50_000, max_seconds=240, new_tokens=True).name == "lora"


# --- TextClassifier --------------------------------------------------------------------


def test_text_classifier_beats_the_majority_baseline_on_held_out_texts(classifier: TextClassifier) -> None:
    texts, labels = sentiment_examples(40, seed=2)
    probabilities = classifier.predict_proba(texts)
    accuracy = float((probabilities.argmax(axis=1) == np.array(labels)).mean())
    assert probabilities.shape == (40, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert accuracy > 0.5 + 0.2
    assert classifier.strategy == "lora"
    assert {"device", "strategy", "base_model", "epochs", "seconds", "vocab_added"} <= set(classifier.info)


def test_text_classifier_round_trips_with_identical_probabilities(classifier: TextClassifier, saved_classifier: Path) -> None:
    texts, _ = sentiment_examples(10, seed=3)
    manifest = json.loads((saved_classifier / "manifest.json").read_text())
    loaded = TextClassifier.load(saved_classifier)
    assert np.allclose(loaded.predict_proba(texts), classifier.predict_proba(texts), atol=1e-6)
    assert manifest["kind"] == "text-classifier"
    assert "weights.safetensors" in manifest["files"]
    assert not [p for p in saved_classifier.rglob("*") if p.suffix in enc.PICKLE_SUFFIXES]


def test_a_tampered_weights_file_is_refused(saved_classifier: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    _copy_tree(saved_classifier, copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        TextClassifier.load(copy)


class Payload:
    """Unpickling this touches ``marker``: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_and_never_runs(saved_classifier: Path, tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))  # noqa: S301 — shows the payload really runs when unpickled
    assert proof.exists()
    copy = tmp_path / "model"
    _copy_tree(saved_classifier, copy)
    marker = tmp_path / "pwned"
    (copy / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="pickle"):
        TextClassifier.load(copy)
    assert not marker.exists()


def test_extend_vocab_removes_unknown_tokens_for_chinese_text(encoder: tuple[Any, torch.nn.Module]) -> None:
    tokenizer, _ = encoder
    texts = ["这个产品质量很好，非常满意", "质量太差了，用了两天就坏", "物流很快，包装完好，好评", "客服态度恶劣，再也不买了"] * 3
    labels = [1, 0, 1, 0] * 3
    unknown_before = sum(ids.count(tokenizer.unk_token_id) for ids in tokenizer(texts)["input_ids"])
    model = TextClassifier.train(texts, labels, num_labels=2, max_seconds=20, seed=0)
    extended = model.encoder.tokenizer
    unknown_after = sum(ids.count(extended.unk_token_id) for ids in extended(texts)["input_ids"])
    assert unknown_before > 50
    assert unknown_after == 0
    assert model.info["vocab_added"] == len(enc.unknown_tokens(tokenizer, texts))


# --- Profiles --------------------------------------------------------------------------


def test_profile_describes_the_customer_with_rounded_numbers() -> None:
    history = tiny_history()
    as_of = dt.date(2024, 3, 31)
    profiles = customer_profiles(history, as_of, features_as_of(history, as_of))
    assert profiles.loc[1] == (
        "First order 3 months ago. 3 orders, last one 4 weeks ago, usually every 4 weeks. Spent $240 (avg $80). "
        "Ordering more than before. Bought Running shoes, Socks (Trail Runner 2, Merino socks). "
        "Reviews: 1, avg 5 stars, positive tone; latest: ‘great fit but slow delivery’."
    )
    assert profile_hash(profiles.loc[1]) == enc.text_hash(profiles.loc[1])


def test_profile_ignores_everything_after_as_of() -> None:
    as_of = dt.date(2024, 3, 31)
    before = tiny_history()
    after = tiny_history(extra_after_as_of=True)
    profile_before = customer_profiles(before, as_of, features_as_of(before, as_of))
    profile_after = customer_profiles(after, as_of, features_as_of(after, as_of))
    assert profile_after.equals(profile_before)


def tiny_history(*, extra_after_as_of: bool = False) -> Any:
    orders = [(1, "2024-01-01", 100.0, "Running shoes", "Trail Runner 2"), (1, "2024-02-10", 80.0, "Socks", "Merino socks"), (1, "2024-03-01", 60.0, "Running shoes", "Trail Runner 2"), (2, "2024-03-20", 25.0, "Socks", "Ankle socks")]
    reviews = [(1, 1, "2024-02-15", 5, "great fit but slow delivery", 0.8)]
    if extra_after_as_of:
        orders.append((1, "2024-04-02", 500.0, "Jackets", "Down jacket"))
        reviews.append((2, 1, "2024-04-05", 1, "terrible jacket", -0.9))
    frame = pd.DataFrame(orders, columns=["customer", "ordered_at", "amount", "category", "product"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True)
    lines = frame.assign(quantity=1)[["customer", "ordered_at", "category", "product", "quantity", "amount"]]
    review_frame = pd.DataFrame(reviews, columns=["review", "customer", "created_at", "rating", "text", "sentiment_score"])
    review_frame["created_at"] = pd.to_datetime(review_frame["created_at"], utc=True)
    return history_from_frames(frame[["customer", "ordered_at", "amount"]], lines=lines, reviews=review_frame)


# --- The transformer family ---------------------------------------------------------------

CATEGORIES = {"Running shoes": ["Trail Runner 2", "Road Racer"], "Socks": ["Merino socks"], "Jackets": ["Rain shell", "Down jacket"]}


def synthetic_history(n_customers: int, seed: int = 0) -> Any:
    """Customers with their own order rate, favourite category and occasional reviews."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01", tz="UTC")
    orders, reviews = [], []
    for customer in range(1, n_customers + 1):
        rate = rng.gamma(1.5, 1 / 50)
        favourite = list(CATEGORIES)[rng.integers(len(CATEGORIES))]
        day = rng.uniform(0, 250)
        while day < 520:
            when = start + pd.Timedelta(days=float(day))
            product = CATEGORIES[favourite][rng.integers(len(CATEGORIES[favourite]))]
            orders.append((customer, when, float(np.round(rng.gamma(2, 30), 2)), favourite, product))
            if rng.random() < 0.3:
                happy = rng.random() < 0.7
                reviews.append((len(reviews) + 1, customer, when + pd.Timedelta(days=2), 5 if happy else 2, "love them" if happy else "fell apart", 0.8 if happy else -0.7))
            day += rng.exponential(1 / rate)
    frame = pd.DataFrame(orders, columns=["customer", "ordered_at", "amount", "category", "product"])
    lines = frame.assign(quantity=1)[["customer", "ordered_at", "category", "product", "quantity", "amount"]]
    review_frame = pd.DataFrame(reviews, columns=["review", "customer", "created_at", "rating", "text", "sentiment_score"])
    return history_from_frames(frame[["customer", "ordered_at", "amount"]], lines=lines, reviews=review_frame)


def training_data(n_customers: int, settings: dict[str, Any]) -> TrainingData:
    history = synthetic_history(n_customers)
    horizon = 60
    train_windows, validation = plan_windows(history, dt.date(2024, 6, 1), horizon, max_train_windows=2)
    x_train, y_train = examples(history, train_windows)
    x_valid = features_as_of(history, validation.cutoff)
    y_valid = labels_after(history, validation.cutoff, horizon, x_valid.index)
    return TrainingData(history, horizon, train_windows, validation, x_train, y_train, x_valid, y_valid, settings)


@pytest.mark.parametrize(("n_customers", "strategy"), [(60, "frozen-head"), (25, "lora")])
def test_transformer_model_fits_predicts_saves_loads_and_refuses_tampering(n_customers: int, strategy: str, tmp_path: Path) -> None:
    data = training_data(n_customers, {"max_train_seconds": 8, "transformer_strategy": strategy})
    messages: list[tuple[float, str]] = []
    model = TransformerModel()
    model.fit(data, progress=lambda fraction, message="": messages.append((fraction, message)))
    predictions = model.predict(data.history, data.validation.cutoff, data.x_valid)
    model.save(tmp_path / "model")
    loaded = TransformerModel.load(tmp_path / "model")
    reloaded = loaded.predict(data.history, data.validation.cutoff, data.x_valid)
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert predictions.index.equals(data.x_valid.index)
    assert predictions["purchase_probability"].between(0, 1).all()
    assert (predictions[["expected_orders", "expected_revenue"]] >= 0).all().all()
    assert np.allclose(reloaded.to_numpy(), predictions.to_numpy(), rtol=1e-5, atol=1e-6)
    assert model.hyperparameters()["strategy"] == strategy
    assert {"device", "base_model", "epochs", "seconds"} <= set(model.hyperparameters())
    assert messages[-1][0] == 1.0
    assert any("epoch" in message for _, message in messages)
    assert not [p for p in (tmp_path / "model").rglob("*") if p.suffix in enc.PICKLE_SUFFIXES]
    config = tmp_path / "model" / "model.json"
    config.write_text(config.read_text().replace('"revenue_scale": ', '"revenue_scale": 1'))
    with pytest.raises(ValueError, match="sha256"):
        TransformerModel.load(tmp_path / "model")


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


@pytest.mark.django_db
def test_transformer_family_trains_and_scores_through_the_services(tenant_a: Any, settings: Any, tmp_path: Path) -> None:
    from clmsite.tenancy import tenant_context
    from customers.services.demo import generate_shop, load_shop
    from modeling.models import ModelVersion, Prediction
    from modeling.registry import do_promote_model_version
    from modeling.scoring import score_customers
    from modeling.training import train_models

    end = dt.date(2025, 6, 30)
    settings.MODEL_DIR = tmp_path / "models"
    load_shop(tenant_a, generate_shop(customers=60, seed=3, end_date=end))
    tenant_a.settings = {"sentiment_candidates": ["ngram"], "max_train_seconds": 6}
    tenant_a.save()
    report = train_models(tenant_a, end, 60, family="transformer")
    with tenant_context(tenant_a):
        versions = list(ModelVersion.objects.filter(family="transformer"))
    assert "transformer" in report.trained
    assert {v.target for v in versions} == {"purchase", "orders", "revenue"}
    assert {v.strategy for v in versions} == {"frozen-head"}
    assert all(v.hyperparameters["device"] == "cpu" and v.hyperparameters["base_model"] for v in versions)
    for version in versions:
        do_promote_model_version(tenant_a, version.pk)
    scored = score_customers(tenant_a, end)
    with tenant_context(tenant_a):
        assert Prediction.objects.filter(as_of=end).count() == scored.scored > 0
        assert set(Prediction.objects.filter(as_of=end).values_list("model_versions", flat=True)[0].values()) == {v.pk for v in versions}
