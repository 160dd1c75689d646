"""Summarised memory of one agent: "last N turns + key facts", as settings and as state.

An agent sees its system prompt, then one system message with the summary and key facts of the
turns its window dropped (`MemoryNotes.as_message`), then its last N turns. The notes are kept per
agent and per session in the graph's `agent_state` channel (key `MEMORY_KEY`), written by the
`SummarizedMemory` middleware (`switchyard.nodes.memory`) each time turns drop out of the window:
only the newly dropped turns are summarised, never the whole history again.

The view tells the middleware which turns it dropped with an `EarlierTurns` message, first in the
view; the middleware replaces it by the notes before any model sees it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from pydantic import BaseModel, ConfigDict, Field

MEMORY_KEY = "memory"
"""The key of an agent's `MemoryNotes` (as a dict) in its entry of the `agent_state` channel."""

_SPACE = re.compile(r"\s+")


class MemoryPolicy(BaseModel):
    """How an agent remembers the turns its window drops (`AgentSpec.memory`).

    Example:
        ```python
        AgentSpec(..., max_message_pairs=3, memory=MemoryPolicy(model="openai:gpt-4o-mini"))
        AgentSpec(..., memory=False)  # plain trimming: dropped turns are forgotten
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Summarise the turns the agent's window drops; False: they are forgotten.",
    )
    model: str | None = Field(
        default=None,
        description="Model that writes the summary; None: the agent's own model in the run. "
        "On the offline model the summary is extractive (no model is called).",
    )
    max_facts: int = Field(
        default=20, gt=0, le=200, description="Most key facts kept (the newest win)."
    )
    max_tokens: int = Field(
        default=400,
        gt=0,
        description="Most tokens of the agent's window the summary and facts take (at most a "
        "quarter of max_context_tokens).",
    )


class MemoryNotes(BaseModel):
    """What an agent remembers of the turns its window dropped: a running summary and key facts.

    Attributes:
        summary: The running summary of every dropped turn so far.
        facts: Durable facts stated in those turns (names, numbers, decisions), oldest first.
        turns: How many turns the notes cover.
        through: The key (`turn_key`) of the newest turn they cover.
    """

    model_config = ConfigDict(extra="ignore")

    summary: str = ""
    facts: list[str] = Field(default_factory=list)
    turns: int = 0
    through: str | None = None

    @classmethod
    def of(cls, value: Any) -> MemoryNotes:
        """The notes stored in state (a dict, as checkpointed), or empty notes."""
        if isinstance(value, MemoryNotes):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        return cls()

    def add(
        self, summary: str, facts: Sequence[str], *, through: str, turns: int, max_facts: int
    ) -> MemoryNotes:
        """The notes after `turns` more turns were summarised (see `add_facts`)."""
        return MemoryNotes(
            summary=summary.strip() or self.summary,
            facts=add_facts(self.facts, facts, max_facts),
            turns=self.turns + turns,
            through=through,
        )

    def text(self) -> str:
        """The notes as the agent reads them."""
        lines = [f"Summary of {self.turns} earlier turn(s) of this conversation, not shown:"]
        lines.append(self.summary or "(none)")
        if self.facts:
            lines.append("Key facts:")
            lines += [f"- {fact}" for fact in self.facts]
        return "\n".join(lines)

    def as_message(self, max_tokens: int) -> SystemMessage:
        """The notes as one system message of at most about `max_tokens` tokens.

        Facts are kept before the summary: when the two do not fit, the summary is shortened
        first, then the oldest facts go.
        """
        notes = self
        while True:
            message = SystemMessage(notes.text())
            over = count_tokens_approximately([message]) - max_tokens
            if over <= 0:
                return message
            if len(notes.summary) > 60:  # shorter each time: over >= 1
                keep = max(40, len(notes.summary) - over * 4 - 8)
                notes = notes.model_copy(update={"summary": notes.summary[:keep].rstrip() + " …"})
            elif notes.facts:
                notes = notes.model_copy(update={"facts": notes.facts[1:]})
            else:
                return message


def _normal(fact: str) -> str:
    return _SPACE.sub(" ", fact).strip().rstrip(".").casefold()


def add_facts(old: Sequence[str], new: Sequence[str], limit: int) -> list[str]:
    """The reducer of key facts: `old` then `new`, without repeats, the newest `limit` kept.

    A fact stated again (same words, ignoring case, spacing and a final full stop) moves to the
    end, so facts that keep coming up are the last to go. Blank facts are dropped.
    """
    merged: dict[str, str] = {}
    for fact in [*old, *new]:
        text = _SPACE.sub(" ", fact).strip()
        if not text:
            continue
        key = _normal(text)
        merged.pop(key, None)
        merged[key] = text
    return list(merged.values())[-limit:]


def turn_key(turn: Sequence[AnyMessage], index: int) -> str:
    """A turn's identity in the thread: its user message's id, else its position and text."""
    first = turn[0]
    if first.id:
        return str(first.id)
    digest = hashlib.sha256(str(first.content).encode()).hexdigest()[:16]
    return f"{index}:{digest}"


class EarlierTurns(SystemMessage):
    """Stands first in an agent's view for the earlier turns its window dropped.

    The `SummarizedMemory` middleware replaces it by the agent's `MemoryNotes` (summarising the
    turns it has not summarised yet); a model never sees it. If no memory middleware is in the
    agent's chain, its text tells the model that earlier turns are not shown.

    Attributes:
        turns: The dropped turns, oldest first (not serialised: a view is never stored).
        budget: Tokens of the window left for the notes.
    """

    turns: list[list[AnyMessage]] = Field(default_factory=list, exclude=True, repr=False)
    budget: int = Field(default=0, exclude=True)

    @classmethod
    def of(cls, turns: Sequence[Sequence[AnyMessage]], budget: int) -> EarlierTurns:
        """The marker of `turns`, dropped from a window that leaves `budget` tokens for notes."""
        return cls(
            content=f"[{len(turns)} earlier turn(s) of this conversation are not shown: they "
            "are outside this agent's window.]",
            turns=[list(turn) for turn in turns],
            budget=budget,
        )

    def unseen(self, notes: MemoryNotes) -> list[tuple[str, list[AnyMessage]]]:
        """The dropped turns `notes` do not cover yet, with their keys, oldest first.

        Windows drop the oldest turns, so the dropped turns are always the start of the agent's
        history: the ones after `notes.through` are new. When `notes.through` is not among them
        (the window grew since), nothing is new.
        """
        keyed = [(turn_key(turn, index), turn) for index, turn in enumerate(self.turns)]
        if notes.through is None:
            return keyed
        keys = [key for key, _ in keyed]
        if notes.through not in keys:
            return []
        return keyed[keys.index(notes.through) + 1 :]
