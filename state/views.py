"""Per-agent views of a conversation: what one agent is allowed to see, trimmed to its window.

A *turn* is one user message and everything that answers it (agent replies, tool calls, tool
results). Windows are cut at turn boundaries only, so a tool call is never separated from its
result, and an agent never sees a turn that was routed to another agent.

`window` says which earlier turns an agent's window keeps and which it drops (the dropped ones
are what its summarised memory condenses, `switchyard.state.memory`), and cuts a current turn that
alone exceeds the window (`cut_turn`), with a visible marker. `agent_view` is the plain trimmed
view, the current turn whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately

from switchyard.state.memory import EarlierTurns

Turn = list[AnyMessage]

CUT_MARKER = (
    "[... {tokens} tokens cut by Switchyard: the turn exceeded max_context_tokens={limit} ...]"
)
"""The text put where part of an oversized current turn was cut."""

_CHARS_PER_TOKEN = 4  # as count_tokens_approximately counts
_MIN_KEPT_CHARS = 64  # of a cut message's text: its start and end stay readable


def split_turns(messages: Sequence[AnyMessage]) -> list[Turn]:
    """Group messages into turns, each starting at a user message.

    Messages before the first user message (a stray system message, say) are dropped: they are not
    part of any exchange an agent should replay. The one exception is a view's `EarlierTurns`
    marker, which stands for the dropped turns and is kept as a turn of its own.
    """
    turns: list[Turn] = []
    for message in messages:
        if isinstance(message, HumanMessage) or (isinstance(message, EarlierTurns) and not turns):
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    return turns


def answered_by(turn: Turn) -> set[str]:
    """Names of the agents that replied within a turn."""
    return {m.name for m in turn if isinstance(m, AIMessage) and m.name}


@dataclass(frozen=True)
class Window:
    """An agent's window onto a thread.

    Attributes:
        dropped: Earlier turns of the agent that did not fit, oldest first.
        kept: Earlier turns of the agent that fit, oldest first.
        current: The turn being answered (cut to the window when it alone exceeds it).
    """

    dropped: list[Turn] = field(default_factory=list)
    kept: list[Turn] = field(default_factory=list)
    current: Turn = field(default_factory=list)

    @property
    def messages(self) -> list[AnyMessage]:
        """The kept turns' messages, oldest first, then the current turn's."""
        return [m for turn in self.kept for m in turn] + self.current


def window(
    messages: Sequence[AnyMessage],
    agent: str | None,
    *,
    max_pairs: int,
    max_tokens: int,
    reserve: int = 0,
    cut: bool = True,
) -> Window:
    """Which of an agent's earlier turns fit its window, and the current turn, fitted too.

    Args:
        messages: The whole thread, oldest first; the last turn is the one being answered.
        agent: Only earlier turns this agent replied in count; `None` counts every turn (for
            patterns whose agents share one conversation, such as the swarm).
        max_pairs: Most earlier turns to keep, newest first.
        max_tokens: The window, in approximate tokens.
        reserve: Tokens of the window set aside (for the memory notes); the turns get the rest.
        cut: Cut a current turn larger than the turns' share (`cut_turn`); False keeps it whole.

    Returns:
        The dropped and kept earlier turns and the current turn. Dropped turns are always the
        oldest: kept ones are the newest that fit.
    """
    turns = split_turns(messages)
    if not turns:
        return Window()
    *history, current = turns
    if agent is not None:
        history = [turn for turn in history if agent in answered_by(turn)]
    budget = max_tokens - reserve
    if cut:
        current = cut_turn(current, budget, limit=max_tokens)
    budget -= count_tokens_approximately(current)
    first = len(history)
    oldest_allowed = len(history) - max_pairs if max_pairs > 0 else len(history)
    while first > max(oldest_allowed, 0):
        cost = count_tokens_approximately(history[first - 1])
        if cost > budget:
            break
        budget -= cost
        first -= 1
    return Window(dropped=history[:first], kept=history[first:], current=current)


def agent_view(
    messages: Sequence[AnyMessage],
    agent: str | None,
    *,
    max_pairs: int,
    max_tokens: int,
) -> list[AnyMessage]:
    """The slice of the conversation an agent sees for the current (last) turn, trimmed only.

    Args:
        messages: The whole thread, oldest first; the last turn is the one being answered.
        agent: Only earlier turns this agent replied in are kept; `None` keeps every turn (for
            patterns whose agents share one conversation, such as the swarm).
        max_pairs: Most earlier turns to keep, newest first.
        max_tokens: Approximate token budget; the oldest kept turns are dropped until the view fits.
            The current turn is always kept whole, whatever its size (agents' views cut it:
            `switchyard.nodes.agent.own_view` uses `window`).

    Returns:
        The messages of the kept turns, oldest first, followed by the current turn.
    """
    return window(messages, agent, max_pairs=max_pairs, max_tokens=max_tokens, cut=False).messages


def fit_view(messages: Sequence[AnyMessage], max_tokens: int) -> list[AnyMessage]:
    """A view that grew past its window during an agent call (tool results), fitted again.

    What comes before the first user message (the agent's memory notes) is kept; of the turns
    after it, the oldest are dropped first, then the current turn is cut (`cut_turn`). A view
    that fits is returned as it is (the same list).
    """
    if _surely_within(messages, max_tokens) or count_tokens_approximately(messages) <= max_tokens:
        return messages if isinstance(messages, list) else list(messages)
    start = next((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), None)
    if start is None:
        return cut_turn(list(messages), max_tokens)
    lead = list(messages[:start])
    body = messages[start:]
    fitted = window(
        body,
        None,
        max_pairs=len(body),
        max_tokens=max_tokens,
        reserve=count_tokens_approximately(lead),
    )
    return lead + fitted.messages


def _surely_within(messages: Sequence[AnyMessage], max_tokens: int) -> bool:
    """Whether plain text messages fit `max_tokens` by a bound quicker than counting them.

    `fit_view` runs on every model call: this bound (a token per 4 characters, as
    `count_tokens_approximately` counts, plus 30 a message for its role, name and overhead)
    saves counting the usual view that is well within its window.
    """
    total = 0
    for message in messages:
        content = message.content
        if not isinstance(content, str) or isinstance(message, ToolMessage):
            return False
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            return False
        total += len(content) // _CHARS_PER_TOKEN + 30
    return total <= max_tokens


def _units(turn: Turn) -> list[Turn]:
    """A turn in pieces that may be dropped whole: a message, or a tool call with its results."""
    units: list[Turn] = []
    for message in turn:
        if isinstance(message, ToolMessage) and units and _calls(units[-1]):
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _calls(unit: Turn) -> bool:
    return isinstance(unit[0], AIMessage) and bool(unit[0].tool_calls)


def _marker(chars: int, limit: int) -> str:
    return CUT_MARKER.format(tokens=max(1, chars // _CHARS_PER_TOKEN), limit=limit)


def _shortened(message: AnyMessage, keep: int, limit: int) -> AnyMessage:
    """`message` with its text cut to about `keep` characters (start and end), marked."""
    text = message.content
    if not isinstance(text, str) or len(text) <= keep:
        return message
    head = keep * 2 // 3
    tail = keep - head
    cut = text[head : len(text) - tail]
    content = f"{text[:head]}\n{_marker(len(cut), limit)}\n{text[len(text) - tail :]}"
    return message.model_copy(update={"content": content})


def _cut_texts(turn: Turn, budget: int, limit: int) -> Turn:
    """Cut the longest texts of `turn`, each to one length (their start and end kept).

    The length is the longest that brings the turn within `budget`, but no shorter than
    `_MIN_KEPT_CHARS`: what still does not fit is left to `cut_turn` to drop.
    """
    low = _MIN_KEPT_CHARS
    high = max((len(m.content) for m in turn if isinstance(m.content, str)), default=0)
    best = [_shortened(m, low, limit) for m in turn]
    while low < high:  # the largest length that fits
        middle = (low + high + 1) // 2
        trial = [_shortened(m, middle, limit) for m in turn]
        if count_tokens_approximately(trial) <= budget:
            low, best = middle, trial
        else:
            high = middle - 1
    return best


def cut_turn(turn: Turn, budget: int, *, limit: int | None = None) -> Turn:
    """The current turn, fitted to `budget` tokens when it alone exceeds it.

    First the longest texts are cut, each keeping its start and end around a marker
    (`CUT_MARKER`, naming the window `limit`); if that is not enough (many steps in the turn),
    whole steps after the user message are dropped, oldest first, and the marker is added to the
    user message. A step is a message, or a tool call with its results: a call is never separated
    from its result. The user message and the newest step are always kept, so the turn may still
    exceed a budget too small for them and the markers.

    Own code, not LangChain's `trim_messages`: that drops whole messages (or cuts the first or
    last one with `allow_partial`), leaves no marker, and would drop the user message.
    """
    if count_tokens_approximately(turn) <= budget:
        return turn
    shown = limit if limit is not None else budget
    fitted = _cut_texts(turn, budget, shown)
    if count_tokens_approximately(fitted) <= budget:
        return fitted
    first, *steps = _units(fitted)
    dropped = 0
    while len(steps) > 1:
        dropped += sum(
            len(str(m.content)) + len(str(getattr(m, "tool_calls", ""))) for m in steps[0]
        )
        steps = steps[1:]
        fitted = [_noted(first[0], _marker(dropped, shown)), *(m for step in steps for m in step)]
        if count_tokens_approximately(fitted) <= budget:
            break
    return fitted


def _noted(message: AnyMessage, note: str) -> AnyMessage:
    """`message` with `note` added at the end of its text."""
    content = message.content
    if isinstance(content, str):
        return message.model_copy(update={"content": f"{content}\n{note}"})
    return message.model_copy(update={"content": [*content, {"type": "text", "text": note}]})
