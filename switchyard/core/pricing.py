"""Prices: US dollars for a model call, from the maintained `genai-prices` table, with overrides.

The offline model costs nothing. A model missing from the table costs `None` (unknown) until an
override is registered with `set_price`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from switchyard.core.errors import ModelConfigError
from switchyard.core.models import OFFLINE, split_model
from switchyard.core.redact import masked_logger

logger = masked_logger(__name__)

# LangChain provider names -> genai-prices provider ids, where they differ.
_PROVIDER_IDS = {
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "google_genai": "google",
    "google_vertexai": "google",
    "mistralai": "mistral",
    "azure_openai": "azure",
}


@dataclass(frozen=True)
class Price:
    """A price per million tokens, in US dollars."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0) -> float:
        """Dollars for one call; cached input tokens are billed at the cache-read price if set."""
        cached_rate = self.cache_read_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        fresh = max(0, input_tokens - cache_read_tokens)
        return (
            fresh * self.input_per_mtok
            + cache_read_tokens * cached_rate
            + output_tokens * self.output_per_mtok
        ) / 1_000_000


_overrides: dict[str, Price] = {}


def set_price(model: str, price: Price) -> None:
    """Register (or replace) the price of a model string, taking precedence over the table."""
    _overrides[model.strip()] = price
    _table_price.cache_clear()


def cost_usd(
    model: str, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0
) -> float | None:
    """Dollars one call cost, 0 for the offline model, `None` when the price is unknown.

    A name without a provider (a model registered with `register_chat_model`, say) has no
    known price unless one is set with `set_price`.
    """
    override = _overrides.get(model)
    if override is not None:
        return override.cost(input_tokens, output_tokens, cache_read_tokens)
    try:
        provider, name = split_model(model)
    except ModelConfigError:
        return None
    if provider == OFFLINE:
        return 0.0
    return _table_price(provider, name, input_tokens, output_tokens, cache_read_tokens)


def format_cost(cost: float | None, *, known: float = 0.0, digits: int = 6) -> str:
    """A cost for people: `$0.000120`, or `unknown` when it is None, never `$0.000000`.

    `known` is the part of an unknown cost whose price is known; when there is one it is shown
    as the lower bound it is: `unknown (≥ $0.000120)`.

    Example:
        ```python
        format_cost(result.cost_usd, known=result.known_cost_usd)
        ```
    """
    if cost is not None:
        return f"${cost:.{digits}f}"
    if known > 0:
        return f"unknown (≥ ${known:.{digits}f})"
    return "unknown"


def has_price(model: str) -> bool:
    """Whether `cost_usd` can price this model."""
    return cost_usd(model, 1, 1) is not None


@lru_cache(maxsize=4096)
def _table_price(
    provider: str, name: str, input_tokens: int, output_tokens: int, cache_read_tokens: int
) -> float | None:
    from genai_prices import Usage, calc_price

    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens or None,
    )
    for provider_id in (_PROVIDER_IDS.get(provider, provider), None):
        try:
            return float(calc_price(usage, name, provider_id=provider_id).total_price)
        except LookupError:
            continue
    logger.warning("no price known for %s:%s; its cost is reported as unknown", provider, name)
    return None
