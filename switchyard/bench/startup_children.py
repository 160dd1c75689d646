"""The child processes of `switchyard bench startup` that are not a `switchyard` command.

Run as a file, `python -P startup_children.py <name> [args]`, never as a module: `python -m
switchyard.bench...` would import the `switchyard` package (and its bench package) first, and a
peer framework's start-up would then include Switchyard's. `-P` keeps this file's directory off
`sys.path`, so the bench modules next to it cannot shadow anything the child imports. Every child
imports only what its name says, inside its function, and prints one line on stdout that the
parent checks.

Children:
    langgraph: import LangGraph, build a one-node `StateGraph` and invoke it once.
    openai-agents: import the OpenAI Agents SDK, run one agent on a fixed-reply `Model`.
    agent-squad: import AWS Agent Squad, route one request through a stub classifier to a
        fixed-reply agent.
    warm-route: build the demo router's default classifier, classify once (loading it), then
        time `classify` over many requests; prints the samples as JSON.

The peers' fakes are written out here rather than reused from `switchyard.bench.contenders`:
those import LangChain and Switchyard, which would be counted against the peer.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

REPLY = "fixed reply"
"""What every peer's fake model answers; the parent checks it came back."""

FALLBACK_TEXTS = (
    "I need a refund for my last payment",
    "I was charged twice this month",
    "How do I cancel my subscription?",
    "My password reset email never arrives",
    "How do I authenticate with the API?",
    "Which endpoint lists all projects?",
    "Is there a Python SDK?",
    "Where are the webhook docs?",
    "Write a Python function that parses a CSV file",
    "Fix the error in my JavaScript function",
    "Generate unit tests for this class",
    "What is the weather like tomorrow?",
    "Book me a table for two tonight",
    "Translate good morning into French",
    "How many vacation days do I have left?",
    "Refactor this script to be faster",
)
"""Requests for the warm-route child when the CLINC150 validation set is not there."""


def langgraph_child() -> str:
    """Import LangGraph, build and invoke a one-node graph; returns its answer."""
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        text: str

    def answer(state: State) -> State:
        return {"text": REPLY}

    builder: StateGraph[State, Any, State, State] = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return str(builder.compile().invoke({"text": "hello"})["text"])


def openai_agents_child() -> str:
    """Import the OpenAI Agents SDK and run one agent on a fixed-reply model; returns its answer."""
    from agents import Agent, Model, ModelResponse, RunConfig, Runner
    from agents.usage import Usage
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    class FixedModel(Model):
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            text = ResponseOutputText(type="output_text", text=REPLY, annotations=[])
            message = ResponseOutputMessage(
                type="message", id="msg_1", role="assistant", status="completed", content=[text]
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            raise NotImplementedError("the start-up child does not stream")

    agent: Agent[Any] = Agent(name="assistant", instructions="Answer.", model=FixedModel())
    # Tracing off: its exporter would try to reach OpenAI, and the bench runs offline.
    result = Runner.run_sync(agent, "hello", run_config=RunConfig(tracing_disabled=True))
    return str(result.final_output)


def agent_squad_child() -> str:
    """Import AWS Agent Squad and route one request; returns the agent's answer."""
    import asyncio

    from agent_squad.agents import Agent, AgentOptions
    from agent_squad.classifiers import Classifier, ClassifierResult
    from agent_squad.orchestrator import AgentSquad
    from agent_squad.storage import InMemoryChatStorage
    from agent_squad.types import AgentSquadConfig, ConversationMessage, ParticipantRole

    class FixedAgent(Agent):  # type: ignore[misc]
        async def process_request(self, *args: Any, **kwargs: Any) -> Any:
            return ConversationMessage(
                role=ParticipantRole.ASSISTANT.value, content=[{"text": REPLY}]
            )

    class StubClassifier(Classifier):  # type: ignore[misc]
        async def process_request(self, input_text: str, chat_history: list[Any]) -> Any:
            return ClassifierResult(selected_agent=next(iter(self.agents.values())), confidence=1.0)

    squad = AgentSquad(
        options=AgentSquadConfig(), storage=InMemoryChatStorage(), classifier=StubClassifier()
    )
    squad.add_agent(FixedAgent(AgentOptions(name="assistant", description="Answers.")))
    response = asyncio.run(squad.route_request("hello", "user", "session"))
    return str(response.output.content[0]["text"])


def warm_route_child(dataset: str, requests: int) -> str:
    """Time the demo router's classifier after its first request; returns a JSON line.

    Args:
        dataset: A JSONL file of `{"text": ...}` requests; missing, `FALLBACK_TEXTS` are used.
        requests: How many requests to time (the texts are cycled when there are fewer).
    """
    from switchyard.graphs.demos import ROUTER_AGENTS
    from switchyard.nodes.classifiers import default_classifier

    path = Path(dataset)
    if path.is_file():
        texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
        source = str(path)
    else:
        texts, source = list(FALLBACK_TEXTS), "fixed list"
    texts = [texts[i % len(texts)] for i in range(requests)]
    classifier = default_classifier(ROUTER_AGENTS, default_agent="support")
    started = time.perf_counter_ns()
    classifier.classify(texts[0])
    first_ms = (time.perf_counter_ns() - started) / 1e6
    samples: list[float] = []
    for text in texts:
        started = time.perf_counter_ns()
        classifier.classify(text)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return json.dumps(
        {
            "classifier": type(classifier).__name__,
            "source": source,
            "first_ms": first_ms,
            "samples_ms": samples,
        }
    )


def main(argv: Sequence[str]) -> int:
    """Run the child named in `argv[0]` and print its output line; 2 for an unknown name."""
    name, rest = (argv[0], list(argv[1:])) if argv else ("", [])
    if name == "langgraph":
        print(langgraph_child())
    elif name == "openai-agents":
        print(openai_agents_child())
    elif name == "agent-squad":
        print(agent_squad_child())
    elif name == "warm-route" and len(rest) == 2:
        print(warm_route_child(rest[0], int(rest[1])))
    else:
        print(
            "usage: startup_children.py langgraph|openai-agents|agent-squad|"
            "warm-route DATASET REQUESTS",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
