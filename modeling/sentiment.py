"""Review sentiment, learned from each tenant's own rated reviews.

Star ratings are weak labels (1–2 negative, 3 neutral, 4–5 positive). Two candidates are
fitted on the same split and the better one on the held-out part serves:

* ``ngram``: TF-IDF over character and word n-grams with a linear classifier. Character
  n-grams need no word segmentation, so Chinese works as well as English. On 8k Chinese
  reviews it reached 0.88 accuracy where one epoch of fine-tuning the default English
  encoder reached 0.70, which is why it is a candidate and not just a fallback.
* ``transformer``: :class:`modeling.encoder.TextClassifier`, fine-tuned from the
  configured encoder. With a language-appropriate pretrained model it should win.

The champion serves only if it beats the majority class on held-out reviews. It reads the
unrated reviews and writes ``Review.sentiment`` and ``Review.sentiment_score`` =
P(positive) − P(negative); a rated review takes its stars' class and (stars − 3) / 2.
Weights are stored as JSON and safetensors with a sha256 manifest, never pickled;
:func:`load_sentiment_model` loads either kind.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from clmsite.tenancy import tenant_context
from modeling.jobs import JobCancelled
from modeling.metrics import classification_metrics
from modeling.registry import sha256_file

if TYPE_CHECKING:
    from clmsite.models import Tenant

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2
LABELS = ("negative", "neutral", "positive")  # index = class id = predict_proba column

# Below this many rated reviews (with text) a 20% validation split holds a handful of
# reviews, too few to tell a model from the majority class, so nothing is trained.
MIN_RATED_REVIEWS = 30
# Fine-tuning on 2 CPU cores is the slow part of a retrain; the encoder stops at this budget.
DEFAULT_TRANSFORMER_SECONDS = 600.0
SCORE_CHUNK = 1000
# Both kinds of saved model carry manifest.json with a "kind": ours, or the encoder's.
MANIFEST = "manifest.json"
TRANSFORMER_KIND = "text-classifier"
NGRAM_FORMAT = 1
NGRAM_FILES = ("settings.json", "weights.safetensors", "vocabulary_char.json", "vocabulary_word.json")
# A macro-F1 lead smaller than this counts as a tie, and ties go to the n-gram model: on a
# few hundred validation reviews one review more or less moves the score by about this
# much, and the transformer costs far more to retrain and to score.
TIE_MARGIN = 0.01
# Share of the transformer's training part it early-stops on, so that it never sees the
# validation part both candidates are judged on.
EARLY_STOPPING_FRACTION = 0.1


def _no_progress(fraction: float, message: str = "") -> None:
    return None


def weak_label(rating: int | None) -> int | None:
    """The class a star rating stands for, or None for an unrated (or invalid) review."""
    if rating is None:
        return None
    if 1 <= rating <= 2:
        return NEGATIVE
    if rating == 3:
        return NEUTRAL
    if 4 <= rating <= 5:
        return POSITIVE
    return None


class SentimentModel(Protocol):
    """What both candidates offer: class probabilities in LABELS order, and safe saving."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, directory: Path) -> dict[str, Any]: ...


class SentimentModelCorrupt(ValueError):
    """A saved model's files do not match its manifest (changed, truncated or missing)."""


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# --- The n-gram candidate ----------------------------------------------------------------


@dataclass
class NgramSettings:
    # char_wb n-grams of 1–4: single Chinese characters carry meaning, 4 covers short
    # English words and stems. Word n-grams add negations and phrases ("not worth").
    char_ngram: tuple[int, int] = (1, 4)
    word_ngram: tuple[int, int] = (1, 2)
    # An n-gram seen in one review only is mostly noise and would bloat the vocabulary.
    min_df: int = 2
    max_features: int = 200_000
    # Star ratings are noisy labels, so no weaker regularisation than the default: C=4
    # and 10 scored lower macro-F1 than 1 on both test fixtures, 0.5 about the same.
    c: float = 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            "char_ngram": list(self.char_ngram),
            "word_ngram": list(self.word_ngram),
            "min_df": self.min_df,
            "max_features": self.max_features,
            "c": self.c,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NgramSettings:
        return cls(
            char_ngram=(int(data["char_ngram"][0]), int(data["char_ngram"][1])),
            word_ngram=(int(data["word_ngram"][0]), int(data["word_ngram"][1])),
            min_df=int(data["min_df"]),
            max_features=int(data["max_features"]),
            c=float(data["c"]),
        )


