"""What the convergence guard and the confidence gate add to one model call, on a 2-core machine.

1. `ConfidenceGate.wrap_model_call` on a structured answer above its threshold, against the
   handler alone.
2. `ConvergenceGuard.check` of an answer to a new task, in a run whose log already holds
   `--steps` calls of the same agent (the run's context read as inside a run, not built).

Each figure is the median, over `--rounds` rounds, of a round's mean microseconds per call.
Usage: `.venv/bin/python bench/convergence.py`. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit
from typing import Any

from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import BaseModel

import switchyard.nodes.convergence as guard_module
from switchyard.guardrails.budgets import RunMeter
from switchyard.guardrails.confidence import ConfidenceGate
from switchyard.guardrails.scope import RunScope, with_scope
from switchyard.nodes.convergence import ConvergenceGuard
from switchyard.state.context import Context


class Graded(BaseModel):
    """An answer with its confidence."""

    answer: str
    confidence: float


def per_call_us(call: Any, number: int, rounds: int) -> float:
    """Median over `rounds` of the mean microseconds of `number` calls."""
    return statistics.median(
        timeit.timeit(call, number=number) / number * 1e6 for _ in range(rounds)
    )


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    request = ModelRequest(model=None, messages=[HumanMessage("What is 2 + 2?")])  # type: ignore[arg-type]
    response = ModelResponse(
        result=[AIMessage("")], structured_response=Graded(answer="4", confidence=0.9)
    )

    def handler(_: Any) -> Any:
        return response

    gate = ConfidenceGate(0.6, agent="a")
    bare = per_call_us(lambda: handler(request), 20_000, args.rounds)
    gated = per_call_us(lambda: gate.wrap_model_call(request, handler), 20_000, args.rounds)

    context = Context()
    # inside a run the context is only read; outside one `current_context` would build one
    guard_module.__dict__["current_context"] = lambda: context
    scope = RunScope(meter=RunMeter())
    var_child_runnable_config.set(with_scope({}, scope))
    guard = ConvergenceGuard("a")
    numbers = itertools.count()

    def check() -> None:
        n = next(numbers)
        step = ModelRequest(model=None, messages=[HumanMessage(f"task {n}")])  # type: ignore[arg-type]
        guard.check(step, ModelResponse(result=[AIMessage(f"answer {n} is here")]))

    for _ in range(args.steps):
        check()
    # each check adds a step under a key of its own (a new task): the log's size does not matter
    checking = per_call_us(check, 2_000, args.rounds)
    print("| layer | microseconds per call |\n|---|---:|")
    print(f"| ConfidenceGate (answer above the threshold) | {gated - bare:.1f} |")
    print(f"| ConvergenceGuard (an answer to a new task) | {checking:.1f} |")


if __name__ == "__main__":
    main()
