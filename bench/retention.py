"""Storage per session over a long conversation, without and with retention.

Two sessions hold the same 1,000-turn conversation with the router pattern (offline model) in one
database: one is never pruned, the other is pruned every `--prune-every` turns to its
`--keep-latest` newest checkpoints. At sample turns the script records the bytes each session
occupies (`switchyard.storage.retention.thread_storage_bytes`), the bytes per turn so far, the
marginal bytes per turn since the previous sample, and the size of the latest checkpoint alone (the
conversation itself, which no retention policy can shrink).

    .venv/bin/python bench/retention.py                       # SQLite and PostgreSQL, 1,000 turns
    .venv/bin/python bench/retention.py --backends sqlite --turns 200

PostgreSQL is `postgresql://postgres@127.0.0.1:5432/test` unless `--dsn` says otherwise; the
script works in a schema of its own and drops it afterwards. Results go to
`bench/results/retention.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from switchyard.graphs.demos import ROUTER_AGENTS
from switchyard.graphs.router import build_router_graph
from switchyard.runtime.run import run, thread_id_for
from switchyard.storage.persistence import open_persistence
from switchyard.storage.retention import RetentionPolicy, prune, thread_storage_bytes

RESULTS = Path(__file__).parent / "results" / "retention.json"
PROMPTS = (
    "I need a refund for payment number {n}, please check invoice {n}",
    "How do I authenticate with the API for project {n}?",
    "Write a Python function that parses CSV file number {n}",
    "I was charged twice this month, transaction {n}",
    "Which endpoint lists all projects for team {n}?",
)


def latest_checkpoint_bytes(saver: Any, thread_id: str, backend: str) -> int:
    """Bytes of the newest checkpoint alone (and, on PostgreSQL, the blobs it references)."""
    if backend == "sqlite":
        with saver.lock:
            row = saver.conn.execute(
                "SELECT length(checkpoint) + length(metadata) FROM checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
                (thread_id,),
            ).fetchone()
        return int(row[0])
    with saver.conn.connection() as conn:
        row = conn.execute(
            """
            WITH head AS (
                SELECT c.* FROM checkpoints c WHERE thread_id = %s AND checkpoint_ns = ''
                ORDER BY checkpoint_id DESC LIMIT 1
            )
            SELECT (SELECT pg_column_size(head.*) FROM head) + coalesce((
                SELECT sum(pg_column_size(b.*)) FROM checkpoint_blobs b, head,
                    jsonb_each_text(head.checkpoint -> 'channel_versions') v
                WHERE b.thread_id = head.thread_id AND b.checkpoint_ns = ''
                AND b.channel = v.key AND b.version = v.value), 0) AS bytes
            """,
            (thread_id,),
        ).fetchone()
    return int(row["bytes"])


def measure(backend: str, setting: str, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    policy = RetentionPolicy(keep_latest=args.keep_latest)
    sessions = {
        "unpruned": f"long-a-{uuid.uuid4().hex[:6]}",
        "pruned": f"long-b-{uuid.uuid4().hex[:6]}",
    }
    threads = {name: thread_id_for("bench", s) for name, s in sessions.items()}
    started = time.perf_counter()
    prune_seconds = 0.0
    previous = {name: 0 for name in sessions}
    previous_turn = 0
    with open_persistence(setting) as persistence:
        graph = build_router_graph(ROUTER_AGENTS, default_agent="support").compile(
            checkpointer=persistence.checkpointer, name="router"
        )
        for turn in range(1, args.turns + 1):
            text = PROMPTS[turn % len(PROMPTS)].format(n=turn)
            for name, session in sessions.items():
                result = run(graph, text, user_id="bench", session_id=session, dlq=None)
                if not result.ok:
                    raise SystemExit(f"turn {turn} of {name} failed: {result.error}")
            if turn % args.prune_every == 0:
                t0 = time.perf_counter()
                prune(persistence.checkpointer, policy, thread_ids=[threads["pruned"]])
                prune_seconds += time.perf_counter() - t0
            if turn in args.samples:
                sample: dict[str, Any] = {"turn": turn}
                for name, thread_id in threads.items():
                    total = thread_storage_bytes(persistence.checkpointer, thread_id)
                    sample[name] = {
                        "bytes": total,
                        "bytes_per_turn": round(total / turn),
                        "marginal_bytes_per_turn": round(
                            (total - previous[name]) / (turn - previous_turn)
                        ),
                        "checkpoints": len(
                            list(
                                persistence.checkpointer.list(
                                    {"configurable": {"thread_id": thread_id}}
                                )
                            )
                        ),
                    }
                    previous[name] = total
                sample["latest_checkpoint_bytes"] = latest_checkpoint_bytes(
                    persistence.checkpointer, threads["pruned"], backend
                )
                previous_turn = turn
                samples.append(sample)
                print(
                    f"{backend} turn {turn:>5}: unpruned {sample['unpruned']['bytes']:>13,} B "
                    f"({sample['unpruned']['marginal_bytes_per_turn']:>9,} B/turn), pruned "
                    f"{sample['pruned']['bytes']:>11,} B "
                    f"({sample['pruned']['marginal_bytes_per_turn']:>7,} B/turn), "
                    f"{time.perf_counter() - started:.0f}s",
                    flush=True,
                )
    return {
        "backend": backend,
        "turns": args.turns,
        "policy": {"keep_latest": args.keep_latest, "prune_every_turns": args.prune_every},
        "seconds": round(time.perf_counter() - started, 1),
        "prune_seconds": round(prune_seconds, 2),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--keep-latest", type=int, default=8)
    parser.add_argument("--prune-every", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.samples = sorted(
        {t for t in (1, 10, 50, 100, 250, 500, 750, 1000, args.turns) if t <= args.turns}
    )
    runs = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(measure("sqlite", str(Path(tmp) / "state.sqlite"), args))
        elif backend == "postgres":
            import psycopg

            schema = f"switchyard_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in args.dsn else "?"
            try:
                runs.append(
                    measure("postgres", f"{args.dsn}{sep}options=-csearch_path%3D{schema}", args)
                )
            finally:
                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            raise SystemExit(f"unknown backend {backend!r}: use sqlite, postgres or both")
    report = {
        "what": "bytes per router session over a long conversation, without and with pruning",
        "command": " ".join(
            ["python bench/retention.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
