"""The demo agents and the compiled demo graphs, one per pattern: what `langgraph.json` serves.

Each graph is built when it is first asked for (`demos.router`, `from ... import router`), so a
process that runs one pattern does not build the other six. The graphs are compiled without a
checkpointer: `langgraph dev` and the
Agent Server bring their own, and `switchyard run` recompiles them with the session store.
Every agent runs on the offline model unless `SWITCHYARD_MODEL` or the run's `Context` says
otherwise; nothing here loads a model or needs a key.

Example:
    ```python
    from switchyard import run
    from switchyard.graphs.demos import router

    print(run(router, "I was charged twice").agent_name)  # "support"
    ```
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from switchyard.state.agents import AgentSpec

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from switchyard.graphs.hierarchical import Worker

ROUTER_AGENTS = (
    AgentSpec(
        name="support",
        description="Customer support: refunds, billing, payments, charges, invoices, "
        "subscriptions and account issues such as login or password problems.",
        system_prompt="You are the customer support agent. Resolve billing, refund and account "
        "problems politely and precisely.",
        examples=(
            "I need a refund for my last payment",
            "I was charged twice this month",
            "How do I cancel my subscription?",
            "I can't log in to my account",
            "Update the credit card on my invoice",
        ),
    ),
    AgentSpec(
        name="docs",
        description="Documentation: how to use the API, SDKs, endpoints, authentication, "
        "parameters, rate limits and where things are documented.",
        system_prompt="You are the documentation agent. Explain how to use the API and SDKs, "
        "citing the relevant documentation.",
        examples=(
            "How do I authenticate with the API?",
            "Which endpoint lists all projects?",
            "Is there a Python SDK?",
            "What are the API rate limits?",
            "Where is the documentation for webhooks?",
        ),
    ),
    AgentSpec(
        name="code",
        description="Programming: write, generate, fix, debug, refactor and review code, "
        "functions, scripts and tests.",
        system_prompt="You are the coding agent. Write, fix and review code with short "
        "explanations.",
        examples=(
            "Write a Python function that parses a CSV file",
            "Review this code for bugs",
            "Fix the error in my JavaScript function",
            "Generate unit tests for this class",
            "Refactor this script to be faster",
        ),
    ),
)
"""The three agents of the classic router example; `support` is the default."""


class ResearchNotes(BaseModel):
    """What the research stage hands to the draft stage."""

    topic: str = Field(description="The subject, in a few words.")
    key_points: list[str] = Field(min_length=1, description="Facts the draft must cover.")
    open_questions: list[str] = Field(
        default_factory=list, description="What the research could not settle."
    )


class Draft(BaseModel):
    """What the draft stage hands to the edit stage."""

    title: str = Field(description="A working title.")
    body: str = Field(description="The draft text, a few paragraphs.")


PIPELINE_STAGES = (
    AgentSpec(
        name="research",
        description="Research: gathers the key facts and open questions on the topic.",
        system_prompt="You are the research agent. List the key facts a writer needs on the "
        "requested topic, and the questions you could not settle.",
        output_schema=ResearchNotes,
    ),
    AgentSpec(
        name="draft",
        description="Drafting: turns research notes into a first draft.",
        system_prompt="You are the drafting agent. Write a clear first draft from the research "
        "notes you receive, covering every key point.",
        output_schema=Draft,
    ),
    AgentSpec(
        name="edit",
        description="Editing: tightens the draft into the final text.",
        system_prompt="You are the editing agent. Edit the draft you receive into a concise, "
        "accurate final text for the original request.",
    ),
)
"""research -> draft -> edit: two structured hand-offs, then the final text."""


class Review(BaseModel):
    """One analyst's review: a verdict the vote can count, and the reasoning behind it."""

    verdict: Literal["go", "no_go", "needs_more_information"] = Field(
        description="Whether to go ahead, from this analyst's angle."
    )
    rationale: str = Field(description="Two or three sentences explaining the verdict.")
    concerns: list[str] = Field(default_factory=list, description="What would change the verdict.")


FANOUT_ANALYSTS = (
    AgentSpec(
        name="product_analyst",
        description="Product: value to users, adoption and fit with the roadmap.",
        system_prompt="You are the product analyst. Review the question from the users' side: "
        "what they gain, what they lose, and whether they will adopt it.",
        output_schema=Review,
    ),
    AgentSpec(
        name="risk_analyst",
        description="Risk: security, reliability, compliance and what could go wrong.",
        system_prompt="You are the risk analyst. Review the question for security, reliability "
        "and compliance risks, and how likely and how bad each one is.",
        output_schema=Review,
    ),
    AgentSpec(
        name="cost_analyst",
        description="Cost: engineering effort, running cost and payback time.",
        system_prompt="You are the cost analyst. Review the question for engineering effort, "
        "running cost and how long it takes to pay back.",
        output_schema=Review,
    ),
)
"""Three analysts who review the same question from different angles."""

