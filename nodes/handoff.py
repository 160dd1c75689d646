"""Handoff tools, and the `Command`s that carry out (or refuse) a handoff: shared by every pattern.

A handoff tool is offered to an agent's model but never run: `call_agent` stops at the first handoff
call and returns it as `AgentReply.handoff`. The pattern's node then decides: `transfer` sends
control to the peer, `stop` refuses the handoff and ends the run with a reason, `finish` ends the
run with the agent's answer. Every tool call the agent made is answered by exactly one
`ToolMessage`, so the transcript stays valid for real providers. An agent is offered handoff tools
for its declared peers only; a call to any other transfer tool is refused by `call_agent` (an error
`ToolMessage` and a recorded refusal) and the agent carries on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END
from langgraph.types import Command
from pydantic import BaseModel, Field

from switchyard.core.errors import AgentConfigError
from switchyard.core.redact import masked_logger
from switchyard.nodes.record import AgentReply
from switchyard.state.agents import AgentSpec

logger = masked_logger(__name__)

HANDOFF_PREFIX = "transfer_to_"
"""Prefix of every handoff tool's name, as in langgraph-supervisor and langgraph-swarm."""

MAX_TOOL_NAME = 64
"""Longest tool name providers accept (OpenAI's limit; Anthropic's is the same)."""

HANDOFF_METADATA_KEY = "handoff_to"
"""Key of a handoff tool's metadata that names the peer it hands off to."""


class TaskArgs(BaseModel):
    """Arguments of a supervisor's handoff: the task the worker gets instead of the transcript."""

    task: str = Field(
        min_length=1,
        description="A self-contained description of what the worker should do, with every "
        "fact it needs; the worker sees nothing else.",
    )


class TransferArgs(BaseModel):
    """Arguments of a swarm handoff: why the conversation moves (the peer sees the transcript)."""

    reason: str = Field(
        default="", description="Why the peer is better placed to continue the conversation."
    )


def handoff_tool_name(peer: str) -> str:
    """The name of the tool that hands off to `peer`."""
    return f"{HANDOFF_PREFIX}{peer}"


def make_handoff_tool(peer: AgentSpec, *, args_schema: type[BaseModel]) -> BaseTool:
    """A tool that, when an agent calls it, asks the graph to hand control to `peer`.

    Its description is the peer's description, so a model (and the offline model, which matches
    the request against tool names and descriptions) picks the peer that fits the request.
    `call_agent` never runs it; run on its own, it only returns an acknowledgement.

    Raises:
        AgentConfigError: The tool name would exceed the 64 characters providers accept.
    """
    name = handoff_tool_name(peer.name)
    if len(name) > MAX_TOOL_NAME:
        raise AgentConfigError(
            f"agent name {peer.name!r} is too long to hand off to: {name!r} has {len(name)} "
            f"characters and providers accept {MAX_TOOL_NAME}; use a name of at most "
            f"{MAX_TOOL_NAME - len(HANDOFF_PREFIX)} characters"
        )

    def acknowledge(**_: Any) -> str:
        return f"Transferred to {peer.name}."

    return StructuredTool.from_function(
        acknowledge,
        name=name,
        description=f"Transfer to {peer.name}. {peer.description}",
        args_schema=args_schema,
        metadata={HANDOFF_METADATA_KEY: peer.name},
    )


def make_handoff_tools(
    peers: Sequence[AgentSpec], *, args_schema: type[BaseModel] = TransferArgs
) -> list[BaseTool]:
    """One handoff tool per peer, in order (see `make_handoff_tool`)."""
    return [make_handoff_tool(peer, args_schema=args_schema) for peer in peers]


def handoff_target(call: Mapping[str, Any], tools: Sequence[BaseTool]) -> str:
    """The peer a handoff call goes to.

    Raises:
        KeyError: `call` is not a call of any of `tools` (`call_agent` only returns calls of the
            handoff tools it was given, so this means a tool list mix-up).
    """
    for tool in tools:
        if tool.name == call["name"]:
            return str((tool.metadata or {})[HANDOFF_METADATA_KEY])
    raise KeyError(f"{call['name']!r} is not one of the handoff tools {[t.name for t in tools]}")


def current_turn(messages: Sequence[AnyMessage]) -> int:
    """The number of the turn being answered: how many user messages the thread holds (1-based)."""
    return sum(1 for message in messages if message.type == "human")


