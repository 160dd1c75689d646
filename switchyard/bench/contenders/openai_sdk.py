"""The OpenAI Agents SDK (`openai-agents`) on a local `Model`: no API, no network.

`BenchSDKModel` implements the SDK's `Model` interface with the simulated model's latency and
policy. Tracing is off (`RunConfig(tracing_disabled=True)`), as Switchyard's telemetry is in the
benchmarks. The swarm is the SDK's handoffs; the supervisor its agents-as-tools (`Agent.as_tool`);
the pipeline and the fan-out are the SDK's documented "deterministic" and "parallelization"
patterns (`Runner.run` in sequence, `asyncio.gather` of `Runner.run`). The SDK's router is an
LLM triage agent (an extra model call per request), not a classifier, so it sits the router out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from agents import Agent, Handoff, Model, ModelResponse, ModelSettings, RunConfig, Runner, Tool
from agents.agent_output import AgentOutputSchemaBase
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.models.interface import ModelTracing
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import (
    HANDOFF_PREFIX,
    REPLY_WORDS,
    Tally,
    decide,
    estimate_tokens,
    next_call_id,
    reply_text,
)
from switchyard.bench.topology import REQUEST, Topology, system_prompt

MAX_TURNS = 20


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _texts(system: str | None, items: str | list[TResponseInputItem]) -> list[str]:
    if isinstance(items, str):
        return [system or "", items]
    texts = [system or ""]
    for item in items:
        content = _field(item, "content") or _field(item, "output") or _field(item, "arguments")
        texts.append(content if isinstance(content, str) else json.dumps(content, default=str))
    return texts


def _handoffs_in_turn(items: str | list[TResponseInputItem]) -> int:
    if isinstance(items, str):
        return 0
    count = 0
    for item in reversed(items):
        if _field(item, "role") == "user":
            break
        name = _field(item, "name")
        if _field(item, "type") == "function_call" and str(name).startswith(HANDOFF_PREFIX):
            count += 1
    return count


class BenchSDKModel(Model):
    """The simulated model behind the SDK's provider-neutral `Model` boundary."""

    def __init__(self, latency_s: float, plan: Sequence[str], tally: Tally) -> None:
        """Create the model."""
        self.latency_s = latency_s
        self.plan = tuple(plan)
        self.tally = tally

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        """One simulated call: a handoff or tool call from the plan, else the text answer."""
        input_tokens = estimate_tokens(_texts(system_instructions, input))
        self.tally.add(input_tokens)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        schemas: dict[str, dict[str, Any]] = {h.tool_name: h.input_json_schema for h in handoffs}
        for tool in tools:
            schema = getattr(tool, "params_json_schema", None)
            schemas[tool.name] = schema if isinstance(schema, dict) else {}
        done = _handoffs_in_turn(input)
        target = decide(self.plan, done, list(schemas))
        output: list[Any]
        if target is not None:
            properties = schemas[target].get("properties", {})
            args = {"input": "Handle your part of the request."} if "input" in properties else {}
            call_id = next_call_id()
            output = [
                ResponseFunctionToolCall(
                    type="function_call",
                    id=f"fc_{call_id}",
                    call_id=call_id,
                    name=target,
                    arguments=json.dumps(args),
                    status="completed",
                )
            ]
            output_tokens = 12
        else:
            text = ResponseOutputText(type="output_text", text=reply_text(done), annotations=[])
            output = [
                ResponseOutputMessage(
                    type="message",
                    id=f"msg_{next_call_id()}",
                    role="assistant",
                    status="completed",
                    content=[text],
                )
            ]
            output_tokens = REPLY_WORDS + 8
        usage = Usage(
            requests=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
        return ModelResponse(output=output, usage=usage, response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Not used: the benchmarks do not stream.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("the benchmark model does not stream")


def _agent(name: str, model: BenchSDKModel, **kwargs: Any) -> Agent[Any]:
    return Agent(name=name, instructions=system_prompt(name), model=model, **kwargs)


class OpenAIAgents(Contender):
    """The OpenAI Agents SDK with a scripted local model."""

    key: ClassVar[str] = "openai-agents"
    label: ClassVar[str] = "OpenAI Agents SDK"
    distribution: ClassVar[str | None] = "openai-agents"
    patterns: ClassVar[frozenset[str]] = frozenset({"pipeline", "fanout", "supervisor", "swarm"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Build the agents for the pattern on one simulated model."""
        tally = Tally()
        model = BenchSDKModel(setup.latency_s, topology.plan, tally)
        config = RunConfig(tracing_disabled=True)
        names = topology.agents
        pattern = topology.pattern

        if pattern == "pipeline":
            stages = [_agent(n, model) for n in names]

            async def run() -> str:
                text = REQUEST
                for stage in stages:
                    text = str((await Runner.run(stage, text, run_config=config)).final_output)
                return text

        elif pattern == "fanout":
            workers = [_agent(n, model) for n in names]

            async def run() -> str:
                results = await asyncio.gather(
                    *(Runner.run(w, REQUEST, run_config=config) for w in workers)
                )
                return "\n\n".join(
                    f"## {w.name}\n\n{r.final_output}"
                    for w, r in zip(workers, results, strict=True)
                )

        elif pattern == "supervisor":
            tools: list[Tool] = [
                _agent(n, model).as_tool(
                    tool_name=HANDOFF_PREFIX + n, tool_description=f"Transfer to {n}."
                )
                for n in names
            ]
            manager = _agent("supervisor", model, tools=tools)

            async def run() -> str:
                result = await Runner.run(manager, REQUEST, run_config=config, max_turns=MAX_TURNS)
                return str(result.final_output)

        elif pattern == "swarm":
            members = {n: _agent(n, model) for n in names}
            for name, member in members.items():
                member.handoffs = [peer for other, peer in members.items() if other != name]
            first = members[names[0]]

            async def run() -> str:
                result = await Runner.run(first, REQUEST, run_config=config, max_turns=MAX_TURNS)
                return str(result.final_output)

        else:
            raise ValueError(f"OpenAI Agents SDK contender has no {pattern!r} pattern")

        async def checked() -> str:
            answer = await run()
            if not answer.startswith("simulated answer") and "simulated answer" not in answer:
                raise BenchError(f"OpenAI Agents SDK {pattern}: unexpected output {answer!r}")
            return answer

        return Prepared(run=checked, tally=tally)

    def per_hop(self, pattern: str) -> str:
        """What the SDK does per hop."""
        return {
            "pipeline": "`Runner.run` per agent in sequence (run loop, items, usage, guardrail "
            "hooks)",
            "fanout": "`asyncio.gather` of one `Runner.run` per agent",
            "supervisor": "manager's run loop calls the worker tool (`Agent.as_tool`), which "
            "runs a nested `Runner.run`",
            "swarm": "run loop executes the handoff tool call and continues with the new agent "
            "on the whole history",
        }[pattern]