FANOUT_MERGER = AgentSpec(
    name="synthesizer",
    description="Synthesis: weighs the analysts' reviews into one recommendation.",
    system_prompt="You are the lead analyst. Weigh the reviews you receive into one clear "
    "recommendation, naming where the analysts disagree and any review that is missing.",
)
"""The merger: it sees the analysts' typed reviews, never their transcripts."""


CODE_TEAM = (
    AgentSpec(
        name="python_dev",
        description="Python: scripts, data processing, APIs, async code, tests and packaging.",
        system_prompt="You are the Python developer of the code team. Write correct, idiomatic "
        "Python with a short explanation.",
        examples=(
            "Write a Python function that parses a CSV file",
            "Show an asyncio example with tasks",
            "Add pytest tests for this module",
        ),
    ),
    AgentSpec(
        name="web_dev",
        description="Web: JavaScript, TypeScript, HTML, CSS, browser and frontend code.",
        system_prompt="You are the web developer of the code team. Write correct, modern "
        "JavaScript, HTML and CSS with a short explanation.",
        examples=(
            "Write a JavaScript fetch call with error handling",
            "Build an HTML form with CSS styling",
            "Convert this callback code to TypeScript async/await",
        ),
    ),
)
"""The demo's code team: a router sub-team with a Python and a web specialist."""

HIERARCHICAL_MANAGER = AgentSpec(
    name="manager",
    description="Plans the work, assigns steps to the workers and writes the final answer.",
    system_prompt="You are the manager of a small team (a researcher, a coder and a writer). "
    "Split each request into steps for them, then combine their results into one answer.",
)
"""The demo's manager."""


def _hierarchical_workers() -> tuple[Worker, ...]:
    """The demo's workers: a researcher, a coder (a nested router sub-team) and a writer.

    Built on first access of `HIERARCHICAL_WORKERS`: the coder's sub-team graph is compiled and
    checked (0.1 s), which a process that runs another pattern does not need.
    """
    from switchyard.graphs.router import build_router_graph
    from switchyard.state.hierarchical import SubTeam

    return (
        AgentSpec(
            name="researcher",
            description="Research: facts, background, sources and trade-offs on a topic.",
            system_prompt="You are the researcher. Gather the facts, background and trade-offs the "
            "task needs, and say where they come from.",
        ),
        SubTeam(
            name="coder",
            description="Code: writes working code and examples (a sub-team that routes each task "
            "to its Python or web developer).",
            graph=build_router_graph(CODE_TEAM, default_agent="python_dev").compile(
                name="code_team"
            ),
        ),
        AgentSpec(
            name="writer",
            description="Writing: turns research and code into clear prose, articles and "
            "summaries.",
            system_prompt="You are the writer. Turn the research and code you are given into a "
            "clear, well-structured text.",
        ),
    )


EVENTS_AGENTS = (
    AgentSpec(
        name="reviewer",
        description="Reviews submitted articles for accuracy, clarity and structure.",
        system_prompt="You are the reviewer of a publication. Review the submitted article: "
        "accuracy, clarity, structure; list concrete changes.",
    ),
    AgentSpec(
        name="editor",
        description="Edits an article using the review and decides whether to publish it.",
        system_prompt="You are the editor. Apply the review to the article and request "
        "publication when it is ready.",
    ),
    AgentSpec(
        name="publisher",
        description="Publishes approved articles and reports where they went live.",
        system_prompt="You are the publisher. Publish the approved article and confirm what was "
        "published.",
    ),
)
"""The demo's content pipeline: reviewer, editor and publisher."""

EVENTS_SUBSCRIPTIONS: dict[str, list[str]] = {
    "article.submitted": ["reviewer"],
    "review.done": ["editor"],
    "publish.requested": ["publisher"],
}
"""Who handles which event in the demo."""

EVENTS_PUBLISHES: dict[str, list[str]] = {
    "reviewer": ["review.done"],
    "editor": ["publish.requested"],
}
"""What each demo agent may publish: article.submitted -> review.done -> publish.requested."""


