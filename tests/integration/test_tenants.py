"""Multi-tenant serving through `langgraph dev` with `switchyard.server.auth` and two bearer tokens.

The server is started from a config built from this repository's graphs plus
`"auth": {"path": "switchyard.server.auth:auth"}`, with `SWITCHYARD_API_TOKENS` naming two tenants.
Each tenant works through `langgraph-sdk`; the other's threads answer 404, never appear in
searches, and cannot be run, changed, deleted or claimed. Requests without a valid token get 401.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from switchyard.server.auth import DEV_IDENTITY, TokenConfigError, identify, parse_tokens
from tests.servers import langgraph_dev, offline_environment

REPO = Path(__file__).resolve().parents[2]
TOKENS = {"alice": "tok-alice-7f3a", "bob": "tok-bob-91c2"}
RUN_TIMEOUT_S = 120.0
GRAPH = "echo"
INPUT = {"messages": [{"role": "user", "content": "I need a refund for my last payment"}]}


# -- the token logic, without a server --------------------------------------------------------


def test_tokens_parse_and_malformed_lists_are_explained() -> None:
    assert parse_tokens(" a:alice , b:bob ,") == {"a": "alice", "b": "bob"}
    assert parse_tokens("tok:with:colons:carol") == {"tok:with:colons": "carol"}
    for bad in ("justatoken", ":alice", "tok:", "a:alice,a:bob"):
        with pytest.raises(TokenConfigError, match="SWITCHYARD_API_TOKENS"):
            parse_tokens(bad)


def test_identify_maps_bearer_tokens_and_fails_closed_outside_dev() -> None:
    from langgraph_sdk import Auth

    tokens = {"t1": "alice"}
    assert identify("Bearer t1", tokens=tokens, dev_mode=False) == "alice"
    assert identify("bearer  t1 ", tokens=tokens, dev_mode=True) == "alice"
    for header in (None, "", "Bearer", "Basic t1", "Bearer t2", "t1"):
        with pytest.raises(Auth.exceptions.HTTPException) as caught:
            identify(header, tokens=tokens, dev_mode=True)  # tokens set: dev mode needs them too
        assert caught.value.status_code == 401
    # No tokens configured: `langgraph dev` serves one local tenant; anything else refuses.
    assert identify(None, tokens={}, dev_mode=True) == DEV_IDENTITY
    with pytest.raises(Auth.exceptions.HTTPException, match="no API tokens configured"):
        identify("Bearer t1", tokens={}, dev_mode=False)


# -- the server -------------------------------------------------------------------------------


ECHO_GRAPH = """
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState) -> dict:
    return {"messages": [AIMessage(f"echo: {state['messages'][-1].content}")]}


builder = StateGraph(MessagesState)
builder.add_node(answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)
graph = builder.compile(name="echo")
"""


def auth_config(directory: Path) -> Path:
    """A config like this repository's, with the auth handler, serving a one-node graph.

    The graph is deliberately trivial (the handler is what is under test), so this test does
    not depend on any pattern's code.
    """
    (directory / "echo_graph.py").write_text(ECHO_GRAPH)
    main = json.loads((REPO / "langgraph.json").read_text())
    config = {
        "python_version": main.get("python_version", "3.11"),
        "dependencies": [str(REPO)],
        "graphs": {GRAPH: f"{directory / 'echo_graph.py'}:graph"},
        "auth": main["auth"],
    }
    path = directory / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def server_environment(tokens: bool) -> dict[str, str]:
    if not tokens:
        return offline_environment()
    return offline_environment(
        {"SWITCHYARD_API_TOKENS": ",".join(f"{t}:{user}" for user, t in TOKENS.items())}
    )


@contextmanager
def tenant_server(workdir: Path, *, tokens: bool) -> Iterator[str]:
    """`langgraph dev` with the auth handler and the echo graph; stopped afterwards."""
    config = auth_config(workdir)
    with langgraph_dev(
        config, cwd=workdir, log=workdir / "server.log", env=server_environment(tokens)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server with two tenants' tokens configured."""
    with tenant_server(tmp_path_factory.mktemp("tenants"), tokens=True) as url:
        yield url


def client_for(url: str, user: str) -> SyncLangGraphClient:
    return get_sync_client(
        url=url, timeout=RUN_TIMEOUT_S, headers={"Authorization": f"Bearer {TOKENS[user]}"}
    )


@pytest.fixture(scope="module")
def alice(server_url: str) -> SyncLangGraphClient:
    return client_for(server_url, "alice")


@pytest.fixture(scope="module")
def bob(server_url: str) -> SyncLangGraphClient:
    return client_for(server_url, "bob")


@pytest.fixture(scope="module")
def alice_thread(alice: SyncLangGraphClient) -> str:
    """A thread of Alice's with one completed run."""
    thread = alice.threads.create(metadata={"topic": "billing"})
    output = alice.runs.wait(thread["thread_id"], GRAPH, input=INPUT)
    assert isinstance(output, dict), output
    assert output["messages"][-1]["type"] == "ai", output
    thread_id: str = thread["thread_id"]
    return thread_id


def status_of(call: Any) -> int:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        call()
    code: int = caught.value.response.status_code
    return code


