"""A run's settings as stored, so resume and replay finish a run the way it started.

A run's behaviour comes from its `Context` and, for agents without a model of their own, from the
process's default model (`SWITCHYARD_MODEL`). Both are recorded with a failed run (in its dead
letter) and, when present, read from a thread's checkpoint metadata (`SETTINGS_KEY`, JSON text:
LangGraph keeps only scalar metadata values). `restored_context` rebuilds the `Context` a resume
or replay runs with; a caller's explicit context always wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from switchyard.core.errors import InvalidInputError
from switchyard.core.models import default_model
from switchyard.state.context import Context

SETTINGS_KEY = "switchyard_settings"
"""Checkpoint metadata key holding a run's settings (`settings_text`)."""

_CONTEXT = TypeAdapter(Context)


def run_settings(context: Context) -> dict[str, Any]:
    """What to keep of a run's configuration: its context and the default model it ran with."""
    return {
        "context": _CONTEXT.dump_python(context, mode="json"),
        "default_model": default_model(),
    }


def settings_text(context: Context) -> str:
    """`run_settings` as compact JSON, the form checkpoint metadata keeps."""
    return json.dumps(run_settings(context), separators=(",", ":"), sort_keys=True)


def settings_in(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The settings recorded in a checkpoint's metadata, if any."""
    raw = (metadata or {}).get(SETTINGS_KEY)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return dict(raw) if isinstance(raw, Mapping) else None


def restored_context(stored: Mapping[str, Any] | None, override: Context | None) -> Context | None:
    """The context a resume or replay runs with.

    `override` (the caller's explicit context) wins. Otherwise the stored context comes back;
    when it named no model and the run's default model differs from this process's, the run's
    default is restored as the run's model (it then applies to every agent, as `Context.model`
    does). Nothing stored and no override gives None: the current defaults.

    Raises:
        InvalidInputError: The stored settings no longer fit `Context`; pass a context explicitly.
    """
    if override is not None:
        return override
    if not stored or not isinstance(stored.get("context"), Mapping):
        return None
    try:
        context = _CONTEXT.validate_python(dict(stored["context"]))
    except (ValidationError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"the run's stored settings no longer fit Context ({first}); pass the model or "
            "context explicitly"
        ) from None
    recorded_default = stored.get("default_model")
    restore_default = isinstance(recorded_default, str) and recorded_default != default_model()
    if context.model is None and restore_default:
        return replace(context, model=recorded_default)
    return context
