from langgraph.checkpoint.memory import InMemorySaver

from graphs.router import DEMO_AGENTS, build_router_graph
from switchyard.offline import OFFLINE_MARKER
from switchyard.run import run


def test_router_answers_offline_with_the_support_agent() -> None:
    graph = build_router_graph(DEMO_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    result = run(graph, "I need a refund for my last payment", user_id="u", session_id="s")
    assert result.ok
    assert result.agent_name == "support"
    assert result.output.startswith(OFFLINE_MARKER)
    assert result.total_tokens == result.input_tokens + result.output_tokens > 0