def _vectorizers(settings: NgramSettings, min_df: int) -> dict[str, TfidfVectorizer]:
    common: dict[str, Any] = {"sublinear_tf": True, "lowercase": True, "dtype": np.float64}
    return {
        "char": TfidfVectorizer(
            analyzer="char_wb", ngram_range=settings.char_ngram, min_df=min_df, max_features=settings.max_features, **common
        ),
        "word": TfidfVectorizer(
            analyzer="word", ngram_range=settings.word_ngram, min_df=min_df, max_features=settings.max_features, **common
        ),
    }


class NgramSentimentModel:
    """TF-IDF (char_wb + word n-grams, sublinear tf) and a multinomial logistic regression.

    Probabilities are computed here as softmax(X·Wᵀ + b) from the stored weights, the
    same before and after saving, so a loaded model reproduces them exactly without
    rebuilding a scikit-learn classifier object.
    """

    kind = "ngram"
    strategy = "tfidf-char-word-logreg"

    def __init__(
        self,
        settings: NgramSettings,
        vectorizers: dict[str, TfidfVectorizer],
        coef: np.ndarray,
        intercept: np.ndarray,
        classes: list[int],
    ) -> None:
        self.settings = settings
        self.vectorizers = vectorizers
        self.coef = coef  # (classes, features)
        self.intercept = intercept  # (classes,)
        self.classes = classes  # class ids of coef's rows: a tenant may lack one class
        self.info: dict[str, Any] = {
            "features": {name: len(v.vocabulary_) for name, v in vectorizers.items()},
            "classes": [LABELS[c] for c in classes],
        }

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[int], *, settings: NgramSettings | None = None, seed: int = 0) -> NgramSentimentModel:
        settings = settings or NgramSettings()
        present = sorted(set(labels))
        if len(present) < 2:
            raise ValueError("sentiment needs at least two classes of rated reviews")
        # min_df=2 would leave tiny tenants with an empty vocabulary.
        min_df = settings.min_df if len(texts) >= 100 else 1
        vectorizers = _vectorizers(settings, min_df)
        x = sp.hstack([v.fit_transform(texts) for v in vectorizers.values()], format="csr")
        # class_weight="balanced": most reviews are positive, and a model that never says
        # "neutral" would look fine on accuracy and useless on macro-F1.
        classifier = LogisticRegression(C=settings.c, class_weight="balanced", max_iter=2000, random_state=seed)
        classifier.fit(x, list(labels))
        coef, intercept = classifier.coef_, classifier.intercept_
        if len(present) == 2:
            # Binary logistic regression keeps one row w: P(second) = sigmoid(w·x + b),
            # which is softmax over the rows (0, w).
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros_like(intercept), intercept])
        classes = [int(c) for c in classifier.classes_]
        return cls(settings, vectorizers, np.ascontiguousarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64), classes)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float64)
        x = sp.hstack([v.transform(texts) for v in self.vectorizers.values()], format="csr")
        present = _softmax(np.asarray(x @ self.coef.T) + self.intercept)
        probabilities = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        probabilities[:, self.classes] = present
        return probabilities

    def save(self, directory: Path) -> dict[str, Any]:
        """Write vocabularies and settings as JSON, idf and weights as safetensors, and
        a manifest of their sha256 that :meth:`load` checks before reading anything."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"coef": self.coef, "intercept": self.intercept}
        for name, vectorizer in self.vectorizers.items():
            tensors[f"idf_{name}"] = np.asarray(vectorizer.idf_, dtype=np.float64)
            vocabulary = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
            (directory / f"vocabulary_{name}.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        save_file(tensors, str(directory / "weights.safetensors"))
        settings = {"format": NGRAM_FORMAT, "settings": self.settings.as_json(), "classes": self.classes}
        (directory / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        manifest = {
            "format": NGRAM_FORMAT,
            "kind": self.kind,
            "strategy": self.strategy,
            "files": {name: sha256_file(directory / name) for name in NGRAM_FILES},
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    @classmethod
    def load(cls, directory: Path) -> NgramSentimentModel:
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("kind") != cls.kind:
            raise SentimentModelCorrupt(f"{directory} holds a {manifest.get('kind')!r} model, not an n-gram one")
        listed = manifest.get("files", {})
        for name in NGRAM_FILES:
            # Every file is required to be listed: a manifest that leaves one out would let
            # that file be read unchecked.
            path = directory / name
            if name not in listed or not path.is_file() or sha256_file(path) != listed[name]:
                raise SentimentModelCorrupt(f"{name} in {directory} does not match its checksum")
        data = json.loads((directory / "settings.json").read_text(encoding="utf-8"))
        if data["format"] != NGRAM_FORMAT:
            raise SentimentModelCorrupt(f"unknown n-gram model format {data['format']!r}")
        settings = NgramSettings.from_json(data["settings"])
        tensors = load_file(str(directory / "weights.safetensors"))
        vectorizers = _vectorizers(settings, settings.min_df)
        for name, vectorizer in vectorizers.items():
            vocabulary = json.loads((directory / f"vocabulary_{name}.json").read_text(encoding="utf-8"))
            # A fixed vocabulary plus idf_ is a fitted TfidfVectorizer: the idf_ setter
            # validates the vocabulary and builds the inner TfidfTransformer.
            vectorizer.vocabulary = vocabulary
            vectorizer.idf_ = tensors[f"idf_{name}"]
        return cls(settings, vectorizers, tensors["coef"], tensors["intercept"], [int(c) for c in data["classes"]])


# --- Saving and loading either candidate -------------------------------------------------


def load_sentiment_model(directory: Path) -> SentimentModel:
    """Load a saved model of either kind, dispatching on the ``kind`` in its manifest.

    Both loaders verify every file's sha256 before reading it."""
    directory = Path(directory)
    kind = json.loads((directory / MANIFEST).read_text(encoding="utf-8")).get("kind")
    if kind == NgramSentimentModel.kind:
        return NgramSentimentModel.load(directory)
    if kind == TRANSFORMER_KIND:
        from modeling.encoder import TextClassifier

        model: SentimentModel = TextClassifier.load(directory)
        return model
    raise SentimentModelCorrupt(f"unknown sentiment model kind {kind!r} in {directory}")


