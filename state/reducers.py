"""Reducers: the functions that decide how concurrent and successive writes to a key combine."""

from __future__ import annotations

from switchyard.state.usage import UsageLedger, add_entries


def merge_usage(left: UsageLedger | None, right: UsageLedger | None) -> UsageLedger:
    """Sum usage ledgers entry by entry.

    Keeps every (agent, model) entry from both sides; entries present on both are summed (and
    their `latency_ms_max` maximised). Order-independent, so parallel branches may write it.
    Drops nothing.
    """
    merged: UsageLedger = dict(left or {})
    for key, entry in (right or {}).items():
        merged[key] = add_entries(merged[key], entry) if key in merged else entry
    return merged
