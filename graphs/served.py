"""The graphs `langgraph.json` serves: the seven demo graphs, built when this module is imported.

`langgraph dev` and the Agent Server look a graph up in its module's namespace, not through
`getattr`, so they cannot use `switchyard.graphs.demos` directly, which builds each graph on first
access (a process that runs one pattern builds only that one). A server serves every pattern, so
this module builds them all, once; they are the same objects as the demos', so a dead letter from
a served run names `switchyard.graphs.demos:<name>` like any other.
"""

from switchyard.graphs.demos import (
    events,
    fanout,
    hierarchical,
    pipeline,
    router,
    supervisor,
    swarm,
)

__all__ = ["events", "fanout", "hierarchical", "pipeline", "router", "supervisor", "swarm"]