# --- Training: champion and challenger ---------------------------------------------------


def sentiment_metrics(labels: Sequence[int], predicted: Sequence[int]) -> dict[str, Any]:
    """Accuracy, macro-F1 and F1 per class; a class neither present nor predicted has no
    F1 (None) and is left out of the macro average."""
    per_class = f1_score(list(labels), list(predicted), labels=list(range(len(LABELS))), average=None, zero_division=0)
    seen = set(labels) | set(predicted)
    return {
        **classification_metrics(list(labels), list(predicted)),
        "f1": {name: round(float(per_class[index]), 4) if index in seen else None for index, name in enumerate(LABELS)},
    }


@dataclass
class CandidateResult:
    kind: str
    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    model: SentimentModel | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "seconds": round(self.seconds, 2), **self.metrics}
        if self.info:
            data["info"] = self.info
        if self.error:
            data["error"] = self.error
        return data


@dataclass
class SentimentTrainingResult:
    """Both candidates' validation scores, the majority baseline's, and the champion.

    ``status`` is "trained" or "skipped"; a skipped result says why in ``reason`` and has
    no model. ``metrics`` and ``baseline_metrics`` are JSON-ready for ModelVersion."""

    status: str
    reason: str = ""
    champion: str = ""
    candidates: dict[str, CandidateResult] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.status == "trained"

    @property
    def model(self) -> SentimentModel | None:
        return self.candidates[self.champion].model if self.champion else None

    @property
    def champion_metrics(self) -> dict[str, Any]:
        return self.candidates[self.champion].metrics if self.champion else {}

    @property
    def beats_baseline(self) -> bool:
        """Held-out macro-F1 and accuracy both above the majority class's."""
        scores = self.champion_metrics
        return bool(scores) and scores["macro_f1"] > self.baseline["macro_f1"] and scores["accuracy"] > self.baseline["accuracy"]

    @property
    def metrics(self) -> dict[str, Any]:
        if not self.trained:
            return {"status": self.status, "reason": self.reason, "label_counts": self.label_counts}
        return {
            "status": self.status,
            "champion": self.champion,
            **self.champion_metrics,
            "beats_baseline": self.beats_baseline,
            "candidates": {kind: candidate.as_json() for kind, candidate in self.candidates.items()},
            "label_counts": self.label_counts,
            "split": self.split,
        }

    @property
    def baseline_metrics(self) -> dict[str, Any]:
        return {"majority_class": self.baseline} if self.baseline else {}

    def save(self, directory: Path) -> dict[str, Any]:
        """Save the champion; returns its manifest (sha256 of every file, and its kind)."""
        model = self.model
        if model is None:
            raise ValueError(f"no sentiment model to save: {self.reason}")
        return model.save(directory)


