"""Wide fan-outs run in shards: the same results, failures, retries and quorum as one node each."""

import functools
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from switchyard.core.offline import SimulatedProviderError
from switchyard.graphs.fanout import QUORUM_FAILED, SHARD, build_fanout_graph, shards_of
from switchyard.state import AgentSpec
from tests.fakes import Reply
from tests.unit.conftest import Script

QUESTION = "Should we move billing to PostgreSQL?"
NAMES = ("alpha", "beta", "gamma", "delta", "epsilon")


def agent(name: str, **fields: Any) -> AgentSpec:
    return AgentSpec(
        name=name,
        description=f"The {name} agent.",
        system_prompt=f"You are {name}.",
        model=f"fake:{name}",
        **fields,
    )


WORKERS = tuple(agent(name) for name in NAMES)


def config(thread: str = "t") -> Any:
    return {"configurable": {"thread_id": thread}}


def ask(graph: Any, **extra: Any) -> Any:
    return graph.invoke({"messages": [HumanMessage(QUESTION)], **extra}, config())


async def aask(graph: Any, **extra: Any) -> Any:
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)], **extra}, config())


def outcome(out: dict[str, Any]) -> Any:
    """What a run ends with, minus wall-clock durations and latencies."""
    results = {
        name: {key: value for key, value in result.items() if key != "duration_ms"}
        for name, result in out["results"].items()
    }
    usage = {
        key: {field: value for field, value in entry.items() if not field.startswith("latency")}
        for key, entry in out["usage"].items()
    }
    return (
        out["dispatched"],
        results,
        out["messages"][-1].text,
        out["end_reason"],
        out["end_detail"],
        usage,
    )


def replies(**failures: list[Reply]) -> dict[str, list[Reply]]:
    return {name: failures.get(name, [f"{name} view"]) for name in NAMES}


