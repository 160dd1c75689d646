"""Exceptions across the Workflow/Activity boundary, and to the client, of their own type.

An agent's failure (a budget, the deadline, a provider error) decides the run's end reason and
which fallback runs, by its type and attributes; Temporal would turn it into an
`ApplicationError` carrying only a type name and a message. The bytes travel only between one
deployment's workers and clients (as a checkpointer's pickled values would).
"""

from __future__ import annotations

import pickle
from typing import Any

from switchyard.core.errors import pickles


def _rebuilt_error(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An exception of `cls` with `args` and attributes `state`, without calling its `__init__`."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class _ErrorBox:
    """Pickles an exception whose `__init__` cannot take its own `args` back.

    Such are exceptions with several required or keyword-only arguments (`BudgetExceededError`).
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        error = self.error
        kept = {name: value for name, value in error.__dict__.items() if pickles(value)}
        return (_rebuilt_error, (type(error), error.args, kept))


def pickled_error(exc: BaseException) -> bytes:
    """`exc` as bytes the Workflow raises again: of the same type, with the same attributes.

    Exceptions are pickled as Python does when that round-trips, else rebuilt from their
    arguments and attributes; one that cannot be either becomes a `RuntimeError` naming it.
    """
    for candidate in (exc, _ErrorBox(exc)):
        try:
            data = pickle.dumps(candidate)
            pickle.loads(data)
        except Exception:
            continue
        return data
    return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def unpickled_error(data: bytes) -> BaseException:
    """The exception `pickled_error` wrote."""
    error = pickle.loads(data)
    if not isinstance(error, BaseException):
        raise TypeError(f"expected a pickled exception, got {type(error).__name__}")
    return error
