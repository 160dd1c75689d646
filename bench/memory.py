"""What summarised memory costs per model call, and what it sends, on a 2-core machine.

1. `SummarizedMemory.wrap_model_call` with nothing dropped (the common call): the layer fits the
   request to the window (`fit_view`) and passes it on; timed against a handler that returns at
   once, on a 21-message view (10 earlier turns and the current one).
2. The view: `remembered_view` (memory on) against `agent_view` (plain trimming), same thread.
3. What an agent is sent for a ~50,000-token user message with `max_context_tokens=1000`.

Each figure is the median, over `--rounds` rounds, of a round's mean microseconds per call.
Usage: `.venv/bin/python bench/memory.py`. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from typing import Any

from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.runtime import Runtime

from switchyard import AgentSpec, Context
from switchyard.core.models import load_chat_model
from switchyard.nodes.memory import SummarizedMemory, remembered_view
from switchyard.state.memory import MemoryPolicy
from switchyard.state.views import agent_view


def _median_us(func: Any, number: int, rounds: int) -> float:
    return statistics.median(
        timeit.timeit(func, number=number) / number * 1e6 for _ in range(rounds)
    )


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    thread: list[AnyMessage] = []
    for i in range(10):
        thread += [
            HumanMessage(f"question {i} " * 20, id=f"h{i}"),
            AIMessage(f"answer {i} " * 40, name="a"),
        ]
    thread.append(HumanMessage("now"))
    policy = MemoryPolicy()
    view = remembered_view(thread, "a", max_pairs=10, max_tokens=8000, policy=policy)
    request: ModelRequest[Any] = ModelRequest(
        model=load_chat_model("offline"),
        messages=view,
        system_message=SystemMessage("s"),
        tools=[],
        response_format=None,
        state={"messages": view},
        runtime=Runtime(context=Context()),
    )
    response: ModelResponse[Any] = ModelResponse(result=[AIMessage("ok")])
    layer = SummarizedMemory(AgentSpec(name="a", description="An agent."))
    layered = _median_us(lambda: layer.wrap_model_call(request, lambda r: response), 5000, rounds)
    print(f"wrap_model_call, nothing dropped: {layered:.1f} us")
    on = _median_us(
        lambda: remembered_view(thread, "a", max_pairs=10, max_tokens=8000, policy=policy),
        1000,
        rounds,
    )
    off = _median_us(lambda: agent_view(thread, "a", max_pairs=10, max_tokens=8000), 1000, rounds)
    print(f"remembered_view: {on:.1f} us; agent_view: {off:.1f} us")
    huge = [HumanMessage("lorem ipsum dolor " * 11_000)]
    sent = remembered_view(huge, "a", max_pairs=3, max_tokens=1000, policy=policy)
    print(
        f"a {count_tokens_approximately(huge):,}-token message with max_context_tokens=1000: "
        f"{count_tokens_approximately(sent):,} tokens sent"
    )


if __name__ == "__main__":
    main()
