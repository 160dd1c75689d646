"""The response cache: a repeated identical call is answered from SQLite, marked, and free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.globals import get_llm_cache
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration
from langgraph.checkpoint.memory import InMemorySaver

from switchyard.core import pricing
from switchyard.core.models import register_chat_model, unregister_chat_model
from switchyard.core.offline import OfflineChatModel
from switchyard.core.pricing import Price, set_price
from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.guardrails.cache import (
    CACHE_HIT_KEY,
    SQLiteResponseCache,
    cache_from_environment,
    disable_response_cache,
    enable_response_cache,
)
from switchyard.nodes.agent import call_agent
from switchyard.runtime.run import run
from switchyard.state import AgentSpec, Context

TEXT = "I need a refund for my last payment"
SUPPORT = ROUTER_AGENTS[0]


@pytest.fixture(autouse=True)
def _no_cache_left_behind() -> Iterator[None]:
    yield
    disable_response_cache()


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> Iterator[OfflineChatModel]:
    """An offline model under `offline:priced` that costs $1,000 per million tokens each way."""
    monkeypatch.setattr(pricing, "_overrides", {})
    set_price("offline:priced", Price(1000.0, 1000.0))
    model = OfflineChatModel(model_name="priced")
    register_chat_model("offline:priced", model)
    yield model
    unregister_chat_model("offline:priced")
    pricing._table_price.cache_clear()


def generation(text: str) -> ChatGeneration:
    return ChatGeneration(message=AIMessage(text, usage_metadata=_usage(7, 3)))


def _usage(input_tokens: int, output_tokens: int) -> Any:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


# --- the store ----------------------------------------------------------------------------------


def test_a_miss_then_a_marked_hit(tmp_path: Path) -> None:
    cache = SQLiteResponseCache(tmp_path / "c.sqlite")
    assert cache.lookup("prompt", "model-a") is None
    cache.update("prompt", "model-a", [generation("answer")])
    hit = cache.lookup("prompt", "model-a")
    assert hit is not None
    assert len(hit) == 1
    assert isinstance(hit[0], ChatGeneration)
    assert hit[0].message.text == "answer"
    assert hit[0].message.response_metadata[CACHE_HIT_KEY] is True


def test_the_key_is_prompt_and_model_settings(tmp_path: Path) -> None:
    cache = SQLiteResponseCache(tmp_path / "c.sqlite")
    cache.update("prompt", "model-a", [generation("answer")])
    assert cache.lookup("prompt", "model-b") is None
    assert cache.lookup("another prompt", "model-a") is None


def test_answers_survive_a_restart_and_clear_drops_them(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "c.sqlite"
    SQLiteResponseCache(path).update("prompt", "m", [generation("kept")])
    reopened = SQLiteResponseCache(path)
    hit = reopened.lookup("prompt", "m")
    assert hit is not None
    assert hit[0].text == "kept"
    reopened.clear()
    assert reopened.lookup("prompt", "m") is None


def test_a_stored_answer_is_not_marked_as_a_hit(tmp_path: Path) -> None:
    cache = SQLiteResponseCache(tmp_path / "c.sqlite")
    original = generation("answer")
    cache.update("prompt", "m", [original])
    cache.lookup("prompt", "m")
    assert CACHE_HIT_KEY not in original.message.response_metadata


# --- switching it on ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "0", "off", "false", "NO"])
def test_the_environment_can_leave_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SWITCHYARD_CACHE", value)
    assert cache_from_environment() is None
    assert get_llm_cache() is None


def test_the_environment_can_switch_it_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHYARD_CACHE", str(tmp_path / "c.sqlite"))
    cache = cache_from_environment()
    assert isinstance(cache, SQLiteResponseCache)
    assert get_llm_cache() is cache
    disable_response_cache()
    assert get_llm_cache() is None


# --- through an agent and a run -----------------------------------------------------------------


def test_a_second_identical_call_is_a_free_cache_hit(
    tmp_path: Path, priced: OfflineChatModel
) -> None:
    enable_response_cache(tmp_path / "c.sqlite")
    agent = AgentSpec(**{**SUPPORT.model_dump(), "model": "offline:priced"})
    first = call_agent(agent, [HumanMessage(TEXT)])
    second = call_agent(agent, [HumanMessage(TEXT)])
    assert priced.calls == 1
    assert second.output == first.output
    paid = first.usage["support/offline:priced"]
    free = second.usage["support/offline:priced"]
    assert (paid["cache_hits"], free["cache_hits"]) == (0, 1)
    assert paid["total_tokens"] > 0
    assert paid["cost_usd"] > 0
    assert (free["input_tokens"], free["output_tokens"], free["cost_usd"]) == (0, 0, 0.0)


def test_a_different_request_is_not_served_from_the_cache(
    tmp_path: Path, priced: OfflineChatModel
) -> None:
    enable_response_cache(tmp_path / "c.sqlite")
    agent = AgentSpec(**{**SUPPORT.model_dump(), "model": "offline:priced"})
    call_agent(agent, [HumanMessage(TEXT)])
    other = call_agent(agent, [HumanMessage("I was charged twice this month")])
    assert priced.calls == 2
    assert other.usage["support/offline:priced"]["cache_hits"] == 0


def test_a_cached_run_reports_zero_tokens_and_cost(
    tmp_path: Path, priced: OfflineChatModel
) -> None:
    enable_response_cache(tmp_path / "c.sqlite")
    graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
        checkpointer=InMemorySaver(), name="router"
    )
    context = Context(model="offline:priced")
    first = run(graph, TEXT, user_id="ada", session_id="one", context=context)
    second = run(graph, TEXT, user_id="bob", session_id="two", context=context)
    assert first.ok
    assert second.ok
    assert priced.calls == 1
    assert second.output == first.output
    assert (second.total_tokens, second.cost_usd) == (0, 0.0)
    assert second.usage["support/offline:priced"]["cache_hits"] == 1
    assert first.cost_usd > 0


def test_without_the_cache_every_call_reaches_the_model(priced: OfflineChatModel) -> None:
    agent = AgentSpec(**{**SUPPORT.model_dump(), "model": "offline:priced"})
    call_agent(agent, [HumanMessage(TEXT)])
    again = call_agent(agent, [HumanMessage(TEXT)])
    assert priced.calls == 2
    assert again.usage["support/offline:priced"]["cache_hits"] == 0
