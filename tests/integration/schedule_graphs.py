"""Graphs the scheduler tests fire, by import path (`tests.integration.schedule_graphs:<name>`).

- `slow`: answers after `SCHEDULE_TEST_SLOW_S` seconds (default 30), so firings overlap;
- `failing`: every run fails;
- `scheduling`: its run tries to schedule another job (allowed only if its job allows it);
- `recorded`: appends each message it gets to the file `SCHEDULE_TEST_RECORD` names (one line per
  run), so a test can count how often each firing really ran, across processes.
"""

from __future__ import annotations

import asyncio
import os

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from switchyard.runtime.scheduler import schedule

SLOW_ENV = "SCHEDULE_TEST_SLOW_S"
RECORD_ENV = "SCHEDULE_TEST_RECORD"


async def _slow(state: MessagesState) -> dict[str, list[AIMessage]]:
    await asyncio.sleep(float(os.environ.get(SLOW_ENV, "30")))
    return {"messages": [AIMessage("slow answer")]}


async def _failing(state: MessagesState) -> dict[str, list[AIMessage]]:
    raise RuntimeError("the monitored service is down")


async def _scheduling(state: MessagesState) -> dict[str, list[AIMessage]]:
    job = schedule("router", "made by a scheduled run", every_s=3600)
    return {"messages": [AIMessage(f"scheduled {job.id}")]}


async def _recorded(state: MessagesState) -> dict[str, list[AIMessage]]:
    text = str(state["messages"][-1].content)
    with open(os.environ[RECORD_ENV], "a", encoding="utf-8") as record:
        record.write(text + "\n")
    return {"messages": [AIMessage(f"recorded {text}")]}


def _one_node(
    name: str, node: object
) -> CompiledStateGraph[MessagesState, None, MessagesState, MessagesState]:
    builder = StateGraph(MessagesState)
    builder.add_node("work", node)  # type: ignore[call-overload]
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile(name=name)


slow = _one_node("slow", _slow)
failing = _one_node("failing", _failing)
scheduling = _one_node("scheduling", _scheduling)
recorded = _one_node("recorded", _recorded)
