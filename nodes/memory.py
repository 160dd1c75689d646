"""Summarised memory: the turns an agent's window drops are condensed, not forgotten.

"Last N turns + key facts": when an agent's view exceeds its window (`AgentSpec.max_message_pairs`,
`max_context_tokens`), `remembered_view` puts an `EarlierTurns` marker first in the view, holding
the dropped turns. `SummarizedMemory`, the outermost of the agent's default middleware, replaces
it before the model call by one system message with the agent's `MemoryNotes` (a running summary
and key facts), after summarising the dropped turns the notes do not cover yet. So the agent sees
its system prompt, its notes, then its last N turns (tool calls with their results).

The notes are written once per session as turns drop out: they are session-scoped middleware
state (`agent_state[agent]["memory"]`, checkpointed with the thread), and only newly dropped turns
are summarised, never the whole history again. The summariser's model call goes down the agent's
own chain (fallback models, retries, budgets, breaker, usage ledger, time limits), so it is
charged to the agent like any call. On the offline model the notes are extractive (`extract`):
the offline model answers every request with a simulated reply that quotes it, which would make
a useless summary. If the summariser fails, the turn goes on with plain trimming (and the notes
so far), and the failure is logged.

Where it applies: agents that see the conversation, that is the router's agents
(`transcript_view`), every swarm agent (`shared_view`), the supervisor itself
(`supervisor_view`) and the hierarchical manager (`history`). Workers that see only their task
(supervisor and hierarchical workers, pipeline stages, fan-out workers and merger, event
handlers) have no dropped turns, so no memory. Graph agents (`AgentSpec.graph`) manage their own
context. Per run, `Context.memory` turns it on or off for every agent and `Context.memory_model`
picks the summariser.

What is reused from LangChain's `SummarizationMiddleware`: its summary prompt
(`DEFAULT_SUMMARY_PROMPT`, with our key-facts block spliced in before its `<messages>` marker, as
its documented contract allows), its token counting (`count_tokens_approximately`) and its
trimming of what is sent to the summariser (`trim_messages`, the same settings as its
`_trim_messages_for_summary`). Its hooks are not used, because they do not do what is asked here:
it summarises the transcript of one agent call in place (every message replaced by one summary
message), so with views rebuilt from the shared thread on every call it would summarise again on
every call; it keeps no facts; and it calls its model directly (`model.with_retry`), outside the
agent's budgets and usage ledger.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain.agents.middleware.summarization import DEFAULT_SUMMARY_PROMPT
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import (
    count_tokens_approximately,
    get_buffer_string,
    trim_messages,
)
from langgraph.channels import UntrackedValue
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command

from switchyard.core.models import default_max_tokens, load_chat_model
from switchyard.core.offline import OFFLINE_MARKER, OfflineChatModel
from switchyard.core.redact import masked_logger
from switchyard.guardrails.scope import current_scope
from switchyard.state.agents import AgentSpec
from switchyard.state.context import Context, current_context
from switchyard.state.memory import (
    MEMORY_KEY,
    EarlierTurns,
    MemoryNotes,
    MemoryPolicy,
)
from switchyard.state.views import fit_view, window

logger = masked_logger(__name__)

TRIM_TOKENS_TO_SUMMARIZE = 4000
"""Most tokens of dropped turns sent to the summariser at once (SummarizationMiddleware's
default): the newest are kept."""

FACTS_HEADING = "KEY FACTS"

_FACTS_BLOCK = """<previous_memory>
What you wrote about even earlier turns. Extend this summary with the messages below; keep what
still matters from it.
{summary}
Key facts already recorded (do not repeat them):
{facts}
</previous_memory>

<key_facts>
End your answer with a section `## {heading}`: one line per durable fact stated in the messages
below that is not recorded yet (names, numbers, identifiers, dates, preferences, decisions,
constraints), each line starting with "- ", at most {max_facts} lines; write "None" if there are
none. Keep your whole answer under {words} words.
</key_facts>

