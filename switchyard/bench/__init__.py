"""Benchmarks: Switchyard's orchestration cost side by side with its peers, the model held constant.

`switchyard bench [overhead|fanout|context|throughput|all] [--quick]` runs them (see
`switchyard.cli.bench`), writes `bench/results/<name>.json` and the plots, and regenerates
`bench/RESULTS.md`. Peer frameworks come with the `bench` extra
(`pip install 'switchyard-agents[bench]'`); a peer that is not installed is reported as such,
never silently left out.

Modules: `llm` (the simulated model every contender calls), `topology` (the workloads),
`contenders` (one module per framework family), `harness` (interleaved timing, statistics, the
machine), `overhead`, `fanout`, `context`, `throughput` (the four benchmarks), `report`
(RESULTS.md and the plots); the command is `switchyard.cli.bench`.
"""