def close_open_calls(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """`messages` with a placeholder result for every tool call that has none.

    A run that failed between a handoff and its result (a worker's provider error, say) leaves a
    tool call unanswered in the checkpoint; providers reject such a transcript. The placeholder is
    inserted where the result belongs: after the calling message's other results.
    """
    closed: list[AnyMessage] = []
    open_calls: dict[str, str] = {}

    def flush() -> None:
        closed.extend(
            ToolMessage(
                "no result: the run stopped before this call was answered",
                tool_call_id=call_id,
                name=name,
                status="error",
            )
            for call_id, name in open_calls.items()
        )
        open_calls.clear()

    for message in messages:
        if isinstance(message, ToolMessage):
            open_calls.pop(message.tool_call_id, None)
            closed.append(message)
            continue
        flush()
        closed.append(message)
        if isinstance(message, AIMessage):
            open_calls.update({call["id"] or "": call["name"] for call in message.tool_calls})
    flush()
    return closed


def _answers(
    reply: AgentReply, handoff_result: ToolMessage | None, agent: str, peer: str
) -> list[ToolMessage]:
    """Results for every call of the handoff message: the handoff's own, then "not run" notes."""
    assert reply.handoff is not None, "only a reply that hands off has a handoff to answer"
    handoff_id = reply.handoff["id"]
    calling = next(
        m
        for m in reversed(reply.messages)
        if isinstance(m, AIMessage) and any(c["id"] == handoff_id for c in m.tool_calls)
    )
    answers: list[ToolMessage] = []
    for call in calling.tool_calls:
        if call["id"] == handoff_id:
            if handoff_result is not None:
                answers.append(handoff_result)
            continue
        answers.append(
            ToolMessage(
                f"not run: {agent} handed off to {peer} in the same message; "
                "call it again after the handoff if it is still needed",
                tool_call_id=call["id"] or "",
                name=call["name"],
                status="error",
            )
        )
    return answers


def transfer(
    reply: AgentReply,
    *,
    agent: str,
    goto: str,
    result: str | None,
    update: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Command[str]:
    """Hand control to `goto`, answering the agent's handoff call with `result`.

    Args:
        reply: The agent's reply; `reply.handoff` is the call being carried out.
        agent: The agent handing off.
        goto: The node that runs next.
        result: Content of the `ToolMessage` that answers the handoff call; `None` when the peer
            answers it itself (a supervisor's worker reports back as the call's result).
        update: Further state updates (the pattern's own keys).
        notes: Further refusals to record and log (a handoff that went ahead with a correction).

    Returns:
        A `Command` that appends the reply and the answers to `messages`, records usage and
        refusals, applies `update` and goes to `goto`.
    """
    assert reply.handoff is not None, "transfer needs a reply that hands off"
    answer = None
    if result is not None:
        answer = ToolMessage(result, tool_call_id=reply.handoff["id"], name=reply.handoff["name"])
    messages = [*reply.messages, *_answers(reply, answer, agent, goto)]
    for note in notes:
        logger.warning("agent %s: %s", agent, note)
    return Command(
        goto=goto,
        update={
            "messages": messages,
            "usage": reply.usage,
            "refusals": [*reply.refusals, *notes],
            **(update or {}),
        },
    )


def stop(
    reply: AgentReply,
    *,
    agent: str,
    end_reason: str,
    refusal: str,
    explanation: str,
    update: Mapping[str, Any] | None = None,
) -> Command[str]:
    """Refuse the agent's handoff and end the run with `end_reason`, keeping the partial result.

    The handoff call is answered with an error `ToolMessage` carrying `refusal` (also recorded in
    `refusals` and logged), and `explanation` is appended as an `AIMessage` named after `agent`, so
    the user sees why the run stopped.
    """
    assert reply.handoff is not None, "stop refuses a handoff; use finish for an answer"
    peer = reply.handoff["name"].removeprefix(HANDOFF_PREFIX)
    refused = ToolMessage(
        refusal, tool_call_id=reply.handoff["id"], name=reply.handoff["name"], status="error"
    )
    logger.warning("agent %s: %s; run ends: %s", agent, refusal, end_reason)
    messages = [
        *reply.messages,
        *_answers(reply, refused, agent, peer),
        AIMessage(explanation, name=agent),
    ]
    return Command(
        goto=END,
        update={
            "messages": messages,
            "usage": reply.usage,
            "refusals": [*reply.refusals, refusal],
            "end_reason": end_reason,
            **(update or {}),
        },
    )


def finish(reply: AgentReply, *, update: Mapping[str, Any] | None = None) -> Command[str]:
    """End the run with the agent's answer (`end_reason="completed"`)."""
    assert reply.handoff is None, "finish takes an answer; use transfer or stop for a handoff"
    return Command(
        goto=END,
        update={
            "messages": list(reply.messages),
            "usage": reply.usage,
            "refusals": list(reply.refusals),
            "end_reason": "completed",
            **(update or {}),
        },
    )


def finish_or_unread(
    reply: AgentReply, *, agent: str, update: Mapping[str, Any] | None = None
) -> Command[str]:
    """`finish` with the answer, unless it names a handoff its model could not make.

    A model that can neither call tools nor write a call Switchyard can read
    (`AgentReply.unread_handoff`) ends the run with `no_handoff_capability` and says so, instead
    of returning the text of its attempt as a completed answer.
    """
    if reply.unread_handoff is None:
        return finish(reply, update=update)
    refusal = (
        f"agent {agent}'s model named {reply.unread_handoff} but made no call of it that could "
        "be read (no native tool call, no JSON call)"
    )
    logger.warning("%s; run ends: no_handoff_capability", refusal)
    explanation = (
        f"Stopped (no_handoff_capability): the {agent} agent's model tried to hand off "
        f"({reply.unread_handoff}) but can neither call tools nor write a readable call; use a "
        "model with tool calling for this pattern."
    )
    return Command(
        goto=END,
        update={
            "messages": [*reply.messages, AIMessage(explanation, name=agent)],
            "usage": reply.usage,
            "refusals": [*reply.refusals, refusal],
            "end_reason": "no_handoff_capability",
            **(update or {}),
        },
    )
