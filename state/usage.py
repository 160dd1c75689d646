"""The usage ledger: what each agent's model calls cost, summed across a run and a session.

A call whose model has no known price (`switchyard.core.pricing.cost_usd` is None: a model missing
from the price table, a local server's model) cost money nobody can tell. The ledger never writes
that down as 0.0: the entry's `cost_usd` is None (JSON `null`) from then on, and so is every total
it is part of (`total_cost`). The dollars that are known are kept beside it (`known_cost_usd`) with
the number of calls that are not (`unpriced_calls`), so that entries add up and subtract (a run's
share of its session, `ledger_delta`) exactly, and a partial sum can be shown as what it is, a
lower bound (`switchyard.core.pricing.format_cost`: "unknown (≥ $0.000120)"). The offline model
and response-cache hits cost a known 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, cast

from typing_extensions import TypedDict


class UsageEntry(TypedDict):
    """Totals for one (agent, model) pair.

    `cost_usd` is the entry's cost in US dollars, None when any of its calls has no known price;
    `known_cost_usd` is the cost of its priced calls and `unpriced_calls` counts the others, so
    `cost_usd == known_cost_usd` exactly when `unpriced_calls == 0`.
    """

    agent: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_hits: int
    retries: int
    fallbacks: int
    latency_ms_sum: float
    latency_ms_max: float
    cost_usd: float | None
    known_cost_usd: float
    unpriced_calls: int


UsageLedger = dict[str, UsageEntry]
"""Ledger keyed by `"agent/model"`; merged by `switchyard.state.reducers.merge_usage`."""

SUMMED = (
    "calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_hits",
    "retries",
    "fallbacks",
    "latency_ms_sum",
    "known_cost_usd",
    "unpriced_calls",
)
"""The entry fields that add up across calls.

The rest: the key's parts, `latency_ms_max` (a maximum) and `cost_usd`, which follows from
`known_cost_usd` and `unpriced_calls` (`entry_cost`).
"""


class CostTotal(NamedTuple):
    """The cost of some model calls, as `total_cost` sums it.

    Attributes:
        cost_usd: US dollars, None when any call has no known price.
        known_cost_usd: Dollars of the calls with a known price (a lower bound when `cost_usd`
            is None).
        unpriced_calls: Calls whose price is unknown.
    """

    cost_usd: float | None
    known_cost_usd: float
    unpriced_calls: int


def usage_key(agent: str, model: str) -> str:
    """The ledger key of an (agent, model) pair."""
    return f"{agent}/{model}"


def entry_cost(known_cost_usd: float, unpriced_calls: int) -> float | None:
    """The cost of calls whose priced part is `known_cost_usd`: None when any is unpriced."""
    return None if unpriced_calls else known_cost_usd


def usage_entry(
    agent: str,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    latency_ms: float = 0.0,
    cost_usd: float | None = 0.0,
    calls: int = 1,
    cache_hits: int = 0,
    retries: int = 0,
    fallbacks: int = 0,
) -> UsageLedger:
    """A one-entry ledger for a single model call, ready to return as a state update.

    `cost_usd` None: the model has no known price; the call counts as unpriced.
    """
    unpriced = calls if cost_usd is None else 0
    return {
        usage_key(agent, model): UsageEntry(
            agent=agent,
            model=model,
            calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            cache_hits=cache_hits,
            retries=retries,
            fallbacks=fallbacks,
            latency_ms_sum=latency_ms,
            latency_ms_max=latency_ms,
            cost_usd=cost_usd,
            known_cost_usd=cost_usd or 0.0,
            unpriced_calls=unpriced,
        )
    }


def _summed(entry: Mapping[str, Any], key: str) -> Any:
    """A summed field of `entry`; entries written before costs could be unknown lack two."""
    if key == "known_cost_usd" and key not in entry:
        return entry.get("cost_usd") or 0.0
    if key == "unpriced_calls" and key not in entry:
        return 0
    return entry[key]


def _with_cost(fields: dict[str, Any]) -> UsageEntry:
    fields["cost_usd"] = entry_cost(fields["known_cost_usd"], fields["unpriced_calls"])
    return cast(UsageEntry, fields)


def add_entries(left: UsageEntry, right: UsageEntry) -> UsageEntry:
    """Sum two entries of the same (agent, model); latency_ms_max takes the larger.

    The sum's cost is unknown (None) when either side's is.
    """
    merged = cast(dict[str, Any], dict(left))
    for key in SUMMED:
        merged[key] = _summed(left, key) + _summed(right, key)
    merged["latency_ms_max"] = max(left["latency_ms_max"], right["latency_ms_max"])
    return _with_cost(merged)


def ledger_delta(after: UsageLedger, before: UsageLedger) -> UsageLedger:
    """What `after` holds beyond `before`: the usage of the calls made in between.

    `latency_ms_max` of the delta is the later maximum (a maximum cannot be subtracted). The
    delta's cost is unknown only when an unpriced call was made in between: a session's earlier
    unpriced calls do not make a later, fully priced run's cost unknown.
    """
    delta: UsageLedger = {}
    for key, entry in after.items():
        prior = before.get(key)
        if prior is None:
            delta[key] = entry
            continue
        if entry["calls"] == prior["calls"]:
            continue
        diff = cast(dict[str, Any], dict(entry))
        for field_name in SUMMED:
            diff[field_name] = _summed(entry, field_name) - _summed(prior, field_name)
        delta[key] = _with_cost(diff)
    return delta


def total_cost(entries: Iterable[Mapping[str, Any]]) -> CostTotal:
    """The cost of ledger entries together: unknown (None) when any entry's is.

    Example:
        ```python
        cost = total_cost(result.usage.values())
        print(format_cost(cost.cost_usd, known=cost.known_cost_usd))
        ```
    """
    known, unpriced = 0.0, 0
    for entry in entries:
        known += float(_summed(entry, "known_cost_usd") or 0.0)
        unpriced += int(_summed(entry, "unpriced_calls") or 0)
    known = round(known, 8)
    return CostTotal(entry_cost(known, unpriced), known, unpriced)