"""

_HEADING = re.compile(r"^\s*#{1,6}\s*(.+?)\s*:?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_FACT_HINTS = re.compile(
    r"\d|\b(my|our|mine|i am|i'm|i live|i work|call me|named?|remember|prefer|always|never|"
    r"deadline|budget|must|need to)\b",
    re.IGNORECASE,
)


PENDING_KEY = "memory_pending"
"""Run-scoped: notes written in this run, for the agent's later calls in it (a failed call's
update never reaches the state; the next call of the run that succeeds stores them)."""


class MemoryState(AgentState[Any]):
    """The middleware's state: the agent's notes (session-scoped, so checkpointed per agent)."""

    memory: NotRequired[dict[str, Any]]
    memory_pending: NotRequired[Annotated[dict[str, Any], UntrackedValue]]


def memory_policy(spec: AgentSpec, context: Context) -> MemoryPolicy | None:
    """The agent's memory settings in this run, or None when its dropped turns are forgotten.

    `Context.memory` overrides the agent's `memory.enabled`, `Context.memory_model` its
    `memory.model`. Off for graph agents (they manage their own context) and for agents whose
    chain has no `SummarizedMemory` (`default_middleware=False` without one in `middleware`).
    """
    policy = spec.memory
    enabled = context.memory if context.memory is not None else policy.enabled
    if not enabled or spec.graph is not None:
        return None
    if not spec.default_middleware and not any(
        isinstance(m, SummarizedMemory) for m in spec.middleware
    ):
        return None
    if context.memory_model:
        policy = policy.model_copy(update={"model": context.memory_model})
    return policy


def notes_budget(policy: MemoryPolicy, max_tokens: int) -> int:
    """Tokens of a window of `max_tokens` the notes may take: the policy's, at most a quarter."""
    return min(policy.max_tokens, max_tokens // 4)


def remembered_view(
    messages: Sequence[AnyMessage],
    agent: str | None,
    *,
    max_pairs: int,
    max_tokens: int,
    policy: MemoryPolicy | None,
) -> list[AnyMessage]:
    """An agent's view: its window of `messages`, the dropped turns marked for its memory.

    Without a policy (memory off) the dropped turns are left out. With one, and turns dropped,
    the window keeps `notes_budget` tokens free and the view starts with an `EarlierTurns`
    marker of the dropped turns, which `SummarizedMemory` replaces by the notes. An oversized
    current turn is cut to the window either way (`switchyard.state.views.cut_turn`).
    """
    seen = window(messages, agent, max_pairs=max_pairs, max_tokens=max_tokens)
    if policy is None or not seen.dropped:
        return seen.messages
    reserve = notes_budget(policy, max_tokens)
    seen = window(messages, agent, max_pairs=max_pairs, max_tokens=max_tokens, reserve=reserve)
    return [EarlierTurns.of(seen.dropped, reserve), *seen.messages]


# -- summarisers -------------------------------------------------------------------------------


def summary_prompt(
    messages: Sequence[BaseMessage], notes: MemoryNotes, policy: MemoryPolicy
) -> str:
    """LangChain's summary prompt for `messages`, asking for key facts, given the notes so far."""
    block = _FACTS_BLOCK.format(
        summary=notes.summary or "None",
        facts="\n".join(f"- {fact}" for fact in notes.facts) or "None",
        heading=FACTS_HEADING,
        max_facts=policy.max_facts,
        words=max(50, policy.max_tokens * 3 // 5),
    )
    prompt = DEFAULT_SUMMARY_PROMPT.replace("<messages>", block + "<messages>", 1)
    return prompt.replace("{messages}", get_buffer_string(messages, format="xml"), 1).rstrip()


def to_summarize(turns: Sequence[Sequence[AnyMessage]]) -> list[BaseMessage]:
    """The messages of `turns` as the summariser gets them (the newest that fit its limit)."""
    messages: list[BaseMessage] = [m for turn in turns for m in turn]
    try:
        trimmed: list[BaseMessage] = trim_messages(
            messages,
            max_tokens=TRIM_TOKENS_TO_SUMMARIZE,
            token_counter=count_tokens_approximately,
            start_on="human",
            strategy="last",
            allow_partial=True,
            include_system=True,
        )
    except Exception:  # as SummarizationMiddleware does: an odd transcript is sent as it is
        return messages[-15:]
    return trimmed or messages[-15:]


def parse_summary(text: str) -> tuple[str, list[str]]:
    """(summary, facts) from a summariser's answer: the `## KEY FACTS` bullets are the facts."""
    summary: list[str] = []
    facts: list[str] = []
    in_facts = False
    for line in text.strip().splitlines():
        heading = _HEADING.match(line)
        if heading:
            in_facts = heading.group(1).strip("*_ ").upper() == FACTS_HEADING
            if in_facts:
                continue
        if not in_facts:
            summary.append(line)
            continue
        bullet = _BULLET.match(line)
        fact = bullet.group(1) if bullet else line.strip()
        if fact and fact.strip(". ").lower() != "none":
            facts.append(fact)
    return "\n".join(summary).strip(), facts


def _excerpt(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def extract(messages: Sequence[BaseMessage], policy: MemoryPolicy) -> str:
    """An extractive summary of `messages`, in the form a model answers (the offline summariser).

    The summary lists what was asked and answered, turn by turn; the key facts are the user's
    and the tools' sentences that state something durable (a number, a name, "my ...", a
    preference or a constraint). No model is called. The offline model's own replies, which
    only say they are simulated, are left out.
    """
    lines: list[str] = []
    facts: list[str] = []
    for message in messages:
        text = message.text
        if not text.strip() or text.startswith(OFFLINE_MARKER):
            continue
        if isinstance(message, HumanMessage):
            lines.append(f"- The user said: {_excerpt(text, 160)}")
        elif isinstance(message, AIMessage):
            lines.append(f"- {message.name or 'The agent'} answered: {_excerpt(text, 160)}")
        elif isinstance(message, ToolMessage):
            lines.append(f"- Tool {message.name or 'tool'} returned: {_excerpt(text, 120)}")
        if isinstance(message, HumanMessage | ToolMessage):
            facts += [
                _excerpt(sentence, 200)
                for sentence in _SENTENCE.split(text.strip())
                if _FACT_HINTS.search(sentence) and not sentence.rstrip().endswith("?")
            ]
    fact_lines = [f"- {fact}" for fact in facts[-policy.max_facts :]] or ["None"]
    return "\n".join(["## SUMMARY", *lines, "", f"## {FACTS_HEADING}", *fact_lines])


# -- the middleware ----------------------------------------------------------------------------


@dataclass
class _Step:
    """What one model call of the agent needs of its memory (`SummarizedMemory._step`)."""

    marker: EarlierTurns | None = None
    policy: MemoryPolicy | None = None
    notes: MemoryNotes = field(default_factory=MemoryNotes)
    new: list[tuple[str, list[AnyMessage]]] = field(default_factory=list)
    update: MemoryNotes | None = None  # notes to write to the agent's state


class SummarizedMemory(AgentMiddleware[MemoryState, Context, Any]):
    """An agent's summarised memory of the turns its window drops (see the module docstring).

    On every model call of the agent: the view's `EarlierTurns` marker is replaced by the
    agent's notes, after the dropped turns they do not cover yet are summarised (once: the new
    notes go to the session's state, and to the run's scope at once, so a later call of the run
    uses them even if this one fails); and the request is fitted to the agent's window again,
    since tool results may have grown the current turn during the call (`fit_view`).

    Outermost of the agent's default middleware but for the tripwires: the summariser's call
    goes down the rest of the chain, so it is admitted by the budgets, retried, broken, timed
    and charged like the agent's own calls (user middleware and tripwires do not see it).

    Args:
        spec: The agent whose memory this is (its `memory` settings, the run's overrides).
    """

    state_schema = MemoryState

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__()
        self.spec = spec

    def _step(self, request: ModelRequest[Any]) -> _Step:
        first = request.messages[0] if request.messages else None
        if not isinstance(first, EarlierTurns):
            return _Step()
        state = request.state or {}
        stored = MemoryNotes.of(state.get(MEMORY_KEY))
        pending = MemoryNotes.of(state.get(PENDING_KEY))
        step = _Step(marker=first, policy=memory_policy(self.spec, _context(request)))
        step.notes = stored
        if pending.turns > stored.turns:  # summarised earlier in this run, not stored yet
            step.notes = step.update = pending
        if step.policy is not None:
            step.new = first.unseen(step.notes)
        return step

    def _summary_request(self, request: ModelRequest[Any], step: _Step) -> ModelRequest[Any]:
        assert step.policy is not None
        model = request.model
        if step.policy.model:  # bounded as every call is (the agents' own model already is)
            name = step.policy.model
            model = load_chat_model(name, max_tokens=default_max_tokens(name))
        prompt = summary_prompt(_messages(step), step.notes, step.policy)
        return request.override(
            model=model,
            system_message=None,
            messages=[HumanMessage(prompt)],
            tools=[],
            response_format=None,
        )

    def _summarised(self, step: _Step, text: str) -> None:
        assert step.policy is not None
        summary, facts = parse_summary(text)
        step.notes = step.update = step.notes.add(
            summary,
            facts,
            through=step.new[-1][0],
            turns=len(step.new),
            max_facts=step.policy.max_facts,
        )
        scope = current_scope()
        if scope is not None:
            scope.set_agent_values(self.spec.name, {PENDING_KEY: step.notes.model_dump()})

    def _failed(self, step: _Step, exc: Exception) -> None:
        logger.warning(
            "agent %r: its memory could not be updated (%s: %s); %d dropped turn(s) are only "
            "trimmed this time and will be summarised on a later turn",
            self.spec.name,
            type(exc).__name__,
            exc,
            len(step.new),
        )

    def _fitted(self, request: ModelRequest[Any], step: _Step) -> ModelRequest[Any]:
        """The agent's request: its notes in place of the marker, fitted to its window."""
        messages = list(request.messages)
        if step.marker is not None:
            messages = messages[1:]
            if step.notes.turns:
                messages.insert(0, step.notes.as_message(step.marker.budget))
        context = _context(request)
        max_tokens = context.max_context_tokens or self.spec.max_context_tokens
        fitted = fit_view(messages, max_tokens)
        if step.marker is None and fitted is messages:
            return request
        return request.override(messages=fitted)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        """Summarise newly dropped turns (once), then call the model with the notes in view."""
        step = self._step(request)
        if step.new:
            try:
                if _offline(request, step):
                    text = extract(_messages(step), step.policy)  # type: ignore[arg-type]
                else:
                    reply = handler(self._summary_request(request, step))
                    text = reply.result[0].text if reply.result else ""
                self._summarised(step, text)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                self._failed(step, exc)
        return _with_notes(handler(self._fitted(request, step)), step.update)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        """Async form of `wrap_model_call`."""
        step = self._step(request)
        if step.new:
            try:
                if _offline(request, step):
                    text = extract(_messages(step), step.policy)  # type: ignore[arg-type]
                else:
                    reply = await handler(self._summary_request(request, step))
                    text = reply.result[0].text if reply.result else ""
                self._summarised(step, text)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                self._failed(step, exc)
        return _with_notes(await handler(self._fitted(request, step)), step.update)


def _messages(step: _Step) -> list[BaseMessage]:
    return to_summarize([turn for _, turn in step.new])


def _offline(request: ModelRequest[Any], step: _Step) -> bool:
    """Whether the summariser is the offline model (whose notes are extractive)."""
    assert step.policy is not None
    if step.policy.model:
        name = step.policy.model
        return isinstance(
            load_chat_model(name, max_tokens=default_max_tokens(name)), OfflineChatModel
        )
    return isinstance(request.model, OfflineChatModel)


def _context(request: ModelRequest[Any]) -> Context:
    context = getattr(request.runtime, "context", None)
    return context if isinstance(context, Context) else current_context()


def _with_notes(
    response: ModelResponse[Any], notes: MemoryNotes | None
) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
    """The response, carrying the new notes as a state update when there are new notes."""
    if notes is None:
        return response
    update = {MEMORY_KEY: notes.model_dump(mode="json")}
    return ExtendedModelResponse(model_response=response, command=Command(update=update))