def test_shards_are_balanced_and_keep_the_dispatch_order() -> None:
    assert shards_of(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e"], ["f", "g"]]
    assert shards_of(list("abcd"), 2) == [["a", "b"], ["c", "d"]]
    assert shards_of(["a"], 64) == [["a"]]


def test_only_graphs_wider_than_the_shard_size_are_sharded() -> None:
    assert SHARD in build_fanout_graph(WORKERS, shard_size=2).compile().nodes
    unsharded = build_fanout_graph(WORKERS, shard_size=5).compile().nodes
    assert SHARD not in unsharded
    assert set(NAMES) <= set(unsharded)
    assert SHARD not in build_fanout_graph(WORKERS, shard_size=None).compile().nodes


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
@pytest.mark.parametrize("option", ["shard_size", "max_concurrency"])
def test_bad_shard_options_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{option} must be a whole number"):
        build_fanout_graph(WORKERS, **{option: value})


def test_a_worker_named_shard_is_refused() -> None:
    with pytest.raises(Exception, match="'shard' is reserved"):
        build_fanout_graph((*WORKERS, agent("shard")))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_results_are_the_same_as_one_node_per_worker(models: Script, mode: str) -> None:
    ends = []
    for shard_size in (None, 2):
        models(**replies(gamma=[ValueError("content filter")]))
        graph = build_fanout_graph(WORKERS, strategy="collect", shard_size=shard_size).compile(
            checkpointer=InMemorySaver()
        )
        out = ask(graph) if mode == "sync" else await aask(graph)
        ends.append(outcome(out))
    unsharded, sharded = ends
    assert sharded == unsharded
    assert sharded[1]["gamma"]["status"] == "failed"


def test_a_shard_runs_once_per_shard_in_one_step(models: Script) -> None:
    models(**replies())
    graph = build_fanout_graph(WORKERS, shard_size=2).compile(checkpointer=InMemorySaver())
    steps = list(
        graph.stream({"messages": [HumanMessage(QUESTION)]}, config(), stream_mode="updates")
    )
    assert [list(step) for step in steps] == [["intake"], *[[SHARD]] * 3, ["merge"]]


async def test_a_failing_worker_is_isolated_in_its_shard(models: Script) -> None:
    fakes = models(**replies(alpha=[ValueError("content filter")]))
    out = await aask(build_fanout_graph(WORKERS, shard_size=2).compile())

    assert out["results"]["alpha"] == {
        "worker": "alpha",
        "status": "failed",
        "output": None,
        "duration_ms": None,
        "error": "ValueError: content filter",
    }
    # beta shares alpha's shard and still answered, once
    assert out["results"]["beta"]["output"] == "beta view"
    assert [len(fakes[name].calls) for name in NAMES] == [1, 1, 1, 1, 1]
    assert out["end_reason"] is None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_transient_errors_are_retried_per_worker(models: Script, mode: str) -> None:
    outage = SimulatedProviderError("503 overloaded", status_code=503)
    workers = (agent("alpha", max_attempts=2), *WORKERS[1:])
    fakes = models(**replies(alpha=[outage, "alpha view"], beta=[outage, outage, "beta view"]))
    graph = build_fanout_graph(workers, shard_size=2).compile()
    out = ask(graph) if mode == "sync" else await aask(graph)

    assert len(fakes["alpha"].calls) == 2  # one retry, then the answer
    assert len(fakes["beta"].calls) == 3  # max_attempts=3: two retries
    # the other workers, alpha's and beta's shard among them, are not run again
    assert [len(fakes[name].calls) for name in NAMES[2:]] == [1, 1, 1]
    assert out["results"]["alpha"]["output"] == "alpha view"
    assert out["results"]["beta"]["output"] == "beta view"
    assert out["usage"]["alpha/fake:alpha"]["retries"] == 1
    assert out["usage"]["beta/fake:beta"]["retries"] == 2
    assert out["usage"]["gamma/fake:gamma"]["retries"] == 0


async def test_retries_give_up_at_max_attempts_and_record_the_failure(models: Script) -> None:
    outage = SimulatedProviderError("503 overloaded", status_code=503)
    workers = (agent("alpha", max_attempts=2), *WORKERS[1:])
    fakes = models(**replies(alpha=[outage, outage]))
    out = await aask(build_fanout_graph(workers, shard_size=2).compile())
    assert len(fakes["alpha"].calls) == 2
    assert out["results"]["alpha"]["error"] == "SimulatedProviderError: 503 overloaded"


async def test_an_error_that_is_not_transient_is_not_retried(models: Script) -> None:
    fakes = models(**replies(alpha=[ValueError("bad request")]))
    await aask(build_fanout_graph(WORKERS, shard_size=2).compile())
    assert len(fakes["alpha"].calls) == 1


async def test_a_fallback_model_answers_for_a_failed_worker_in_a_shard(models: Script) -> None:
    workers = (agent("alpha", fallback_models=("fake:backup",)), *WORKERS[1:])
    fakes = models(**replies(alpha=[ValueError("model retired")]), backup=["backup view"])
    out = await aask(build_fanout_graph(workers, shard_size=2).compile())
    assert out["results"]["alpha"]["output"] == "backup view"
    assert fakes["backup"].calls[0].texts == ["You are alpha.", QUESTION]
    assert out["usage"]["alpha/fake:backup"]["fallbacks"] == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_quorum_counts_workers_across_shards(models: Script, mode: str) -> None:
    down = ValueError("down")
    models(**replies(alpha=[down], beta=[down], delta=[down]))  # 2 of 5 succeed, one per shard
    graph = build_fanout_graph(WORKERS, quorum=3, shard_size=2).compile()
    out = ask(graph) if mode == "sync" else await aask(graph)
    assert out["end_reason"] == QUORUM_FAILED
    assert out["end_detail"] == (
        "2 of 5 workers succeeded but the quorum is 3 (failed: alpha: ValueError: down; "
        "beta: ValueError: down; delta: ValueError: down)"
    )

    models(**{name: [f"{name} again"] for name in NAMES})
    graph = build_fanout_graph(WORKERS, quorum=3, shard_size=2, strategy="vote").compile()
    out = ask(graph) if mode == "sync" else await aask(graph)
    assert out["end_reason"] == "no_majority"  # five different answers, quorum met


async def test_a_subset_is_sharded_by_what_is_dispatched(models: Script) -> None:
    fakes = models(alpha=["a"], gamma=["c"], epsilon=["e"])
    out = await aask(
        build_fanout_graph(WORKERS, shard_size=2).compile(), workers=["epsilon", "alpha", "gamma"]
    )
    assert out["dispatched"] == ["alpha", "gamma", "epsilon"]
    assert {name: r["output"] for name, r in out["results"].items()} == {
        "alpha": "a",
        "gamma": "c",
        "epsilon": "e",
    }
    assert "beta" not in fakes


@pytest.mark.parametrize("limit", [1, 2])
async def test_max_concurrency_still_runs_every_worker(models: Script, limit: int) -> None:
    models(**replies())
    graph = build_fanout_graph(WORKERS, shard_size=3, max_concurrency=limit).compile()
    out = await aask(graph)
    assert all(result["status"] == "ok" for result in out["results"].values())
    assert len(out["results"]) == len(NAMES)


def test_sync_max_concurrency(models: Script) -> None:
    models(**replies())
    run_sync = functools.partial(
        ask, build_fanout_graph(WORKERS, shard_size=3, max_concurrency=1).compile()
    )
    out = run_sync()
    assert sorted(out["results"]) == sorted(NAMES)
