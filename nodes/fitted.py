"""Fitted classifiers kept on disk as numpy arrays, so a later process routes without refitting.

Fitting a classifier takes scikit-learn (over a second and 100 MB just to import) and the fit's
own time; what the fit produces is a handful of arrays. `load_or_fit` keeps them in one `.npz`
file per fit under `cache_dir() / "classifiers"`, named by a hash of everything that changes the
fit (`fit_key`). Files hold plain arrays only, never pickles, so reading one runs no code. An
entry that cannot be read, or that belongs to another fit, is fitted again and rewritten; a cache
folder that cannot be written is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from switchyard.core.files import write_atomically
from switchyard.core.loading import loading
from switchyard.nodes.embedder import cache_dir

FORMAT = 1
"""Layout of a cache entry: bump it when the arrays change, or a fit in a way `fit_key` misses."""

FITTED_BY = ("scikit-learn", "scipy", "numpy")
"""Packages whose versions are part of the key: a new version may fit other numbers."""

State = dict[str, np.ndarray[Any, Any]]
"""A fitted classifier's arrays, by name."""

T = TypeVar("T")

_KEY = "fit_key"


def fit_key(
    kind: str, documents: Sequence[str], owners: Sequence[int], settings: Mapping[str, Any]
) -> str:
    """The cache key of a fit: a sha256 of everything that changes the fitted numbers.

    Args:
        kind: The classifier and head (`lexical/linear`).
        documents: The texts fitted on.
        owners: The agent index of each document.
        settings: Whatever else the fit depends on (analyzers, `min_df`, the embedding model),
            as JSON-ready data.
    """
    versions = {}
    for package in FITTED_BY:
        try:
            versions[package] = importlib.metadata.version(package)  # reads metadata, no import
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    identity = {
        "format": FORMAT,
        "kind": kind,
        "settings": settings,
        "versions": versions,
        "documents": list(documents),
        "owners": [int(owner) for owner in owners],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def entry_path(kind: str, key: str) -> Path:
    """Where the fit `key` of classifier `kind` is kept."""
    return cache_dir() / "classifiers" / f"{kind.replace('/', '-')}-{key[:32]}.npz"


def load_or_fit(
    kind: str,
    key: str,
    fit: Callable[[], State],
    build: Callable[[State], T],
    *,
    keep: bool = True,
) -> T:
    """Build a classifier's fitted part from its cache entry, or fit it and keep the entry.

    Both ways go through `build`, so a classifier read from the cache decides exactly as a fresh
    one. The read and the fit each announce themselves (`switchyard.core.loading`).

    Args:
        kind: The classifier and head (`lexical/linear`), for the file name.
        key: The fit's `fit_key`.
        fit: Fits the classifier and returns its arrays.
        build: Turns the arrays into what the classifier routes with; raises `KeyError` or
            `ValueError` for arrays that do not fit together (then the entry is refitted).
        keep: Read and write the cache; False for one-off fits (cross-validation folds), which
            would only fill the disk.
    """
    if not keep:
        return build(fit())
    path = entry_path(kind, key)
    if path.is_file():
        with loading("router classifier (from cache)"):
            restored = _restore(path, key, build)
        if restored is not None:
            return restored
    with loading("router classifier (fitting once)"):
        state = fit()
        built = build(state)
    _save(path, key, state)
    return built


def _restore(path: Path, key: str, build: Callable[[State], T]) -> T | None:
    """`build` applied to the entry at `path`; None when it is unreadable or another fit's."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array, not an entry
            return None
        with archive:
            state = {name: archive[name] for name in archive.files}
        if str(state.pop(_KEY)) != key:
            return None
        return build(state)
    except (OSError, EOFError, KeyError, IndexError, ValueError, zipfile.BadZipFile):
        return None


def _save(path: Path, key: str, state: State) -> None:
    """Write the entry atomically (a temporary file, then a rename); skip an unwritable folder."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(
            path,
            lambda file: np.savez(file, allow_pickle=False, **{_KEY: np.asarray(key)}, **state),
        )


def pack_strings(name: str, strings: Sequence[str]) -> State:
    """Strings as two arrays (no pickling): their UTF-8 bytes end to end, and their lengths."""
    blob = "".join(strings).encode("utf-8", "surrogatepass")
    return {
        f"{name}.utf8": np.frombuffer(blob, dtype=np.uint8),
        f"{name}.lengths": np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)),
    }


def unpack_strings(state: Mapping[str, np.ndarray[Any, Any]], name: str) -> list[str]:
    """The strings `pack_strings` packed under `name`.

    Raises:
        KeyError: No strings under `name`.
        ValueError: The lengths do not add up to the text.
    """
    text = state[f"{name}.utf8"].tobytes().decode("utf-8", "surrogatepass")
    bounds = [0, *np.cumsum(state[f"{name}.lengths"]).tolist()]
    if bounds[-1] != len(text):
        raise ValueError(f"the lengths of {name} do not add up to its text")
    return [text[start:end] for start, end in itertools.pairwise(bounds)]
