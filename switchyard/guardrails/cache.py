"""Response cache: a repeated identical model call is answered from SQLite and costs nothing.

This is a LangChain `BaseCache`, so every chat model uses it through LangChain's own cache hook
(`set_llm_cache`). LangChain's SQLite cache lives in langchain-community, a large dependency for one
table; this one is small and also marks its answers, so the usage ledger counts cache hits and
charges them nothing.

Off by default: a chat answer is not always meant to repeat (temperature > 0). Turn it on with
`SWITCHYARD_CACHE=path/to/cache.sqlite` or `enable_response_cache(path)`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, Generation

from switchyard.core.errors import ConfigError
from switchyard.core.tokens import CACHE_HIT_KEY

CACHE_ENV = "SWITCHYARD_CACHE"
__all__ = [
    "CACHE_ENV",
    "CACHE_HIT_KEY",
    "SQLiteResponseCache",
    "cache_from_environment",
    "disable_response_cache",
    "enable_response_cache",
]


class SQLiteResponseCache(BaseCache):
    """LangChain cache in one SQLite table keyed by (prompt, model settings)."""

    def __init__(self, path: str | Path) -> None:
        """Open (and create) the cache file.

        Raises:
            ConfigError: The path cannot hold a SQLite database (under a regular file, not
                writable, not a database); the message names the path and what to set.
        """
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(str(self.path), check_same_thread=False)
            with self._lock, self._connection:
                self._connection.execute(
                    "CREATE TABLE IF NOT EXISTS switchyard_cache (key TEXT PRIMARY KEY, value TEXT)"
                )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot use the response cache at {str(self.path)!r}: {exc}; set {CACHE_ENV} "
                "to a writable file path, or to 'off'"
            ) from None

    @staticmethod
    def _key(prompt: str, llm_string: str) -> str:
        return hashlib.sha256(f"{llm_string}\n{prompt}".encode()).hexdigest()

    def lookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        """Cached generations for this prompt and model, marked as cache hits."""
        with self._lock:
            row = self._connection.execute(
                "SELECT value FROM switchyard_cache WHERE key = ?", (self._key(prompt, llm_string),)
            ).fetchone()
        if row is None:
            return None
        with warnings.catch_warnings():  # `loads` is marked beta; its format is stable
            warnings.simplefilter("ignore")
            generations: list[Generation] = loads(
                row[0], allowed_objects=[ChatGeneration, Generation, AIMessage, AIMessageChunk]
            )
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                generation.message.response_metadata[CACHE_HIT_KEY] = True
        return generations

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Store the generations of a call."""
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO switchyard_cache (key, value) VALUES (?, ?)",
                (self._key(prompt, llm_string), dumps(list(return_val))),
            )

    def clear(self, **kwargs: Any) -> None:
        """Drop every cached answer."""
        with self._lock, self._connection:
            self._connection.execute("DELETE FROM switchyard_cache")


def enable_response_cache(path: str | Path) -> SQLiteResponseCache:
    """Answer repeated identical model calls from a SQLite cache at `path` (process-wide)."""
    cache = SQLiteResponseCache(path)
    set_llm_cache(cache)
    return cache


def disable_response_cache() -> None:
    """Stop using the response cache."""
    set_llm_cache(None)


def cache_from_environment() -> SQLiteResponseCache | None:
    """Enable the cache when `SWITCHYARD_CACHE` names a file; return it (or None).

    Raises:
        ConfigError: The file cannot be used as a cache (see `SQLiteResponseCache`).
    """
    path = os.environ.get(CACHE_ENV, "").strip()
    if not path or path.lower() in {"0", "off", "false", "no"}:
        return None
    return enable_response_cache(path)