def _text_key(text: str) -> str:
    """A review's text with case and spacing aside: "Great!" and "great! " are one text."""
    return " ".join(text.lower().split())


def _split(labels: list[int], valid_fraction: float, seed: int, texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Stratified random split, so a rare class (often neutral) is in both parts; the last
    value says whether it could be stratified (each class needs two texts). Reviews are weak
    labels of independent purchases, so a random split does not leak the way a customer-level
    time series would; but the same text twice ("Great!", a review posted again) would, so
    with ``texts`` identical texts (:func:`_text_key`) stay on one side."""
    keys = [_text_key(text) for text in texts] if texts is not None else list(range(len(labels)))
    label_of = dict(zip(reversed(keys), reversed(labels), strict=True))  # each text's first label
    if len(label_of) < 2:
        keys, label_of = list(range(len(labels))), dict(enumerate(labels))
    unique = list(label_of)
    unique_labels = [label_of[key] for key in unique]
    counts = Counter(unique_labels)
    stratify = unique_labels if min(counts.values()) >= 2 and len(unique) * valid_fraction >= len(counts) else None
    _, valid_keys = train_test_split(unique, test_size=valid_fraction, random_state=seed, stratify=stratify)
    chosen = set(valid_keys)
    in_valid = np.array([key in chosen for key in keys])
    return np.flatnonzero(~in_valid), np.flatnonzero(in_valid), stratify is not None


def _fit_candidate(kind: str, fit: Callable[[], SentimentModel], valid_texts: list[str], valid_labels: list[int]) -> CandidateResult:
    started = time.monotonic()
    try:
        model = fit()
        predicted = model.predict_proba(valid_texts).argmax(axis=1)
    except JobCancelled:
        raise  # a cancel stops the training, not one candidate
    except Exception as error:  # a failed challenger must not stop the champion from serving
        logger.exception("sentiment candidate %s failed", kind)
        return CandidateResult(kind, ok=False, seconds=time.monotonic() - started, error=f"{type(error).__name__}: {error}")
    info = {"strategy": getattr(model, "strategy", ""), **dict(getattr(model, "info", {}) or {})}
    return CandidateResult(kind, ok=True, metrics=sentiment_metrics(valid_labels, predicted.tolist()), seconds=time.monotonic() - started, info=info, model=model)


def _train_transformer(texts: list[str], labels: list[int], *, seed: int, max_seconds: float | None, progress: Progress) -> SentimentModel:
    from modeling.encoder import TextClassifier

    fit, stop, _ = _split(labels, EARLY_STOPPING_FRACTION, seed, texts)
    model: SentimentModel = TextClassifier.train(
        [texts[i] for i in fit],
        [labels[i] for i in fit],
        num_labels=len(LABELS),
        valid_texts=[texts[i] for i in stop],
        valid_labels=[labels[i] for i in stop],
        progress=progress,
        max_seconds=max_seconds,
        extend_vocab=True,
        seed=seed,
    )
    return model


def train_sentiment(
    texts: Sequence[str],
    ratings: Sequence[int | None],
    *,
    valid_fraction: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
    max_transformer_seconds: float | None = DEFAULT_TRANSFORMER_SECONDS,
    candidates: Sequence[str] = ("ngram", "transformer"),
) -> SentimentTrainingResult:
    """Fit both candidates on the rated reviews' training part and pick the champion by
    held-out macro-F1 (ties, within TIE_MARGIN, go to ngram, the cheaper one to run).

    Unrated reviews and reviews without text teach nothing and are left out here; they are
    scored later by :func:`score_reviews`. The transformer early-stops on a slice of the
    training part, never on the validation part, so the comparison stays fair.
    """
    report = progress or _no_progress
    rated = [(text, label) for text, rating in zip(texts, ratings, strict=True) if text and text.strip() and (label := weak_label(rating)) is not None]
    counts = Counter(label for _, label in rated)
    label_counts = {name: counts.get(index, 0) for index, name in enumerate(LABELS)}
    if len(rated) < MIN_RATED_REVIEWS:
        return SentimentTrainingResult(
            "skipped", reason=f"only {len(rated)} rated reviews with text; sentiment needs at least {MIN_RATED_REVIEWS}", label_counts=label_counts
        )
    if len(counts) < 2:
        only = LABELS[next(iter(counts))]
        return SentimentTrainingResult("skipped", reason=f"every rated review is {only}; sentiment needs at least two classes", label_counts=label_counts)
    distinct = len({_text_key(text) for text, _ in rated})
    if distinct < MIN_RATED_REVIEWS:  # the same text twice teaches once, and is held out or not as one
        return SentimentTrainingResult("skipped", reason=f"the {len(rated)} rated reviews have only {distinct} different texts; "
                                       f"sentiment needs at least {MIN_RATED_REVIEWS}", label_counts=label_counts)

    all_texts = [text for text, _ in rated]
    all_labels = [label for _, label in rated]
    train, valid, stratified = _split(all_labels, valid_fraction, seed, all_texts)
    train_texts, train_labels = [all_texts[i] for i in train], [all_labels[i] for i in train]
    valid_texts, valid_labels = [all_texts[i] for i in valid], [all_labels[i] for i in valid]
    if len(set(valid_labels)) < 2 or len(set(train_labels)) < 2:
        # One class on a side: a model could not be told from always answering it, or learn the other.
        held = ", ".join(f"{n} {name}" for name, n in label_counts.items() if n)
        return SentimentTrainingResult("skipped", reason=f"too few different texts of the rarer class ({held} rated reviews) to hold some out "
                                       "and check a model on both classes", label_counts=label_counts)

    # The majority class of the training part, scored on the validation part.
    majority = Counter(train_labels).most_common(1)[0][0]
    baseline = {"label": LABELS[majority], **sentiment_metrics(valid_labels, [majority] * len(valid_labels))}

    results: dict[str, CandidateResult] = {}
    if "ngram" in candidates:
        report(0.02, "Training the n-gram sentiment model")
        results["ngram"] = _fit_candidate("ngram", lambda: NgramSentimentModel.train(train_texts, train_labels, seed=seed), valid_texts, valid_labels)
    if "transformer" in candidates:
        report(0.1, "Fine-tuning the transformer sentiment model")
        results["transformer"] = _fit_candidate(
            "transformer",
            lambda: _train_transformer(
                train_texts, train_labels, seed=seed, max_seconds=max_transformer_seconds, progress=lambda f, m="": report(0.1 + 0.85 * f, m)
            ),
            valid_texts,
            valid_labels,
        )
    fitted = [kind for kind in ("ngram", "transformer") if kind in results and results[kind].ok]
    split = {"method": "stratified_random" if stratified else "random", "seed": seed, "valid_fraction": valid_fraction, "train": len(train), "valid": len(valid)}
    if not fitted:
        errors = "; ".join(f"{kind}: {r.error}" for kind, r in results.items())
        return SentimentTrainingResult(
            "skipped", reason=f"no candidate trained ({errors or 'none requested'})", candidates=results, baseline=baseline, label_counts=label_counts, split=split
        )
    champion = "ngram" if "ngram" in fitted else "transformer"
    if champion == "ngram" and "transformer" in fitted:
        lead = results["transformer"].metrics["macro_f1"] - results["ngram"].metrics["macro_f1"]
        champion = "transformer" if lead >= TIE_MARGIN else "ngram"
    report(1.0, f"Sentiment: {champion} serves (macro-F1 {results[champion].metrics['macro_f1']:.3f})")
    return SentimentTrainingResult(
        "trained", champion=champion, candidates=results, baseline=baseline, label_counts=label_counts, split=split
    )


# --- Applying the champion ---------------------------------------------------------------


def review_texts_and_ratings(tenant: Tenant) -> tuple[list[str], list[int | None]]:
    """The tenant's reviews as (texts, ratings), oldest first: the input of train_sentiment."""
    from customers.models import Review

    with tenant_context(tenant):
        rows = list(Review.objects.order_by("created_at", "pk").values_list("text", "rating"))
    return [text for text, _ in rows], [rating for _, rating in rows]


def sentiment_of(model: SentimentModel, texts: Sequence[str], ratings: Sequence[int | None] | None = None) -> list[tuple[str, float | None]]:
    """Per review, its label and score in [-1, 1]. A rated review takes its stars' class and
    (stars - 3) / 2: the customer's own verdict, which a text model trained on a few hundred
    weak labels must not overrule (it read "Nice mug, solid and pretty", 5 stars, as negative).
    The model reads the unrated ones: P(positive) - P(negative). A blank unrated text gets a
    blank label and no score: the model would only echo its class prior, and that would pull
    the customer's sentiment aggregates towards "positive" for people who said nothing."""
    ratings = list(ratings) if ratings is not None else [None] * len(texts)
    result: list[tuple[str, float | None]] = [
        (LABELS[label], (int(rating) - 3) / 2) if (label := weak_label(rating)) is not None else ("", None) for rating in ratings
    ]
    with_text = [i for i, text in enumerate(texts) if text.strip() and not result[i][0]]
    if with_text:
        for i, row in zip(with_text, model.predict_proba([texts[i] for i in with_text]), strict=True):
            result[i] = (LABELS[int(row.argmax())], float(np.clip(row[POSITIVE] - row[NEGATIVE], -1.0, 1.0)))
    return result


def score_reviews(tenant: Tenant, model: SentimentModel, *, progress: Progress | None = None, chunk_size: int = SCORE_CHUNK) -> dict[str, int]:
    """Write sentiment and sentiment_score (see ``sentiment_of``: stars for a rated review, the
    model for an unrated one) on every review of ``tenant``. Returns the count per label and "blank"."""
    from customers.models import Review

    report = progress or _no_progress
    counts = dict.fromkeys((*LABELS, "blank"), 0)
    with tenant_context(tenant):
        total = Review.objects.count()
        done, last_pk = 0, 0
        while True:
            # Keyset pagination: the chunks stay cheap however many reviews there are.
            chunk = list(Review.objects.filter(pk__gt=last_pk).order_by("pk").only("pk", "text", "rating")[:chunk_size])
            if not chunk:
                break
            last_pk = chunk[-1].pk
            for review, (label, score) in zip(chunk, sentiment_of(model, [r.text for r in chunk], [r.rating for r in chunk]), strict=True):
                review.sentiment, review.sentiment_score = label, score
            Review.objects.bulk_update(chunk, ["sentiment", "sentiment_score"])
            for review in chunk:
                counts[review.sentiment or "blank"] += 1
            done += len(chunk)
            report(done / total, f"Scored sentiment of {done} of {total} reviews")
    return counts
