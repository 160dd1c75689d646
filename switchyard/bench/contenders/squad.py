"""AWS Agent Squad (`agent-squad`): its orchestrator, a classifier stub and agents on the model.

`AgentSquad.route_request` classifies (here: the shared stub, no model call), dispatches to the
chosen agent with its chat history, and saves the exchange in its chat storage. The pipeline uses
its `ChainAgent`. Agent Squad has no fan-out, supervisor over custom agents, or handoffs between
agents, so it runs the router and the pipeline only. Its persistence is its chat storage:
"none" turns saving off (`save_chat=False`), "memory" is `InMemoryChatStorage`; its SQL storage
needs `libsql-client`, which the bench extra does not install.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

from agent_squad.agents import Agent, AgentOptions, ChainAgent, ChainAgentOptions
from agent_squad.classifiers import Classifier, ClassifierResult
from agent_squad.orchestrator import AgentSquad as SquadOrchestrator
from agent_squad.storage import InMemoryChatStorage
from agent_squad.types import AgentSquadConfig, ConversationMessage, ParticipantRole

from switchyard.bench.contenders import BenchError, Contender, Prepared, Setup
from switchyard.bench.llm import Tally, estimate_tokens, reply_text
from switchyard.bench.topology import REQUEST, Topology, pick, system_prompt


class BenchSquadAgent(Agent):  # type: ignore[misc]
    """An Agent Squad agent whose "LLM" is the simulated model."""

    def __init__(self, name: str, latency_s: float, tally: Tally, *, save_chat: bool) -> None:
        """Create the agent."""
        super().__init__(
            AgentOptions(name=name, description=f"The {name} agent.", save_chat=save_chat)
        )
        self.latency_s = latency_s
        self.tally = tally
        self.prompt = system_prompt(name)

    async def process_request(
        self,
        input_text: str,
        user_id: str,
        session_id: str,
        chat_history: list[ConversationMessage],
        additional_params: dict[str, Any] | None = None,
    ) -> ConversationMessage:
        """One model call on the system prompt, the agent's history and the input."""
        texts = [self.prompt, *(str(m.content[0]["text"]) for m in chat_history), input_text]
        self.tally.add(estimate_tokens(texts))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return ConversationMessage(
            role=ParticipantRole.ASSISTANT.value, content=[{"text": reply_text(0)}]
        )


class StubSquadClassifier(Classifier):  # type: ignore[misc]
    """Agent Squad's `Classifier` over the shared classifier stub (no model call)."""

    async def process_request(
        self, input_text: str, chat_history: list[ConversationMessage]
    ) -> ClassifierResult:
        """The agent named in the request, with full confidence."""
        agent_id = pick(input_text, list(self.agents))
        return ClassifierResult(selected_agent=self.agents[agent_id], confidence=1.0)


class AgentSquad(Contender):
    """Agent Squad's orchestrator with the classifier stub."""

    key: ClassVar[str] = "agent-squad"
    label: ClassVar[str] = "AWS Agent Squad"
    distribution: ClassVar[str | None] = "agent-squad"
    patterns: ClassVar[frozenset[str]] = frozenset({"router", "pipeline"})
    backends: ClassVar[frozenset[str]] = frozenset({"none", "memory"})

    async def prepare(self, topology: Topology, setup: Setup) -> Prepared:
        """Build the orchestrator; the pipeline is one `ChainAgent` of five agents."""
        tally = Tally()
        save = setup.backend == "memory"
        orchestrator = SquadOrchestrator(
            options=AgentSquadConfig(),
            storage=InMemoryChatStorage(),
            classifier=StubSquadClassifier(),
        )
        if topology.pattern == "router":
            agents = [
                BenchSquadAgent(n, setup.latency_s, tally, save_chat=save) for n in topology.agents
            ]
            for agent in agents:
                orchestrator.add_agent(agent)
            orchestrator.set_default_agent(agents[0])
        elif topology.pattern == "pipeline":
            stages = [
                BenchSquadAgent(n, setup.latency_s, tally, save_chat=False) for n in topology.agents
            ]
            chain = ChainAgent(
                ChainAgentOptions(
                    name="pipeline",
                    description="The stages in order.",
                    agents=stages,
                    save_chat=save,
                )
            )
            orchestrator.add_agent(chain)
            orchestrator.set_default_agent(chain)
        else:
            raise ValueError(f"Agent Squad contender has no {topology.pattern!r} pattern")

        async def run() -> str:
            response = await orchestrator.route_request(REQUEST, "bench", uuid.uuid4().hex)
            output = response.output
            text = output.content[0]["text"] if isinstance(output, ConversationMessage) else ""
            if not text.startswith("simulated answer"):
                raise BenchError(f"Agent Squad {topology.pattern}: unexpected output {text!r}")
            return str(text)

        return Prepared(run=run, tally=tally)

    def per_hop(self, pattern: str) -> str:
        """What Agent Squad does per hop."""
        if pattern == "pipeline":
            return (
                "`route_request` -> classifier stub -> `ChainAgent` awaits each agent's "
                "`process_request` in turn; the exchange is saved to chat storage"
            )
        return (
            "`route_request`: fetch all chats for the classifier, classifier stub, fetch the "
            "agent's chat history, `process_request`, save user and agent messages"
        )