SUPERVISOR_WORKERS = (
    AgentSpec(
        name="research",
        description="Research: looks up facts, history, sources and background on a topic.",
        system_prompt="You are the research worker. Find the facts the task asks for and cite "
        "where they come from.",
    ),
    AgentSpec(
        name="math",
        description="Math: calculates numbers, sums, percentages and growth rates.",
        system_prompt="You are the math worker. Compute what the task asks for and show the "
        "working in one or two lines.",
    ),
    AgentSpec(
        name="writer",
        description="Writing: drafts, rewrites and summarises text, emails and reports.",
        system_prompt="You are the writing worker. Draft or edit the text the task asks for.",
    ),
)
"""Three workers for the demo; the default supervisor delegates to them."""


SWARM_AGENTS = (
    AgentSpec(
        name="triage",
        description="Front desk: greets customers and answers general questions.",
        system_prompt="You are the front desk agent. Answer general questions and hand the "
        "customer to billing or technical support when they need a specialist.",
        handoffs=("billing", "tech_support"),
    ),
    AgentSpec(
        name="billing",
        description="Billing: invoices, charges, refunds, payments and subscriptions.",
        system_prompt="You are the billing agent. Resolve invoice, charge, refund and "
        "subscription questions; hand technical problems to technical support.",
        handoffs=("triage", "tech_support"),
    ),
    AgentSpec(
        name="tech_support",
        description="Technical support: app errors, crashes, bugs and login problems.",
        system_prompt="You are the technical support agent. Troubleshoot errors, crashes and "
        "login problems; hand billing questions to billing.",
        handoffs=("triage", "billing"),
    ),
)
"""A customer-service swarm; `triage` greets new sessions."""


# The compiled demo graphs, in the order `langgraph.json` lists them, each built on first access
# (PEP 562 module `__getattr__`): building all seven costs a cold process 0.09 s for one route.


def _router() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.router import build_router_graph

    return build_router_graph(ROUTER_AGENTS, default_agent="support").compile(name="router")


def _pipeline() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.pipeline import build_pipeline_graph

    return build_pipeline_graph(PIPELINE_STAGES).compile(name="pipeline")


def _fanout() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.fanout import build_fanout_graph

    return build_fanout_graph(FANOUT_ANALYSTS, merger=FANOUT_MERGER).compile(name="fanout")


def _hierarchical() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.hierarchical import build_hierarchical_graph

    return build_hierarchical_graph(
        _lazy("HIERARCHICAL_WORKERS"), manager=HIERARCHICAL_MANAGER
    ).compile(name="hierarchical")


def _events() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.events import build_events_graph

    return build_events_graph(
        EVENTS_AGENTS, subscriptions=EVENTS_SUBSCRIPTIONS, publishes=EVENTS_PUBLISHES
    ).compile(name="events")


def _supervisor() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.supervisor import build_supervisor_graph

    return build_supervisor_graph(SUPERVISOR_WORKERS).compile(name="supervisor")


def _swarm() -> CompiledStateGraph[Any, Any, Any, Any]:
    from switchyard.graphs.swarm import build_swarm_graph

    return build_swarm_graph(SWARM_AGENTS, default_agent="triage").compile(name="swarm")


_BUILDERS: dict[str, Callable[[], Any]] = {
    "HIERARCHICAL_WORKERS": _hierarchical_workers,
    "router": _router,
    "pipeline": _pipeline,
    "fanout": _fanout,
    "hierarchical": _hierarchical,
    "events": _events,
    "supervisor": _supervisor,
    "swarm": _swarm,
}
_build_lock = threading.RLock()

if TYPE_CHECKING:
    HIERARCHICAL_WORKERS: tuple[Worker, ...]
    """The demo's workers: a researcher, a coder (a nested router sub-team) and a writer."""
    router: CompiledStateGraph[Any, Any, Any, Any]
    pipeline: CompiledStateGraph[Any, Any, Any, Any]
    fanout: CompiledStateGraph[Any, Any, Any, Any]
    hierarchical: CompiledStateGraph[Any, Any, Any, Any]
    events: CompiledStateGraph[Any, Any, Any, Any]
    supervisor: CompiledStateGraph[Any, Any, Any, Any]
    swarm: CompiledStateGraph[Any, Any, Any, Any]


def __getattr__(name: str) -> Any:
    """Build the demo graph (or worker set) `name` once and keep it as a module attribute."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy(name)


def _lazy(name: str) -> Any:
    with _build_lock:  # re-entrant: building the hierarchical graph builds its workers
        built = globals().get(name)
        if built is None:
            built = globals()[name] = _BUILDERS[name]()
        return built


def __dir__() -> list[str]:
    """The module's names, the demo graphs included before they are built."""
    return sorted({*globals(), *_BUILDERS})
