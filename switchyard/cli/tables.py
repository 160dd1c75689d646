"""Rich tables shared by several commands: the per-agent usage of a run or a session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from switchyard.state.usage import UsageLedger


def usage_table(ledger: UsageLedger, *, title: str | None = None) -> Table:
    """The per-agent table of a ledger (one row per agent, then the total), for a rich console.

    Example:
        ```python
        Console().print(usage_table(result.usage))
        ```
    """
    # Imported on use: they load LangGraph and LangChain, which building the parser must not.
    from switchyard.core.redact import redact
    from switchyard.observability.report import (
        agent_usage,
        usage_cell,
        usage_columns,
        usage_total,
    )

    rows = agent_usage(ledger)
    table = Table(title=title, show_edge=False, pad_edge=False)
    columns = usage_columns(rows, compact=True)
    for header, name in columns:
        if name == "models":
            widest = max((len(usage_cell(r, name)) for r in rows), default=5)
            table.add_column(header, min_width=min(widest, 32), overflow="fold")
        else:
            table.add_column(header, justify="left" if name == "agent" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(redact(usage_cell(row, name)) for _, name in columns))
    if len(rows) > 1:
        total = usage_total(rows)
        table.add_section()
        table.add_row(*(usage_cell(total, name) for _, name in columns), style="bold")
    return table
