"""The errors Switchyard raises on purpose: each message says what to fix."""

from __future__ import annotations

from typing import Any


def describe_error(error: BaseException) -> str:
    """One line naming an exception and the first line of its message (for results and logs).

    An error that ended a chain of fallback models describes every model's failure, in order.
    """
    failures = getattr(error, "switchyard_failures", None)
    if failures:
        return "; ".join(failures)
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


class SwitchyardError(Exception):
    """Base class for every error Switchyard raises deliberately.

    The CLI prints these as one line and exits with code 2; anything else is a bug.
    """


class AgentConfigError(SwitchyardError, ValueError):
    """An agent specification or a set of agents is invalid (raised when a graph is built)."""


class ModelConfigError(SwitchyardError, ValueError):
    """A model string cannot be loaded: unknown provider, missing package or missing credentials."""


class InvalidInputError(SwitchyardError, ValueError):
    """A user message cannot be run: empty, too long or not valid UTF-8."""


class SessionAccessError(SwitchyardError, PermissionError):
    """A caller tried to read or continue a session that belongs to another user."""


class GraphNotFoundError(SwitchyardError, LookupError):
    """A pattern name is not registered in langgraph.json."""


class PersistenceConfigError(SwitchyardError, ValueError):
    """The checkpointer setting cannot be opened."""


class ConfigError(SwitchyardError, ValueError):
    """A setting cannot be used: a `Context` field, an environment variable, a path or a server.

    Raised before a run starts; the message names the setting and what to set instead.
    """


def pickles(value: object) -> bool:
    """Whether `value` survives pickling: what an error may keep when it crosses processes."""
    import pickle

    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


class CapabilityError(ModelConfigError):
    """A model's endpoint refused every way of asking it for what a call needs.

    Raised when no structured-output method is left for an agent with an output schema: it is
    the endpoint's configuration, so it is not retried; the message lists what each refused.
    """


class OutputTruncatedError(SwitchyardError):
    """A model stopped at its output-token limit: its answer was cut off, so it is not passed on.

    Attributes:
        agent: The agent whose answer was cut off.
        max_tokens: The limit it hit (None when the provider's own).
        partial: The text it had written.
        reply: The cut-off reply, with the provider's token counts: it was billed, so it is
            charged and recorded (as `OutputValidationError.reply`).
    """

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        max_tokens: int | None,
        partial: str,
        reply: Any = None,
    ) -> None:
        super().__init__(message)
        self.agent = agent
        self.max_tokens = max_tokens
        self.partial = partial
        self.reply = reply

    def __reduce__(self) -> tuple[Any, ...]:
        # The state too: a fallback chain's list of every model's failure rides on the error.
        state = {k: v for k, v in self.__dict__.items() if pickles(v)}
        return (
            _truncated,
            (str(self), self.agent, self.max_tokens, self.partial, self.reply),
            state,
        )


def _truncated(
    message: str, agent: str, max_tokens: int | None, partial: str, reply: Any = None
) -> OutputTruncatedError:
    return OutputTruncatedError(
        message, agent=agent, max_tokens=max_tokens, partial=partial, reply=reply
    )
