"""The Temporal engine: each turn a Workflow, each agent node an Activity on a worker fleet.

Built on Temporal's LangGraph plugin (`temporalio-langgraph`; the `temporal` extra):

- `nodes`: a pattern's graph as the plugin runs it (agents as Activities, bookkeeping inline);
- `scope`: the run's guardrail scope sent to each Activity and merged back;
- `converter`: payloads through LangGraph's own serializer;
- `workflow`: the `Turn` Workflow (waits for a person when the graph asks one);
- `worker`: `switchyard worker --engine temporal`;
- `client`: `run(..., engine=TemporalEngine(...))` and `resume` on Temporal;
- `state`: a turn's final state written back to the session store;
- `schedules`: scheduled jobs as Temporal Schedules, each firing a `FireJob` Workflow.
"""