@pytest.mark.server
@pytest.mark.enable_socket
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKENS['alice']}"}],
    ids=["no-token", "wrong-token", "wrong-scheme"],
)
def test_requests_without_a_valid_token_are_refused(
    server_url: str, headers: dict[str, str]
) -> None:
    response = httpx.post(f"{server_url}/threads/search", json={}, headers=headers, timeout=30)
    assert response.status_code == 401, response.text
    response = httpx.post(f"{server_url}/threads", json={}, headers=headers, timeout=30)
    assert response.status_code == 401, response.text


@pytest.mark.server
@pytest.mark.enable_socket
def test_the_owner_sees_and_continues_its_thread(
    alice: SyncLangGraphClient, alice_thread: str
) -> None:
    thread = alice.threads.get(alice_thread)
    assert thread["metadata"]["owner"] == "alice"
    assert thread["metadata"]["topic"] == "billing"
    found = {t["thread_id"] for t in alice.threads.search(limit=100)}
    assert alice_thread in found
    output = alice.runs.wait(alice_thread, GRAPH, input=INPUT)
    assert isinstance(output, dict)
    assert [m["type"] for m in output["messages"]] == ["human", "ai", "human", "ai"]


@pytest.mark.server
@pytest.mark.enable_socket
def test_a_foreign_thread_is_not_found_and_never_listed(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient, alice_thread: str
) -> None:
    assert status_of(lambda: bob.threads.get(alice_thread)) == 404
    assert status_of(lambda: bob.threads.get_state(alice_thread)) == 404
    assert status_of(lambda: bob.threads.get_history(alice_thread)) == 404
    assert status_of(lambda: bob.threads.update(alice_thread, metadata={"owner": "bob"})) == 404
    assert status_of(lambda: bob.threads.delete(alice_thread)) == 404
    assert status_of(lambda: bob.runs.list(alice_thread)) == 404
    assert status_of(lambda: bob.runs.wait(alice_thread, GRAPH, input=INPUT)) == 404
    assert alice_thread not in {t["thread_id"] for t in bob.threads.search(limit=100)}
    assert bob.threads.search(metadata={"topic": "billing"}, limit=100) == []
    assert alice_thread not in {
        t["thread_id"] for t in bob.threads.search(metadata={"owner": "alice"}, limit=100)
    }
    # Bob cannot claim Alice's thread id either.
    assert status_of(lambda: bob.threads.create(thread_id=alice_thread)) == 409
    # ... and none of this touched it.
    thread = alice.threads.get(alice_thread)
    assert thread["metadata"]["owner"] == "alice"
    state = alice.threads.get_state(alice_thread)
    assert len(state["values"]["messages"]) in (2, 4)  # its own runs only


@pytest.mark.server
@pytest.mark.enable_socket
def test_owners_are_stamped_by_the_server_not_the_client(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    spoofed = bob.threads.create(metadata={"owner": "alice"})
    assert spoofed["metadata"]["owner"] == "bob"
    assert status_of(lambda: alice.threads.get(spoofed["thread_id"])) == 404
    run_thread = bob.threads.create()
    bob.runs.wait(run_thread["thread_id"], GRAPH, input=INPUT, metadata={"owner": "alice"})
    assert bob.threads.get(run_thread["thread_id"])["metadata"]["owner"] == "bob"
    updated = bob.threads.update(run_thread["thread_id"], metadata={"owner": "alice"})
    assert updated["metadata"]["owner"] == "bob"
    assert run_thread["thread_id"] not in {t["thread_id"] for t in alice.threads.search(limit=100)}


@pytest.mark.server
@pytest.mark.enable_socket
def test_assistants_are_shared_read_only(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    for client in (alice, bob):
        assert GRAPH in {a["graph_id"] for a in client.assistants.search(limit=100)}
    assert status_of(lambda: alice.assistants.create(GRAPH, name="mine")) == 403


@pytest.mark.server
@pytest.mark.enable_socket
def test_store_namespaces_are_per_tenant(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    alice.store.put_item(("notes",), "plan", {"text": "alice's plan"})
    item = alice.store.get_item(("notes",), "plan")
    assert item["value"] == {"text": "alice's plan"}
    assert bob.store.get_item(("notes",), "plan") is None  # it reads ("bob", "notes")
    assert bob.store.search_items(("notes",))["items"] == []
    bob.store.put_item(("notes",), "plan", {"text": "bob's plan"})
    assert alice.store.get_item(("notes",), "plan")["value"] == {"text": "alice's plan"}


@pytest.mark.server
@pytest.mark.enable_socket
def test_without_tokens_langgraph_dev_serves_one_local_tenant(tmp_path: Path) -> None:
    """What `make studio` gets with `auth` in langgraph.json and no tokens: it just works."""
    with tenant_server(tmp_path, tokens=False) as url:
        anonymous = get_sync_client(url=url, timeout=RUN_TIMEOUT_S)
        thread = anonymous.threads.create()
        assert thread["metadata"]["owner"] == DEV_IDENTITY
        output = anonymous.runs.wait(thread["thread_id"], GRAPH, input=INPUT)
        assert isinstance(output, dict)
        assert output["messages"][-1]["type"] == "ai"
        assert thread["thread_id"] in {t["thread_id"] for t in anonymous.threads.search()}
        created = anonymous.assistants.create(GRAPH, name="tuned")  # local dev may edit these
        assert created["graph_id"] == GRAPH
