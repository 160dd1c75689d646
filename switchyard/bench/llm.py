"""The simulated LLM every contender calls: the same latency, the same replies, the same handoffs.

Each benchmark holds the model constant, so what differs between contenders is orchestration. The
model is scripted, not clever: it waits `latency_s` (`asyncio.sleep`, so parallel calls overlap as
real network calls do), then either calls the next handoff tool of its `plan` (when that tool is
offered) or answers with a short fixed text. Whether to hand off is decided from what the call
itself receives (the handoffs already made in the current turn, the tools offered), never from
hidden state, so concurrent sessions and parallel branches are safe and every contender makes
exactly the same calls.

Every contender reaches the model through its own native interface: LangChain-based contenders
(Switchyard, bare LangGraph, langgraph-supervisor / -swarm) through `BenchChatModel`, a subclass of
Switchyard's offline model; the OpenAI Agents SDK through its `Model` interface and Agent Squad
through its `Agent` interface (both in their contender modules); hand-written asyncio through
`RawLLM`. They share `decide`, `reply_text` and `estimate_tokens`, and count into one `Tally`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field, PrivateAttr

from switchyard.core.offline import OfflineChatModel

HANDOFF_PREFIX = "transfer_to_"
"""Prefix of every handoff tool name, in every contender (the convention of all the peers)."""

ANY_PEER = "*"
"""A plan entry meaning "the first handoff tool offered" (a rotation through declared peers)."""

REPLY_WORDS = 24
"""Words in every text reply (about 30 tokens), so message sizes are the same for everyone."""

_ids = itertools.count(1)


@dataclass
class Tally:
    """What the simulated model was asked, summed over every call of one contender.

    Attributes:
        calls: Model calls made.
        input_tokens: Estimated tokens sent to the model (see `estimate_tokens`).
    """

    calls: int = 0
    input_tokens: int = 0

    def add(self, input_tokens: int) -> None:
        """Count one call."""
        self.calls += 1
        self.input_tokens += input_tokens


def decide(plan: Sequence[str], done: int, offered: Collection[str]) -> str | None:
    """The handoff tool to call next, or None to answer.

    Args:
        plan: Handoff targets of one turn, in order (`ANY_PEER` takes the first tool offered).
        done: Handoffs already made in this turn.
        offered: Names of the handoff tools this call may use, in the order they were offered.

    Returns:
        The tool name, when the plan has a next step and its tool is offered; else None.
    """
    if done >= len(plan):
        return None
    target = plan[done]
    if target == ANY_PEER:
        return next((name for name in offered if name.startswith(HANDOFF_PREFIX)), None)
    name = HANDOFF_PREFIX + target
    return name if name in offered else None


def reply_text(done: int) -> str:
    """The fixed text answer (its length is `REPLY_WORDS` words)."""
    words = ["simulated", "answer", f"after-{done}-handoffs"]
    words += [f"w{i}" for i in range(REPLY_WORDS - len(words))]
    return " ".join(words)


def estimate_tokens(texts: Iterable[str]) -> int:
    """Tokens of a request: 4 characters per token plus 3 per message (as providers count)."""
    total = 0
    for text in texts:
        total += len(text) // 4 + 3
    return total


def next_call_id() -> str:
    """A tool call id unique within the process."""
    return f"call_{next(_ids)}"


def handoffs_in_turn(messages: Sequence[BaseMessage]) -> int:
    """Handoff tool calls made since the last user message."""
    count = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage):
            count += sum(
                1 for call in message.tool_calls if call["name"].startswith(HANDOFF_PREFIX)
            )
    return count


def _args_for(parameters: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy a handoff tool's schema (a supervisor's task, a swarm's reason)."""
    properties = parameters.get("properties", {})
    args: dict[str, Any] = {}
    if "task" in properties:
        args["task"] = "Handle your part of the request."
    if "reason" in properties:
        args["reason"] = "The peer is better placed."
    return args


class BenchChatModel(OfflineChatModel):
    """The offline model with a scripted reply policy, for every LangChain-based contender.

    Latency, call counting and tool binding are the offline model's own; only the reply differs:
    a handoff from the plan, else `reply_text`. Usage is reported as a provider would
    (`estimate_tokens`), so Switchyard's budgets meter real numbers.
    """

    plan: tuple[str, ...] = Field(default=(), description="Handoff targets of one turn.")
    _tally: Tally = PrivateAttr(default_factory=Tally)

    @property
    def tally(self) -> Tally:
        """Calls and input tokens seen by this instance."""
        return self._tally

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        offered = {tool["function"]["name"]: tool["function"] for tool in tools}
        done = handoffs_in_turn(messages)
        input_tokens = estimate_tokens(str(m.content) for m in messages)
        self._tally.add(input_tokens)
        target = decide(self.plan, done, list(offered))
        if target is not None:
            call = {
                "name": target,
                "args": _args_for(offered[target].get("parameters", {})),
                "id": next_call_id(),
            }
            message = AIMessage(content="", tool_calls=[call])
            output_tokens = 12
        else:
            message = AIMessage(content=reply_text(done))
            output_tokens = REPLY_WORDS + 8
        return self._billed(message, input_tokens, output_tokens)


@dataclass
class RawReply:
    """What `RawLLM.complete` returns: an answer, or the handoff tool it calls."""

    text: str
    handoff: str | None
    call_id: str


class RawLLM:
    """The simulated model for hand-written asyncio: plain dict messages, no framework."""

    def __init__(self, latency_s: float, plan: Sequence[str] = ()) -> None:
        """Create the model.

        Args:
            latency_s: Seconds each call waits.
            plan: Handoff targets of one turn.
        """
        self.latency_s = latency_s
        self.plan = tuple(plan)
        self.tally = Tally()

    async def complete(
        self, messages: Sequence[dict[str, Any]], offered: Sequence[str] = ()
    ) -> RawReply:
        """One model call on OpenAI-style dict messages (`role`, `content`, optional `handoff`)."""
        done = 0
        for message in reversed(messages):
            if message["role"] == "user":
                break
            if message.get("handoff"):
                done += 1
        self.tally.add(estimate_tokens(str(m["content"]) for m in messages))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        target = decide(self.plan, done, offered)
        if target is not None:
            return RawReply("", target, next_call_id())
        return RawReply(reply_text(done), None, "")
