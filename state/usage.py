"""The usage ledger: what each agent's model calls cost, summed across a run and a session."""

from __future__ import annotations

from typing import Any, cast

from typing_extensions import TypedDict


class UsageEntry(TypedDict):
    """Totals for one (agent, model) pair."""

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
    cost_usd: float


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
    "cost_usd",
)
"""The entry fields that add up across calls (the rest: the key's parts and `latency_ms_max`)."""


def usage_key(agent: str, model: str) -> str:
    """The ledger key of an (agent, model) pair."""
    return f"{agent}/{model}"


def usage_entry(
    agent: str,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    latency_ms: float = 0.0,
    cost_usd: float = 0.0,
    calls: int = 1,
    cache_hits: int = 0,
    retries: int = 0,
    fallbacks: int = 0,
) -> UsageLedger:
    """A one-entry ledger for a single model call, ready to return as a state update."""
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
        )
    }


def add_entries(left: UsageEntry, right: UsageEntry) -> UsageEntry:
    """Sum two entries of the same (agent, model); latency_ms_max takes the larger."""
    merged = cast(dict[str, Any], dict(left))
    for key in SUMMED:
        merged[key] = merged[key] + cast(dict[str, Any], right)[key]
    merged["latency_ms_max"] = max(left["latency_ms_max"], right["latency_ms_max"])
    return cast(UsageEntry, merged)


def ledger_delta(after: UsageLedger, before: UsageLedger) -> UsageLedger:
    """What `after` holds beyond `before`: the usage of the calls made in between.

    `latency_ms_max` of the delta is the later maximum (a maximum cannot be subtracted).
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
            diff[field_name] = diff[field_name] - cast(dict[str, Any], prior)[field_name]
        delta[key] = cast(UsageEntry, diff)
    return delta
