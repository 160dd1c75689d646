"""Tokens of a model call: what a reply reports it used, and what a request is expected to use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately

CACHE_HIT_KEY = "switchyard_cache_hit"
"""`response_metadata` key set on replies served from the response cache."""

EXPECTED_OUTPUT_TOKENS = 512
"""Output tokens assumed for a call's budget estimate when the agent sets no `max_tokens`."""


@dataclass(frozen=True)
class Tokens:
    """Tokens one model call used, as billed.

    Attributes:
        input: Prompt tokens.
        output: Completion tokens.
        cached: Prompt tokens the provider served from its prompt cache.
        cache_hit: The reply came from Switchyard's response cache: nothing was sent or billed.
    """

    input: int = 0
    output: int = 0
    cached: int = 0
    cache_hit: bool = False

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input + self.output


def tokens_of(message: BaseMessage | None) -> Tokens:
    """The tokens a reply reports (`usage_metadata`); none for a cached reply or no reply."""
    if message is None:
        return Tokens()
    if message.response_metadata.get(CACHE_HIT_KEY):
        return Tokens(cache_hit=True)
    usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    details: Mapping[str, Any] = usage.get("input_token_details") or {}
    return Tokens(
        input=int(usage.get("input_tokens", 0)),
        output=int(usage.get("output_tokens", 0)),
        cached=int(details.get("cache_read", 0) or 0),
    )


def expected_tokens(messages: Sequence[BaseMessage], max_tokens: int | None) -> tuple[int, int]:
    """(input, output) tokens a request is expected to use, for budget checks before the call."""
    return count_tokens_approximately(messages), max_tokens or EXPECTED_OUTPUT_TOKENS


_LIMIT_REASONS = frozenset({"length", "max_tokens", "max_output_tokens", "MAX_TOKENS"})
"""How providers say a generation stopped at its token limit: OpenAI-compatible servers (and
Ollama's `done_reason`) `length`, Anthropic and Bedrock `max_tokens`, Gemini `MAX_TOKENS`."""


def truncated(message: BaseMessage) -> bool:
    """Whether a reply stopped at its output-token limit (its text was cut off)."""
    meta = message.response_metadata
    for key in ("finish_reason", "stop_reason", "stopReason", "done_reason"):
        if meta.get(key) in _LIMIT_REASONS:
            return True
    details = meta.get("incomplete_details")
    return isinstance(details, Mapping) and details.get("reason") == "max_output_tokens"
