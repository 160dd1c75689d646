"""Every call is charged: retries, re-asks and calls that failed, in the ledger and the budgets.

A call that was answered and then rejected (its output failed the schema) was billed by the
provider; a call abandoned at its time limit had its prompt sent. Both are in the run's usage, in
the session's checkpointed ledger, and so in what the next turn's budgets start from.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from switchyard import AgentSpec, Budget, Context, build_pipeline_graph
from switchyard.runtime.run import run
from tests.fakes import scripted
from tests.patterns import PATTERNS, helper

PER_CALL = 15
"""Tokens each scripted reply reports (10 in, 5 out)."""


class Ticket(BaseModel):
    """What the agent must answer with."""

    summary: str
    priority: int


def rejected_twice(model: str, **changes: Any) -> AgentSpec:
    """An agent whose answers never fit its schema: asked, re-asked, then failed."""
    return helper(model=model, output_schema=Ticket, **changes)


pytestmark = pytest.mark.usefixtures("eager")


@pytest.mark.parametrize("entry", ["run", "invoke"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_a_call_rejected_by_its_schema_is_charged_in_every_pattern(
    pattern: str, entry: str
) -> None:
    with scripted("fake:helper", "not a ticket", "still not a ticket") as model:
        graph = PATTERNS[pattern](rejected_twice("fake:helper"))
        if entry == "run":
            usage = run(graph, "I need a refund", user_id="ada", session_id="s", dlq=None).usage
        else:
            state = graph.invoke(
                {"messages": [HumanMessage("I need a refund")]},
                {"configurable": {"thread_id": "t"}},
            )
            usage = state["usage"]
    assert len(model.calls) == 2  # the call and its re-ask
    entry_of = usage["helper/fake:helper"]
    assert (entry_of["calls"], entry_of["total_tokens"]) == (2, 2 * PER_CALL)


def estimate_of_a_turn(graph: Any) -> int:
    """Tokens the budget expects a turn's call to use (read off a refusal; nothing is sent)."""
    probe = Context(session_budget=Budget(max_tokens=1))
    refused = run(graph, "hi", user_id="ada", session_id="probe", dlq=None, context=probe)
    assert refused.end_reason == "budget_exceeded"
    found = re.search(r"~(\d+) for this call", str(refused.error))
    assert found is not None, refused.error
    return int(found.group(1))


def test_the_next_turns_budget_starts_from_the_failed_calls() -> None:
    graph = build_pipeline_graph([rejected_twice("fake:helper")]).compile(
        checkpointer=InMemorySaver()
    )
    with scripted("fake:helper", "not a ticket", "not a ticket", "not a ticket either"):
        # room for one turn's estimate, not for it and the 30 tokens of two rejected answers
        tight = Context(session_budget=Budget(max_tokens=estimate_of_a_turn(graph) + PER_CALL))
        failed = run(graph, "hi", user_id="ada", session_id="spent", dlq=None)
        assert failed.total_tokens == 2 * PER_CALL
        fresh = run(graph, "hi", user_id="ada", session_id="fresh", dlq=None, context=tight)
        assert fresh.total_tokens == PER_CALL  # its first call was admitted (its re-ask was not)
        again = run(graph, "hi", user_id="ada", session_id="spent", dlq=None, context=tight)
    assert again.end_reason == "budget_exceeded"
    assert again.total_tokens == 0  # refused before any call
