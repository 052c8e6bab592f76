"""The transformer family: the customer's text profile, read by a pretrained encoder,
fused with the numeric features in a small network with three heads.

Why text at all when the features already carry the numbers: the profile adds what the
features flatten away — which categories and products, and what the customer wrote in
reviews. The numeric features go straight into the head (the encoder is poor at
arithmetic), standardised after log1p for counts, money and days.

Heads and losses (summed): purchase logit with binary cross-entropy; expected orders as a
log-rate with Poisson NLL; expected revenue as a log-rate on revenue / ``revenue_scale``
with the same Poisson quasi-likelihood. Poisson on a scaled continuous target is the
simplest loss whose optimum is the conditional *mean*, which is what campaign budgets need
(log1p regression would predict something nearer the median, well below the mean).

How the encoder trains comes from :func:`modeling.encoder.choose_strategy`: on this
project's 2-core CPU that is a frozen encoder with the head trained on cached int8
embeddings for anything but tiny data, LoRA for tiny data, and full fine-tuning with mixed
precision on CUDA.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch import nn

from modeling import encoder as enc
from modeling.families.base import (
    PREDICTION_COLUMNS,
    CustomerModel,
    Progress,
    TrainingData,
    no_progress,
)
from modeling.features import History, as_timestamp
from modeling.profiles import customer_profiles

DEFAULT_MAX_SECONDS = 240.0
# Early stopping needs a validation loss, not every validation customer: a capped sample
# keeps the embedding bill bounded on large tenants.
MAX_VALID_ROWS = 2000
# Share of the time budget the frozen strategy may spend embedding training profiles; the
# rest trains the head (seconds) and leaves headroom.
EMBED_BUDGET_SHARE = 0.8
EMBED_CHUNK = 256
WIDTH = 128
KIND = "transformer-customer-model"


class NumericScaler:
    """log1p for non-negative columns with a range beyond [0, 2] (counts, money, days),
    NaN -> 0 plus a missing indicator for columns that had gaps in training, then
    standardisation with the training mean and std. Plain lists, so it saves as JSON."""

    def __init__(self, columns: list[str], log_columns: list[str], indicator_columns: list[str], mean: list[float], std: list[float]) -> None:
        self.columns = columns
        self.log_columns = log_columns
        self.indicator_columns = indicator_columns
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> NumericScaler:
        columns = list(frame.columns)
        log_columns = [c for c in columns if frame[c].min(skipna=True) >= 0 and frame[c].max(skipna=True) > 2]
        indicator_columns = [c for c in columns if frame[c].isna().any()]
        scaler = cls(columns, log_columns, indicator_columns, [], [])
        raw = scaler._raw(frame)
        scaler.mean = raw.mean(axis=0)
        scaler.std = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
        return scaler

    @property
    def width(self) -> int:
        return len(self.columns) + len(self.indicator_columns)

    def _raw(self, frame: pd.DataFrame) -> np.ndarray:
        frame = frame.reindex(columns=self.columns).astype(float)
        indicators = frame[self.indicator_columns].isna().to_numpy(dtype=np.float64)
        values = frame.copy()
        for column in self.log_columns:
            values[column] = np.log1p(values[column].clip(lower=0))
        return np.hstack([values.fillna(0.0).to_numpy(dtype=np.float64), indicators])

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return ((self._raw(frame) - self.mean) / self.std).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns, "log_columns": self.log_columns, "indicator_columns": self.indicator_columns,
            "mean": self.mean.tolist(), "std": self.std.tolist(),
        }


class FusionNet(nn.Module):
    """[pooled text ‖ numeric] -> MLP -> (purchase logit, log orders, log revenue/scale)."""

    def __init__(self, hidden: int, numeric: int, width: int = WIDTH) -> None:
        super().__init__()
        self.hidden = hidden
        self.text_norm = nn.LayerNorm(hidden)
        self.body = nn.Sequential(nn.Linear(hidden + numeric, width), nn.GELU(), nn.Dropout(0.1), nn.Linear(width, width // 2), nn.GELU())
        self.heads = nn.Linear(width // 2, 3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` is [pooled ‖ numeric] (see :func:`fused_inputs`)."""
        text, numeric = inputs[:, : self.hidden].float(), inputs[:, self.hidden :].float()
        return self.heads(self.body(torch.cat([self.text_norm(text), numeric], dim=1)))

    def start_at_base_rates(self, purchase_rate: float, orders_rate: float, revenue_rate: float) -> None:
        """Output biases at the training means, so the first epochs learn differences
        instead of the overall level."""
        rate = min(max(purchase_rate, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.heads.bias.copy_(torch.tensor([math.log(rate / (1 - rate)), math.log(max(orders_rate, 1e-4)), math.log(max(revenue_rate, 1e-4))]))


def fused_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """targets columns: purchased, orders, revenue / revenue_scale."""
    outputs = outputs.float()
    purchase = nn.functional.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
    orders = nn.functional.poisson_nll_loss(outputs[:, 1], targets[:, 1], log_input=True, full=False)
    revenue = nn.functional.poisson_nll_loss(outputs[:, 2], targets[:, 2], log_input=True, full=False)
    return purchase + orders + revenue


class TransformerModel(CustomerModel):
    family: ClassVar[str] = "transformer"

    def __init__(self) -> None:
        self.encoder: enc.TunedEncoder | None = None
        self.net: FusionNet | None = None
        self.scaler: NumericScaler | None = None
        self.revenue_scale = 1.0
        self.info: dict[str, Any] = {}
        self.strategy = ""
        self.base_model = ""
        self.embedding_cache: enc.EmbeddingCache | None = None
        self._cache_path: Path | None = None

    # --- embeddings ---------------------------------------------------------------

    def use_embedding_cache(self, path: Path | str | None) -> None:
        """Keep embeddings in a safetensors file at ``path`` (per tenant, chosen by the
        caller) instead of in memory only; rescoring then re-embeds changed profiles only."""
        self._cache_path = Path(path) if path else None
        self.embedding_cache = None

    def _quantize(self) -> bool:
        return enc.pick_device().type == "cpu"

    def _cache(self) -> enc.EmbeddingCache:
        """The cache namespace is the encoder's version (base fingerprint, plus the learned
        delta when the encoder was fine-tuned), the max length and the precision, so a vector is
        only ever reused for exactly the model that would compute it."""
        assert self.encoder is not None
        if self.embedding_cache is None:
            device = enc.pick_device()
            model = self.encoder.scoring_model(device, quantize=self._quantize())
            # ":solo": vectors of texts embedded alone; those cached from batches are not reused
            namespace = f"{self.encoder.version()}:{enc.MAX_LENGTH}:{device.type}-{getattr(model, 'precision', 'native')}{':solo' if enc.solo_batches(model) else ''}"
            path = self._cache_path / f"{namespace[:16]}.safetensors" if self._cache_path else None
            self.embedding_cache = enc.EmbeddingCache(namespace, path)
        return self.embedding_cache

    def embed(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        """Profile embeddings by this model's (fine-tuned) encoder; segments cluster on them."""
        return self._embed(texts, progress)

    def _embed(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        assert self.encoder is not None
        device = enc.pick_device()
        model = self.encoder.scoring_model(device, quantize=self._quantize())
        return enc.embed_texts(texts, self.encoder.tokenizer, model, cache=self._cache(), device=device, progress=progress)

    # --- training -----------------------------------------------------------------

    def fit(self, data: TrainingData, progress: Progress = no_progress) -> None:
        started = time.monotonic()
        budget = float(data.settings.get("max_train_seconds") or DEFAULT_MAX_SECONDS)
        deadline = started + budget
        seed = int(data.settings.get("seed") or 0)
        enc.set_seed(seed)
        self.categories = list(data.history.categories)
        device = enc.pick_device()
        progress(0.0, "Writing customer profiles")
        # Early stopping watches customers held out of the training windows, never the
        # validation window: that one must stay unseen to judge the champion fairly.
        all_texts = _training_profiles(data)
        learn, watch = stopping_rows(data.x_train, MAX_VALID_ROWS, seed)
        train_texts = [text for text, keep in zip(all_texts, learn, strict=True) if keep]
        valid_texts = [text for text, keep in zip(all_texts, watch, strict=True) if keep]
        x_fit, x_stop = data.x_train[learn], data.x_train[watch]

        tokenizer = enc.load_tokenizer()
        mean_tokens = float(np.mean([len(ids) for ids in enc.tokenize(tokenizer, train_texts[:500])])) if train_texts else 64.0
        strategy = enc.choose_strategy(device, len(train_texts), max_seconds=budget, tokens_per_example=mean_tokens)
        forced = data.settings.get("transformer_strategy")
        if forced and forced != strategy.name:
            strategy = enc.make_strategy(str(forced), device, "set for this tenant")
        self.encoder = enc.TunedEncoder.prepare(strategy)
        self.strategy, self.base_model = strategy.name, self.encoder.base_path
        self.embedding_cache = None
        self.scaler = NumericScaler.fit(x_fit)
        y_fit, y_stop = data.y_train[learn], data.y_train[watch]
        self.revenue_scale = float(y_fit["revenue"].mean()) or 1.0
        self.net = FusionNet(self.encoder.hidden_size, self.scaler.width)
        self.net.start_at_base_rates(float(y_fit["purchased"].mean()), float(y_fit["orders"].mean()), 1.0)
        numeric = self.scaler.transform(x_fit)
        targets = self._targets(y_fit)
        valid_numeric = self.scaler.transform(x_stop)
        valid_targets = self._targets(y_stop)
        progress(0.05, f"Transformer: {enc.STRATEGY_WORDS[strategy.name]} on the {device.type.upper()}; {strategy.reason}")

        if strategy.trains_encoder:
            epochs, used = self._fit_end_to_end(train_texts, numeric, targets, valid_texts, valid_numeric, valid_targets, deadline, progress, seed)
        else:
            epochs, used = self._fit_frozen(train_texts, numeric, targets, valid_texts, valid_numeric, valid_targets, deadline, progress, seed)
        if strategy.trains_encoder:
            # The weights changed: scoring models and cached vectors belong to the old ones.
            self.encoder.forget_scoring_models()
            self.embedding_cache = None
        self.info = {
            "strategy": strategy.name,
            "strategy_detail": strategy.as_dict(),
            "device": device.type,
            "base_model": self.encoder.base_path,
            "epochs": epochs,
            "seconds": round(time.monotonic() - started, 1),
            "max_train_seconds": budget,
            "train_examples": len(train_texts),
            "train_examples_used": used,
            "stopping_examples": len(valid_texts),  # held-out customers of the last training window
            "mean_profile_tokens": round(mean_tokens, 1),
        }
        progress(1.0, f"Trained ({strategy.name}, {epochs} epochs, {self.info['seconds']}s)")

    def _targets(self, labels: pd.DataFrame) -> np.ndarray:
        return np.column_stack([labels["purchased"], labels["orders"], labels["revenue"] / self.revenue_scale]).astype(np.float32)

    def _fit_frozen(
        self, texts: list[str], numeric: np.ndarray, targets: np.ndarray, valid_texts: list[str], valid_numeric: np.ndarray, valid_targets: np.ndarray,
        deadline: float, progress: Progress, seed: int,
    ) -> tuple[int, int]:
        """Embed (int8, cached) as many training profiles as the budget allows, in random
        order so a cut-short pass is still a fair sample, then train the head alone."""
        assert self.encoder is not None and self.net is not None
        started = time.monotonic()
        embed_until = started + EMBED_BUDGET_SHARE * (deadline - started)
        valid_pooled = self._embed(valid_texts)
        order = np.random.default_rng(seed).permutation(len(texts))
        chunks = []
        done = 0
        for start in range(0, len(order), EMBED_CHUNK):
            rows = order[start : start + EMBED_CHUNK]
            chunks.append((rows, self._embed([texts[i] for i in rows])))
            done += len(rows)
            progress(0.05 + 0.6 * done / len(texts), f"Embedded {done}/{len(texts)} profiles")
            if time.monotonic() > embed_until:
                break
        rows = np.concatenate([r for r, _ in chunks])
        x = fused_inputs(np.concatenate([p for _, p in chunks]), numeric[rows])
        strategy = self.encoder.strategy

        def head_progress(fraction: float, message: str) -> None:
            progress(0.65 + 0.3 * fraction, message)

        epochs = enc.train_head(
            self.net, fused_loss, x, torch.from_numpy(targets[rows]), fused_inputs(valid_pooled, valid_numeric), torch.from_numpy(valid_targets),
            lr=strategy.head_lr, batch_size=strategy.batch_size, max_epochs=strategy.epochs,
            # The head gets at least a few seconds even when embedding used up the budget.
            deadline=max(deadline, time.monotonic() + 10), progress=head_progress, seed=seed,
        )
        return epochs, len(rows)

    def _fit_end_to_end(
        self, texts: list[str], numeric: np.ndarray, targets: np.ndarray, valid_texts: list[str], valid_numeric: np.ndarray, valid_targets: np.ndarray,
        deadline: float, progress: Progress, seed: int,
    ) -> tuple[int, int]:
        """LoRA (CPU) or full fine-tuning (CUDA, autocast) of encoder and head together;
        early stopping on the held-out customers' loss (``stopping_rows``) after each epoch, best epoch kept."""
        assert self.encoder is not None and self.net is not None
        device = enc.pick_device()
        strategy = self.encoder.strategy
        self.encoder.model.to(device)
        self.net.to(device)
        groups = self.encoder.parameter_groups() + [{"params": list(self.net.parameters()), "lr": strategy.head_lr, "weight_decay": 1e-4}]
        optimizer = torch.optim.AdamW(groups)
        scaler = enc.grad_scaler(strategy)
        encoded = enc.tokenize(self.encoder.tokenizer, texts)
        pad_id = self.encoder.tokenizer.pad_token_id or 0
        numeric_t, targets_t = torch.from_numpy(numeric), torch.from_numpy(targets)
        trainable = [p for group in groups for p in group["params"]]
        rng = np.random.default_rng(seed)
        best: tuple[float, list[torch.Tensor]] | None = None
        seen, epochs = 0, 0
        steps_per_epoch = math.ceil(len(texts) / strategy.batch_size)
        for epoch in range(strategy.epochs):
            self.encoder.model.train()
            self.net.train()
            losses = []
            for step, batch in enumerate(enc.training_batches([len(ids) for ids in encoded], strategy.batch_size, rng)):
                ids, mask = enc.pad_batch([encoded[i] for i in batch], pad_id, device)
                with enc.autocast(strategy):
                    outputs = self.net(torch.cat([self.encoder.pooled(ids, mask).float(), numeric_t[batch].to(device)], dim=1))
                loss = fused_loss(outputs, targets_t[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.item()))
                seen += len(batch)
                if step % 5 == 0:
                    done = (epoch * steps_per_epoch + step + 1) / (strategy.epochs * steps_per_epoch)
                    progress(0.05 + 0.9 * done, enc.pass_message(epoch + 1, strategy.epochs, float(np.mean(losses))))
                if time.monotonic() > deadline:
                    break
            epochs = epoch + 1
            valid_loss = self._valid_loss(valid_texts, valid_numeric, valid_targets, device)
            progress(0.05 + 0.9 * epochs / strategy.epochs, f"epoch {epochs}/{strategy.epochs}, loss {np.mean(losses):.3f}, valid loss {valid_loss:.3f}")
            if best is not None and valid_loss >= best[0]:
                break
            best = (valid_loss, [p.detach().clone() for p in trainable])
            if time.monotonic() > deadline:
                break
        if best is not None:
            with torch.no_grad():
                for parameter, value in zip(trainable, best[1], strict=True):
                    parameter.copy_(value)
        self.encoder.model.eval().cpu()
        self.net.eval().cpu()
        return epochs, min(seen, len(texts))

    def _valid_loss(self, texts: list[str], numeric: np.ndarray, targets: np.ndarray, device: torch.device) -> float:
        assert self.encoder is not None and self.net is not None
        self.encoder.model.eval()
        self.net.eval()
        pooled = enc.embed_texts(texts, self.encoder.tokenizer, self.encoder.model, device=device)
        with torch.inference_mode():
            outputs = self.net(fused_inputs(pooled, numeric).to(device))
            return float(fused_loss(outputs, torch.from_numpy(targets).to(device)).item())

    # --- scoring ------------------------------------------------------------------

    def predict(self, history: History, as_of: dt.date | dt.datetime | pd.Timestamp, features: pd.DataFrame, progress: Progress = no_progress) -> pd.DataFrame:
        if self.encoder is None or self.net is None or self.scaler is None:
            raise RuntimeError("the transformer model is not fitted")
        if features.empty:
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS), index=features.index, dtype=float)
        progress(0.0, "Writing customer profiles")
        texts = customer_profiles(history, as_timestamp(as_of), features).tolist()
        pooled = self._embed(texts, progress=lambda fraction, message="": progress(0.05 + 0.9 * fraction, message))
        cache = self._cache()
        cache.save()
        numeric = self.scaler.transform(features)
        with torch.inference_mode():
            outputs = self.net.eval()(fused_inputs(pooled, numeric)).double().numpy()
        progress(1.0, f"Scored {len(texts)} customers")
        purchase = 1.0 / (1.0 + np.exp(-outputs[:, 0]))
        # The three heads as learnt: training, backtests and scoring make them agree
        # (families.base.coherent_predictions).
        return pd.DataFrame(
            {
                "purchase_probability": purchase,
                "expected_orders": np.exp(np.clip(outputs[:, 1], -30, 15)),
                "expected_revenue": np.exp(np.clip(outputs[:, 2], -30, 15)) * self.revenue_scale,
            },
            index=features.index,
        )

    # --- persistence --------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """weights.safetensors (head, plus the encoder's delta if it trained), model.json
        (scaler, scale, encoder reference and fingerprint), the tokenizer's JSON/txt files,
        and manifest.json with every file's sha256."""
        if self.encoder is None or self.net is None or self.scaler is None:
            raise RuntimeError("the transformer model is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = self.encoder.save(directory, prefix="encoder.")
        tensors.update({f"net.{name}": tensor for name, tensor in self.net.state_dict().items()})
        enc.save_safetensors(tensors, directory / "weights.safetensors")
        config = {
            "scaler": self.scaler.as_dict(),
            "revenue_scale": self.revenue_scale,
            "width": WIDTH,
            "encoder": self.encoder.config(),
            "info": self.info,
            "categories": self.categories,
        }
        (directory / "model.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        enc.write_manifest(directory, {"kind": KIND})

    @classmethod
    def load(cls, directory: Path) -> TransformerModel:
        directory = Path(directory)
        manifest = enc.verify_directory(directory)
        if manifest.get("kind") != KIND:
            raise ValueError(f"{directory} does not hold a transformer customer model")
        config = json.loads((directory / "model.json").read_text())
        tensors = load_file(str(directory / "weights.safetensors"))
        model = cls()
        model.encoder = enc.TunedEncoder.restore(
            config["encoder"], {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}, directory / "tokenizer"
        )
        model.scaler = NumericScaler(**config["scaler"])
        model.revenue_scale = float(config["revenue_scale"])
        model.net = FusionNet(model.encoder.hidden_size, model.scaler.width, int(config["width"]))
        model.net.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")})
        model.net.eval()
        model.info = config["info"]
        model.categories = config.get("categories")
        model.strategy, model.base_model = model.info.get("strategy", ""), model.encoder.base_path
        return model

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.info)


def fused_inputs(pooled: np.ndarray, numeric: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.hstack([pooled, numeric]).astype(np.float32))


def stopping_rows(x_train: pd.DataFrame, limit: int, seed: int, share: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """The training rows the model learns from and the rows early stopping watches (two
    boolean masks). A random ``share`` of the customers is held out of every training
    window; early stopping watches them at the last window's cutoff (the nearest to what
    is predicted), at most ``limit`` rows. A held-out customer's earlier windows are in
    neither set: their labels would tell the model about the watched rows."""
    customers = x_train.index.get_level_values(1)
    unique = customers.unique()
    rng = np.random.default_rng(seed)
    held = customers.isin(rng.choice(unique, size=max(1, round(share * len(unique))), replace=False))
    cutoffs = x_train.index.get_level_values(0)
    candidates = np.flatnonzero(held & (cutoffs == cutoffs.max()))
    watched = np.zeros(len(x_train), dtype=bool)
    watched[candidates[_sample(len(candidates), limit, seed)]] = True
    return ~held, watched


def _sample(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _training_profiles(data: TrainingData) -> list[str]:
    """Profiles for x_train's (cutoff, customer) rows, each written as of its own cutoff."""
    cutoffs = {window.cutoff.date().isoformat(): window.cutoff for window in data.train_windows}
    texts = pd.Series("", index=data.x_train.index, dtype=object)
    for key, features in data.x_train.groupby(level=0, sort=False):
        cutoff = cutoffs.get(key) if isinstance(key, str) else None
        cutoff = cutoff if cutoff is not None else as_timestamp(dt.date.fromisoformat(str(key)))
        profiles = customer_profiles(data.history, cutoff, features.droplevel(0))
        texts.loc[features.index] = profiles.to_numpy()
    return texts.tolist()
