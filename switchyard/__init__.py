"""Switchyard: multi-agent orchestration patterns on LangGraph, with production guardrails.

Describe agents with `AgentSpec`, build a pattern with one of the `build_*_graph` factories, compile
it with a checkpointer, and call it through `run` / `arun`, which return a `RunResult`:

```python
from langgraph.checkpoint.memory import InMemorySaver

from switchyard import AgentSpec, build_router_graph, run

agents = [
    AgentSpec(name="support", description="Refunds, billing and account problems."),
    AgentSpec(name="docs", description="How to use the API and the SDKs."),
]
graph = build_router_graph(agents, default_agent="support").compile(checkpointer=InMemorySaver())
print(run(graph, "I was charged twice", user_id="ada", session_id="s1").agent_name)
```

Every name here is resolved on first use, so `import switchyard` loads neither LangGraph nor any
model. The names in `__all__` are the stable surface; the modules behind them may move.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.core.capabilities import declare_capabilities
    from switchyard.core.errors import (
        AgentConfigError,
        CapabilityError,
        ConfigError,
        GraphNotFoundError,
        InvalidInputError,
        ModelConfigError,
        OutputTruncatedError,
        PersistenceConfigError,
        SessionAccessError,
        SwitchyardError,
    )
    from switchyard.core.models import load_chat_model, register_chat_model, unregister_chat_model
    from switchyard.core.offline import OfflineChatModel
    from switchyard.graphs import demos
    from switchyard.graphs.events import build_events_graph
    from switchyard.graphs.fanout import build_fanout_graph
    from switchyard.graphs.hierarchical import build_hierarchical_graph
    from switchyard.graphs.pipeline import build_pipeline_graph
    from switchyard.graphs.router import build_router_graph
    from switchyard.graphs.supervisor import build_supervisor_graph
    from switchyard.graphs.swarm import build_swarm_graph
    from switchyard.guardrails.breaker import CircuitOpenError, configure_breakers
    from switchyard.guardrails.budgets import (
        Budget,
        BudgetExceededError,
        DeadlineExceededError,
        RetryBudgetExhaustedError,
        add_cost_alert,
    )
    from switchyard.guardrails.confidence import ConfidenceGate, LowConfidenceError
    from switchyard.guardrails.convergence import ConvergedError, Convergence, NoProgressError
    from switchyard.guardrails.idempotency import aonce, idempotency_key, once
    from switchyard.guardrails.limits import AgentTimeoutError, RateLimitedError
    from switchyard.guardrails.ratelimit import RateLimit, configure_rate_limits
    from switchyard.guardrails.tripwires import (
        GuardrailFunctionOutput,
        GuardrailTrippedError,
        InputGuardrail,
        OutputGuardrail,
        input_guardrail,
        max_length,
        output_guardrail,
        personal_data,
        prompt_injection,
    )
    from switchyard.nodes.agent import make_agent_node
    from switchyard.nodes.chain import default_middleware
    from switchyard.nodes.memory import SummarizedMemory
    from switchyard.nodes.tripwires import Tripwires, allowed_topics, model_judge
    from switchyard.runtime.resume import aresume_thread, resume_thread
    from switchyard.runtime.run import (
        RunResult,
        areplay,
        aresume,
        arun,
        replay,
        resume,
        run,
        thread_id_for,
    )
    from switchyard.runtime.scheduler import (
        Scheduler,
        arun_job_now,
        pause_job,
        remove_job,
        resume_job,
        run_job_now,
        schedule,
    )
    from switchyard.runtime.sessions import MultitaskStrategy, SessionBusyError
    from switchyard.state.agents import AgentSpec
    from switchyard.state.context import Context
    from switchyard.state.hierarchical import (
        Plan,
        PlanStep,
        PlanValidationError,
        SubTeam,
        check_plan,
    )
    from switchyard.state.memory import MemoryNotes, MemoryPolicy
    from switchyard.state.outcomes import EndReason
    from switchyard.storage.dlq import DeadLetterQueue
    from switchyard.storage.persistence import open_async_persistence, open_persistence
    from switchyard.storage.retention import RetentionPolicy, aprune, prune
    from switchyard.storage.schedules import ScheduleStore, SchedulingNotAllowedError

_EXPORTS: dict[str, str] = {
    # describing agents and runs
    "AgentSpec": "switchyard.state.agents",
    "Context": "switchyard.state.context",
    "Budget": "switchyard.guardrails.budgets",
    "RateLimit": "switchyard.guardrails.ratelimit",
    "MemoryPolicy": "switchyard.state.memory",
    "MemoryNotes": "switchyard.state.memory",
    "load_chat_model": "switchyard.core.models",
    "register_chat_model": "switchyard.core.models",
    "unregister_chat_model": "switchyard.core.models",
    "declare_capabilities": "switchyard.core.capabilities",
    "OfflineChatModel": "switchyard.core.offline",
    # the seven patterns
    "build_router_graph": "switchyard.graphs.router",
    "build_pipeline_graph": "switchyard.graphs.pipeline",
    "build_fanout_graph": "switchyard.graphs.fanout",
    "build_hierarchical_graph": "switchyard.graphs.hierarchical",
    "SubTeam": "switchyard.state.hierarchical",
    "Plan": "switchyard.state.hierarchical",
    "PlanStep": "switchyard.state.hierarchical",
    "check_plan": "switchyard.state.hierarchical",
    "build_events_graph": "switchyard.graphs.events",
    "build_supervisor_graph": "switchyard.graphs.supervisor",
    "build_swarm_graph": "switchyard.graphs.swarm",
    # running them
    "RunResult": "switchyard.runtime.run",
    "run": "switchyard.runtime.run",
    "arun": "switchyard.runtime.run",
    "resume": "switchyard.runtime.run",
    "replay": "switchyard.runtime.run",
    "aresume": "switchyard.runtime.run",
    "areplay": "switchyard.runtime.run",
    "thread_id_for": "switchyard.runtime.run",
    "resume_thread": "switchyard.runtime.resume",
    "aresume_thread": "switchyard.runtime.resume",
    # scheduled runs
    "schedule": "switchyard.runtime.scheduler",
    "Scheduler": "switchyard.runtime.scheduler",
    "pause_job": "switchyard.runtime.scheduler",
    "resume_job": "switchyard.runtime.scheduler",
    "remove_job": "switchyard.runtime.scheduler",
    "arun_job_now": "switchyard.runtime.scheduler",
    "run_job_now": "switchyard.runtime.scheduler",
    "ScheduleStore": "switchyard.storage.schedules",
    # agents in graphs of your own, and their middleware
    "make_agent_node": "switchyard.nodes.agent",
    "default_middleware": "switchyard.nodes.chain",
    "SummarizedMemory": "switchyard.nodes.memory",
    "EndReason": "switchyard.state.outcomes",
    # guardrails configured per process
    "configure_breakers": "switchyard.guardrails.breaker",
    "configure_rate_limits": "switchyard.guardrails.ratelimit",
    "add_cost_alert": "switchyard.guardrails.budgets",
    "idempotency_key": "switchyard.guardrails.idempotency",
    "once": "switchyard.guardrails.idempotency",
    "aonce": "switchyard.guardrails.idempotency",
    # input and output guardrails (tripwires)
    "Tripwires": "switchyard.nodes.tripwires",
    "InputGuardrail": "switchyard.guardrails.tripwires",
    "OutputGuardrail": "switchyard.guardrails.tripwires",
    "GuardrailFunctionOutput": "switchyard.guardrails.tripwires",
    "input_guardrail": "switchyard.guardrails.tripwires",
    "output_guardrail": "switchyard.guardrails.tripwires",
    "prompt_injection": "switchyard.guardrails.tripwires",
    "personal_data": "switchyard.guardrails.tripwires",
    "max_length": "switchyard.guardrails.tripwires",
    "allowed_topics": "switchyard.nodes.tripwires",
    "model_judge": "switchyard.nodes.tripwires",
    # state: persistence, retention, failed runs
    "open_persistence": "switchyard.storage.persistence",
    "open_async_persistence": "switchyard.storage.persistence",
    "RetentionPolicy": "switchyard.storage.retention",
    "prune": "switchyard.storage.retention",
    "aprune": "switchyard.storage.retention",
    "DeadLetterQueue": "switchyard.storage.dlq",
    # errors
    "SwitchyardError": "switchyard.core.errors",
    "AgentConfigError": "switchyard.core.errors",
    "ModelConfigError": "switchyard.core.errors",
    "CapabilityError": "switchyard.core.errors",
    "OutputTruncatedError": "switchyard.core.errors",
    "InvalidInputError": "switchyard.core.errors",
    "SessionAccessError": "switchyard.core.errors",
    "GraphNotFoundError": "switchyard.core.errors",
    "PersistenceConfigError": "switchyard.core.errors",
    "ConfigError": "switchyard.core.errors",
    "SessionBusyError": "switchyard.runtime.sessions",
    "MultitaskStrategy": "switchyard.runtime.sessions",
    "AgentTimeoutError": "switchyard.guardrails.limits",
    "RateLimitedError": "switchyard.guardrails.limits",
    "BudgetExceededError": "switchyard.guardrails.budgets",
    "DeadlineExceededError": "switchyard.guardrails.budgets",
    "RetryBudgetExhaustedError": "switchyard.guardrails.budgets",
    "ConfidenceGate": "switchyard.guardrails.confidence",
    "LowConfidenceError": "switchyard.guardrails.confidence",
    "Convergence": "switchyard.guardrails.convergence",
    "ConvergedError": "switchyard.guardrails.convergence",
    "NoProgressError": "switchyard.guardrails.convergence",
    "GuardrailTrippedError": "switchyard.guardrails.tripwires",
    "CircuitOpenError": "switchyard.guardrails.breaker",
    "PlanValidationError": "switchyard.state.hierarchical",
    "SchedulingNotAllowedError": "switchyard.storage.schedules",
}

_MODULES: dict[str, str] = {"demos": "switchyard.graphs.demos"}
"""Public modules: `demos` holds the demo agents and the compiled demo graphs."""

__all__ = [
    "AgentConfigError",
    "AgentSpec",
    "AgentTimeoutError",
    "Budget",
    "BudgetExceededError",
    "CapabilityError",
    "CircuitOpenError",
    "ConfidenceGate",
    "ConfigError",
    "Context",
    "ConvergedError",
    "Convergence",
    "DeadLetterQueue",
    "DeadlineExceededError",
    "EndReason",
    "GraphNotFoundError",
    "GuardrailFunctionOutput",
    "GuardrailTrippedError",
    "InputGuardrail",
    "InvalidInputError",
    "LowConfidenceError",
    "MemoryNotes",
    "MemoryPolicy",
    "ModelConfigError",
    "MultitaskStrategy",
    "NoProgressError",
    "OfflineChatModel",
    "OutputGuardrail",
    "OutputTruncatedError",
    "PersistenceConfigError",
    "Plan",
    "PlanStep",
    "PlanValidationError",
    "RateLimit",
    "RateLimitedError",
    "RetentionPolicy",
    "RetryBudgetExhaustedError",
    "RunResult",
    "ScheduleStore",
    "Scheduler",
    "SchedulingNotAllowedError",
    "SessionAccessError",
    "SessionBusyError",
    "SubTeam",
    "SummarizedMemory",
    "SwitchyardError",
    "Tripwires",
    "add_cost_alert",
    "allowed_topics",
    "aonce",
    "aprune",
    "areplay",
    "aresume",
    "aresume_thread",
    "arun",
    "arun_job_now",
    "build_events_graph",
    "build_fanout_graph",
    "build_hierarchical_graph",
    "build_pipeline_graph",
    "build_router_graph",
    "build_supervisor_graph",
    "build_swarm_graph",
    "check_plan",
    "configure_breakers",
    "configure_rate_limits",
    "declare_capabilities",
    "default_middleware",
    "demos",
    "idempotency_key",
    "input_guardrail",
    "load_chat_model",
    "make_agent_node",
    "max_length",
    "model_judge",
    "once",
    "open_async_persistence",
    "open_persistence",
    "output_guardrail",
    "pause_job",
    "personal_data",
    "prompt_injection",
    "prune",
    "register_chat_model",
    "remove_job",
    "replay",
    "resume",
    "resume_job",
    "resume_thread",
    "run",
    "run_job_now",
    "schedule",
    "thread_id_for",
    "unregister_chat_model",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562), then keep the name here."""
    if name in _MODULES:
        value: Any = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'switchyard' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
