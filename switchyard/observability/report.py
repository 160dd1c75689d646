"""Run reports: which agent spent what, how long each took, and where a run failed.

- `agent_usage(ledger)`: the per-agent rows (calls, tokens in/out/total, cost, latency sum and
  max) of a `UsageLedger`, e.g. `RunResult.usage`; `switchyard run` prints them under the answer.
- `session_report(graph, thread_id)`: a stored session rebuilt from its checkpoint history (the
  usage ledger, and per run the node tasks with their start and end times, results and errors).
- `render_html(report)`: a self-contained HTML page (inline CSS and SVG, no external assets) with
  the per-agent table, a timeline of the agent spans of each run and a token and cost breakdown.
- `report_json(report)`: the same as JSON-ready data.
- `switchyard report THREAD [--user U] [--checkpointer X] [--html FILE] [--json]`
  (`switchyard.cli.report`): the same from the command line, for a session stored by
  `switchyard run`.

A cost is unknown when a model call had no known price (`switchyard.state.usage`): it is `null`
in JSON and "unknown" in tables and charts (with the known part as a lower bound, `≥ $x`), never
$0.

Task times come from checkpoint timestamps: the tasks planned at one checkpoint ran until the next
checkpoint was written, so parallel tasks of one step share their step's interval. The per-call
latencies are in the ledger (`latency_ms_sum`, `latency_ms_max`). Every string in a report is
redacted (`switchyard.core.redact`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from switchyard.core.errors import SessionAccessError, SwitchyardError
from switchyard.core.pricing import format_cost
from switchyard.core.redact import redact, redact_value
from switchyard.state.outcomes import SUCCESSFUL
from switchyard.state.reducers import merge_usage
from switchyard.state.usage import CostTotal, UsageEntry, UsageLedger, entry_cost, total_cost

_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#bab0ac",
    "#ff9da7",
)
_ERROR_COLOR = "#e15759"


class ReportError(SwitchyardError):
    """A report cannot be produced; the message says why and what to do."""


class SessionNotFoundError(ReportError, LookupError):
    """No stored session has the requested thread (or session) id."""


class ReportAccessError(SessionNotFoundError, SessionAccessError):
    """The caller has no stored session with the requested id.

    Raised alike when the session does not exist, has no owner or is another user's, so the
    answer reveals neither the session nor its owner.
    """


def not_yours(reference: str, user_id: str) -> str:
    """The one answer for a session `user_id` may not read, whether it exists or not."""
    return (
        f"no stored session {reference!r} of user {user_id!r} (it does not exist here, or "
        "belongs to another user); pass the thread id or session id, the right --user and "
        "--checkpointer"
    )


# --------------------------------------------------------------------------- per-agent usage


@dataclass(frozen=True)
class AgentUsage:
    """Usage of one agent, all its models together.

    Attributes:
        agent: The agent's name.
        models: The models it used, in order of first use.
        calls: Model calls.
        input_tokens: Tokens sent.
        output_tokens: Tokens received.
        total_tokens: Both together.
        cost_usd: Dollars; None when a call had no known price.
        known_cost_usd: Dollars of the calls with a known price.
        unpriced_calls: Calls with no known price.
        latency_ms_sum: Time spent in model calls.
        latency_ms_max: Longest single call.
        retries: Retried calls.
        fallbacks: Calls answered by a fallback model.
        cache_hits: Calls answered from the response cache.
    """

    agent: str
    models: tuple[str, ...]
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    known_cost_usd: float
    unpriced_calls: int
    latency_ms_sum: float
    latency_ms_max: float
    retries: int
    fallbacks: int
    cache_hits: int


def agent_usage(ledger: UsageLedger) -> list[AgentUsage]:
    """Per-agent totals of a ledger, in the order agents first appear in it."""
    grouped: dict[str, list[UsageEntry]] = {}
    for entry in ledger.values():
        grouped.setdefault(entry["agent"], []).append(entry)
    rows = []
    for agent, entries in grouped.items():
        cost = total_cost(entries)
        rows.append(
            AgentUsage(
                agent=agent,
                models=tuple(dict.fromkeys(e["model"] for e in entries)),
                calls=sum(e["calls"] for e in entries),
                input_tokens=sum(e["input_tokens"] for e in entries),
                output_tokens=sum(e["output_tokens"] for e in entries),
                total_tokens=sum(e["total_tokens"] for e in entries),
                cost_usd=cost.cost_usd,
                known_cost_usd=cost.known_cost_usd,
                unpriced_calls=cost.unpriced_calls,
                latency_ms_sum=sum(e["latency_ms_sum"] for e in entries),
                latency_ms_max=max(e["latency_ms_max"] for e in entries),
                retries=sum(e["retries"] for e in entries),
                fallbacks=sum(e["fallbacks"] for e in entries),
                cache_hits=sum(e["cache_hits"] for e in entries),
            )
        )
    return rows


def usage_total(rows: Sequence[AgentUsage]) -> AgentUsage:
    """The sum of `rows`, as one row named `total` (its cost unknown when any row's is)."""
    known = round(sum(r.known_cost_usd for r in rows), 8)
    unpriced = sum(r.unpriced_calls for r in rows)
    return AgentUsage(
        agent="total",
        models=(),
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        total_tokens=sum(r.total_tokens for r in rows),
        cost_usd=entry_cost(known, unpriced),
        known_cost_usd=known,
        unpriced_calls=unpriced,
        latency_ms_sum=sum(r.latency_ms_sum for r in rows),
        latency_ms_max=max((r.latency_ms_max for r in rows), default=0.0),
        retries=sum(r.retries for r in rows),
        fallbacks=sum(r.fallbacks for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
    )


def usage_columns(rows: Sequence[AgentUsage], *, compact: bool = False) -> list[tuple[str, str]]:
    """(header, field) pairs; guardrail columns appear only when something happened.

    `compact` puts the three token counts in one column, so the table fits 80 columns.
    """
    tokens = (
        [("tokens in/out/total", "tokens")]
        if compact
        else [
            ("tokens in", "input_tokens"),
            ("tokens out", "output_tokens"),
            ("total", "total_tokens"),
        ]
    )
    columns = [
        ("agent", "agent"),
        ("model", "models"),
        ("calls", "calls"),
        *tokens,
        ("cost", "cost_usd"),
        ("latency", "latency_ms_sum"),
        ("max call", "latency_ms_max"),
    ]
    for header, name in (
        ("retries", "retries"),
        ("fallbacks", "fallbacks"),
        ("cached", "cache_hits"),
    ):
        if any(getattr(r, name) for r in rows):
            columns.append((header, name))
    return columns


def usage_cell(row: AgentUsage, name: str) -> str:
    """One cell of a usage table: the field `name` of `row` as text (`tokens`: in/out/total)."""
    if name == "tokens":
        return f"{row.input_tokens}/{row.output_tokens}/{row.total_tokens}"
    value = getattr(row, name)
    if name == "models":
        return ", ".join(value)
    if name == "cost_usd":
        return format_cost(value, known=row.known_cost_usd)
    if name.startswith("latency"):
        return f"{value:.1f} ms"
    return str(value)


# --------------------------------------------------------------------------- stored sessions


@dataclass(frozen=True)
class TaskSpan:
    """One node task of a stored run.

    Attributes:
        node: The graph node (an agent's name for agent nodes).
        step: The step it ran in.
        start: When its step began (the checkpoint it was planned at).
        end: When its step's checkpoint was written; equal to `start` when it never finished.
        usage: The usage ledger update it returned.
        error: Its error, when it failed.
        interrupted: Whether it paused for a person.
    """

    node: str
    step: int
    start: datetime
    end: datetime
    usage: UsageLedger
    error: str | None = None
    interrupted: bool = False

    @property
    def duration_ms(self) -> float:
        """How long its step took."""
        return (self.end - self.start).total_seconds() * 1000

    @property
    def agents(self) -> tuple[str, ...]:
        """The agents whose model usage this task recorded, in order."""
        return tuple(dict.fromkeys(entry["agent"] for entry in self.usage.values()))

    @property
    def is_agent(self) -> bool:
        """Whether this task ran an agent (it recorded model usage)."""
        return bool(self.agents)

    @property
    def label(self) -> str:
        """The node, with the agents it ran when they are named otherwise: `plan (manager)`."""
        others = [a for a in self.agents if a != self.node]
        return f"{self.node} ({', '.join(others)})" if others else self.node


@dataclass(frozen=True)
class RunRecord:
    """One run (one message, or one resume) of a stored session.

    Attributes:
        correlation_id: The run's correlation id.
        started: When its first checkpoint was written.
        ended: When its last checkpoint was written.
        input: The user's message, when the run started with one.
        tasks: Its node tasks, in order.
        usage: What its tasks spent.
        end_reason: "completed", "error", "escalated" or the pattern's own reason.
        failed_node: The last node that failed, if any.
        error: That node's error.
    """

    correlation_id: str | None
    started: datetime
    ended: datetime
    input: str
    tasks: tuple[TaskSpan, ...]
    usage: UsageLedger
    end_reason: str
    failed_node: str | None = None
    error: str | None = None

    @property
    def duration_ms(self) -> float:
        """Wall time from its first to its last checkpoint."""
        return (self.ended - self.started).total_seconds() * 1000

    @property
    def cost(self) -> CostTotal:
        """What its model calls cost (unknown when one had no known price)."""
        return total_cost(self.usage.values())


@dataclass(frozen=True)
class SessionReport:
    """A stored session: its usage ledger and its runs.

    Attributes:
        thread_id: The checkpointer thread.
        pattern: The pattern that wrote it.
        user_id: Its owner.
        session_id: Its session id.
        usage: The session's usage ledger (all runs).
        runs: Its runs, oldest first.
    """

    thread_id: str
    pattern: str | None
    user_id: str | None
    session_id: str | None
    usage: UsageLedger
    runs: tuple[RunRecord, ...]

    @property
    def cost(self) -> CostTotal:
        """What the session's model calls cost (unknown when one had no known price)."""
        return total_cost(self.usage.values())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _ledger(value: object) -> UsageLedger:
    return dict(cast(UsageLedger, value)) if isinstance(value, Mapping) else {}


def _error_text(error: object) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{type(error).__name__}: {first}" if first else type(error).__name__
    return str(error)


def _when(snapshot: StateSnapshot) -> datetime:
    assert snapshot.created_at is not None, "stored checkpoints always carry a timestamp"
    return datetime.fromisoformat(snapshot.created_at)


def _input_text(result: Any) -> str:
    messages = result.get("messages") if isinstance(result, Mapping) else None
    for message in messages or []:
        if isinstance(message, HumanMessage):
            return message.text
        if isinstance(message, BaseMessage):
            continue
        if isinstance(message, Mapping) and message.get("role") in ("user", "human"):
            return str(message.get("content", ""))
    return ""


def _group_runs(history: Sequence[StateSnapshot]) -> list[list[StateSnapshot]]:
    """Split a thread's checkpoints (oldest first) into runs.

    A run starts at an input checkpoint (a new message) or where the correlation id changes (a
    resume carries its own id).
    """
    groups: list[list[StateSnapshot]] = []
    previous: Any = None
    for snapshot in history:
        metadata = snapshot.metadata or {}
        correlation = metadata.get("correlation_id")
        if not groups or metadata.get("source") == "input" or correlation != previous:
            groups.append([])
        groups[-1].append(snapshot)
        previous = correlation
    return groups


def _run_record(group: Sequence[StateSnapshot]) -> RunRecord:
    tasks: list[TaskSpan] = []
    text = ""
    for index, snapshot in enumerate(group):
        start = _when(snapshot)
        # The tasks planned here ran until the next checkpoint; the last one's never finished.
        end = _when(group[index + 1]) if index + 1 < len(group) else start
        step = int((snapshot.metadata or {}).get("step", -1)) + 1
        for task in snapshot.tasks:
            if task.name.startswith("__"):
                if not text:
                    text = _input_text(task.result)
                continue
            finished = task.result is not None or task.error is not None
            update = task.result.get("usage") if isinstance(task.result, Mapping) else None
            tasks.append(
                TaskSpan(
                    node=task.name,
                    step=step,
                    start=start,
                    end=end if finished else start,
                    usage=dict(update) if isinstance(update, Mapping) else {},
                    error=_error_text(task.error),
                    interrupted=bool(task.interrupts),
                )
            )
    last = group[-1]
    usage: UsageLedger = {}
    for span in tasks:
        usage = merge_usage(usage, span.usage)
    failed = [t for t in tasks if t.error]
    pending = last.tasks
    if any(t.interrupts for t in pending):
        end_reason = "escalated"
    elif any(t.error for t in pending):
        end_reason = "error"
    else:
        reason = last.values.get("end_reason") if isinstance(last.values, Mapping) else None
        end_reason = reason if isinstance(reason, str) and reason else "completed"
    return RunRecord(
        correlation_id=_text((group[0].metadata or {}).get("correlation_id")),
        started=_when(group[0]),
        ended=_when(last),
        input=text,
        tasks=tuple(tasks),
        usage=usage,
        end_reason=end_reason,
        failed_node=failed[-1].node if failed else None,
        error=failed[-1].error if failed else None,
    )


def report_from_history(thread_id: str, history: Iterable[StateSnapshot]) -> SessionReport:
    """Build a `SessionReport` from a thread's checkpoint history (in any order).

    Raises:
        SessionNotFoundError: The history is empty.
    """
    snapshots = sorted(history, key=_when)
    if not snapshots:
        raise SessionNotFoundError(f"thread {thread_id!r} has no stored checkpoints")
    groups = _group_runs(snapshots)
    runs = [_run_record(group) for group in groups]
    newest = snapshots[-1]
    metadata = newest.metadata or {}
    values = newest.values if isinstance(newest.values, Mapping) else {}
    return SessionReport(
        thread_id=thread_id,
        pattern=_text(metadata.get("pattern")),
        user_id=_text(metadata.get("user_id")),
        session_id=_text(metadata.get("session_id")),
        usage=_ledger(values.get("usage")),
        runs=tuple(runs),
    )


def session_report(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, user_id: str | None = None
) -> SessionReport:
    """Rebuild a stored session from `graph`'s checkpointer.

    Args:
        graph: The pattern's graph, compiled with the checkpointer holding the session.
        thread_id: The session's thread (`RunResult.thread_id`).
        user_id: The caller; when given, the session must be theirs (checked before its history
            is read). None reads any session (the operator's view).

    Raises:
        SessionNotFoundError: The thread has no checkpoints.
        ReportAccessError: `user_id` is given and the session is missing, has no owner or is
            another user's (refused alike).

    Example:
        ```python
        report = session_report(graph, result.thread_id)
        Path("run.html").write_text(render_html(report))
        ```
    """
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if user_id is not None:
        owner = (graph.get_state(config).metadata or {}).get("user_id")
        if owner is None or owner != user_id:
            raise ReportAccessError(not_yours(thread_id, user_id))
    return report_from_history(thread_id, graph.get_state_history(config))


# --------------------------------------------------------------------------- HTML


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #666; } .meta code { color: #333; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
.error { color: #b00020; } .ok { color: #2e7d32; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
.run { border-left: 3px solid #ccc; padding-left: 1rem; margin: 1.2rem 0; }
"""


def _e(value: Any) -> str:
    """Escaped, redacted text for HTML."""
    return html.escape(redact(str(value)), quote=True)


def _color(name: str, order: dict[str, int]) -> str:
    index = order.setdefault(name, len(order))
    return _PALETTE[index % len(_PALETTE)]


def _usage_html(ledger: UsageLedger) -> str:
    rows = agent_usage(ledger)
    if not rows:
        return "<p>No model calls were recorded.</p>"
    columns = usage_columns(rows)
    head = "".join(f"<th>{_e(header)}</th>" for header, _ in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{_e(usage_cell(row, n))}</td>'
            if n == "models"
            else f"<td>{_e(usage_cell(row, n))}</td>"
            for _, n in columns
        )
        body.append(f"<tr>{cells}</tr>")
    if len(rows) > 1:
        total = usage_total(rows)
        cells = "".join(f"<td>{_e(usage_cell(total, n))}</td>" for _, n in columns)
        body.append(f'<tr class="total">{cells}</tr>')
    return f'<table id="usage"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _breakdown_svg(ledger: UsageLedger, order: dict[str, int]) -> str:
    """Tokens (input and output stacked) and cost per agent, as horizontal bars."""
    rows = agent_usage(ledger)
    if not rows:
        return ""
    label_w, bar_w, cost_w, row_h = 140, 520, 160, 26
    bar_room = bar_w - 130  # leaves room for the token counts after the longest bar
    max_tokens = max(r.total_tokens for r in rows) or 1
    # An unknown cost draws its known part (a lower bound) and is labelled "unknown".
    max_cost = max(r.known_cost_usd for r in rows)
    height = row_h * len(rows) + 30
    parts = [
        f'<svg id="breakdown" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + bar_w + 60 + cost_w + 110}" height="{height}" role="img" '
        'aria-label="tokens and cost per agent">',
        f'<text x="{label_w}" y="14">tokens (input | output)</text>',
        f'<text x="{label_w + bar_w + 60}" y="14">cost (US$)</text>',
    ]
    for i, row in enumerate(rows):
        y = 22 + i * row_h
        w_in = row.input_tokens / max_tokens * bar_room
        w_out = row.output_tokens / max_tokens * bar_room
        color = _color(row.agent, order)
        parts.append(f'<text x="0" y="{y + 14}">{_e(row.agent)}</text>')
        parts.append(
            f'<rect class="tokens-in" x="{label_w}" y="{y}" width="{w_in:.1f}" height="18" '
            f'fill="{color}"><title>{_e(row.agent)}: {row.input_tokens} input tokens</title></rect>'
        )
        parts.append(
            f'<rect class="tokens-out" x="{label_w + w_in:.1f}" y="{y}" width="{w_out:.1f}" '
            f'height="18" fill="{color}" fill-opacity="0.55"><title>{_e(row.agent)}: '
            f"{row.output_tokens} output tokens</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + w_in + w_out + 4:.1f}" y="{y + 14}">'
            f"{row.input_tokens} | {row.output_tokens}</text>"
        )
        cost_x = label_w + bar_w + 60
        w_cost = (row.known_cost_usd / max_cost * cost_w) if max_cost > 0 else 0.0
        cost = _e(format_cost(row.cost_usd, known=row.known_cost_usd))
        unknown = "" if row.cost_usd is not None else ' fill-opacity="0.35"'
        parts.append(
            f'<rect class="cost" x="{cost_x}" y="{y}" width="{w_cost:.1f}" height="18" '
            f'fill="{color}"{unknown}><title>{_e(row.agent)}: {cost}</title></rect>'
        )
        parts.append(f'<text x="{cost_x + w_cost + 4:.1f}" y="{y + 14}">{cost}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(run: RunRecord, index: int, order: dict[str, int]) -> str:
    """Each node of the run on its own lane, placed by its step's start and end.

    Bars take the colour of the agent they ran (as in the breakdown chart); failed ones are red.
    """
    if not run.tasks:
        return "<p>No node ran in this run.</p>"
    label_w, width, lane_h, margin = 180, 720, 24, 40
    lanes = list(dict.fromkeys(t.label for t in run.tasks))
    total_ms = max(run.duration_ms, max(t.duration_ms for t in run.tasks), 0.001)
    axis_y = len(lanes) * lane_h + 16
    parts = [
        f'<svg class="timeline" id="timeline-{index}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + width + margin}" height="{axis_y + 18}" role="img" '
        f'aria-label="timeline of run {index + 1}">'
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + fraction * width
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{axis_y - 12}" stroke="#ddd" />'
            f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle">'
            f"{fraction * total_ms:.0f} ms</text>"
        )
    for lane, label in enumerate(lanes):
        parts.append(f'<text x="0" y="{lane * lane_h + 16}">{_e(label)}</text>')
    for task in run.tasks:
        offset = (task.start - run.started).total_seconds() * 1000
        x = label_w + offset / total_ms * width
        w = max(task.duration_ms / total_ms * width, 2.0)
        y = lanes.index(task.label) * lane_h + 3
        color = _ERROR_COLOR if task.error else _color((task.agents or (task.node,))[0], order)
        tokens = sum(e["total_tokens"] for e in task.usage.values())
        note = f"{task.label}, step {task.step}: {task.duration_ms:.1f} ms, {tokens} tokens"
        if task.error:
            note += f", failed: {task.error}"
        if task.interrupted:
            note += ", waiting for a person"
        kind = "agent" if task.is_agent else "node"
        parts.append(
            f'<rect class="span {kind}" data-node="{_e(task.node)}" x="{x:.1f}" y="{y}" '
            f'width="{w:.1f}" height="{lane_h - 6}" fill="{color}"><title>{_e(note)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: SessionReport) -> str:
    """A self-contained HTML page for a stored session (no scripts, no external assets)."""
    order: dict[str, int] = {}
    for entry in report.usage.values():
        _color(entry["agent"], order)
    cost = report.cost
    total_tokens = sum(e["total_tokens"] for e in report.usage.values())
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8" />',
        f"<title>Switchyard report: {_e(report.pattern or 'session')} "
        f"{_e(report.thread_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Switchyard run report: {_e(report.pattern or 'unknown pattern')}</h1>",
        f'<p class="meta">thread <code>{_e(report.thread_id)}</code> · user '
        f"<code>{_e(report.user_id or '-')}</code> · session "
        f"<code>{_e(report.session_id or '-')}</code> · {len(report.runs)} "
        f"run{'s' if len(report.runs) != 1 else ''} · {total_tokens} tokens · "
        f"{_e(format_cost(cost.cost_usd, known=cost.known_cost_usd))}</p>",
        "<h2>Usage per agent</h2>",
        _usage_html(report.usage),
        "<h2>Tokens and cost per agent</h2>",
        _breakdown_svg(report.usage, order),
        "<h2>Runs</h2>",
    ]
    for index, run in enumerate(report.runs):
        status_class = "ok" if run.end_reason in SUCCESSFUL else "error"
        sections.append(f'<section class="run" id="run-{index + 1}">')
        sections.append(
            f'<h3>Run {index + 1}: <span class="{status_class}">{_e(run.end_reason)}</span></h3>'
        )
        sections.append(
            f'<p class="meta">correlation id <code>{_e(run.correlation_id or "-")}</code> · '
            f"started {_e(run.started.isoformat(timespec='milliseconds'))} · "
            f"{run.duration_ms:.1f} ms</p>"
        )
        if run.input:
            sections.append(f"<p>message: <q>{_e(run.input[:500])}</q></p>")
        if run.error:
            # A run that converged ended where an agent repeated its answer: not a failure.
            where = "converged at" if run.end_reason == "converged" else "failed at"
            sections.append(
                f'<p class="{status_class}">{where} <b>{_e(run.failed_node)}</b>: '
                f"{_e(run.error)}</p>"
            )
        sections.append(_timeline_svg(run, index, order))
        sections.append(_usage_html(run.usage))
        sections.append("</section>")
    sections.append("</body></html>")
    return "\n".join(sections)


# --------------------------------------------------------------------------- JSON


def _cost_json(cost: CostTotal) -> dict[str, Any]:
    return {
        "cost_usd": cost.cost_usd,
        "known_cost_usd": cost.known_cost_usd,
        "unpriced_calls": cost.unpriced_calls,
    }


def _tokens(ledger: UsageLedger) -> int:
    return sum(e["total_tokens"] for e in ledger.values())


def report_json(report: SessionReport) -> dict[str, Any]:
    """A stored session as JSON-ready data (`switchyard report --json`), its text redacted.

    Costs are as in `RunResult`: `cost_usd` is `null` when a call had no known price, with
    `known_cost_usd` and `unpriced_calls` beside it.
    """
    runs = []
    for run in report.runs:
        runs.append(
            {
                "correlation_id": run.correlation_id,
                "started": run.started.isoformat(),
                "ended": run.ended.isoformat(),
                "duration_ms": round(run.duration_ms, 3),
                "input": run.input,
                "end_reason": run.end_reason,
                "failed_node": run.failed_node,
                "error": run.error,
                "total_tokens": _tokens(run.usage),
                **_cost_json(run.cost),
                "nodes": [
                    {
                        "node": task.node,
                        "step": task.step,
                        "start": task.start.isoformat(),
                        "end": task.end.isoformat(),
                        "error": task.error,
                        "interrupted": task.interrupted,
                    }
                    for task in run.tasks
                ],
                "usage": run.usage,
            }
        )
    data = {
        "thread_id": report.thread_id,
        "pattern": report.pattern,
        "user_id": report.user_id,
        "session_id": report.session_id,
        "total_tokens": _tokens(report.usage),
        **_cost_json(report.cost),
        "usage": report.usage,
        "runs": runs,
    }
    redacted: dict[str, Any] = redact_value(data)
    return redacted
