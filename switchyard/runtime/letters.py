"""Before a replay runs: the caller owns the letter, and the graph is the one that failed.

A replay resumes the failed run's checkpoint with the graph it is given. Another graph would find
nothing (or something else) to run there and report "completed" although the failed step never ran,
so the graph must carry the letter's pattern name, load from the letter's import path when one is
known to both, and have work pending at the letter's checkpoint.
"""

from __future__ import annotations

from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from switchyard.core.errors import GraphNotFoundError, InvalidInputError
from switchyard.runtime.registry import graph_reference
from switchyard.storage.dlq import DeadLetter, DeadLetterAccessError


def check_letter(
    graph: Pregel[Any, Any, Any, Any], letter: DeadLetter, user_id: str | None
) -> None:
    """Refuse a replay of another user's letter, of one without a checkpoint, or with another graph.

    Raises:
        DeadLetterAccessError: `user_id` is given and is not the letter's owner (worded as for an
            unknown id).
        InvalidInputError: The letter has no checkpoint to resume from.
        GraphNotFoundError: `graph` is not the graph the letter's run failed in.
    """
    if user_id is not None and letter.user_id != user_id:
        raise DeadLetterAccessError(
            f"no dead letter with id {letter.id!r}; `switchyard dlq list` shows the ids"
        )
    if letter.checkpoint_id is None:
        raise InvalidInputError(
            f"dead letter {letter.id} has no checkpoint to resume from (the run failed before "
            "its first step); send the message again instead"
        )
    if graph.name != letter.pattern:
        raise GraphNotFoundError(
            f"dead letter {letter.id} failed in graph {letter.pattern!r}, not {graph.name!r}; "
            "replay it with the graph that failed"
        )
    known = graph_reference(graph)
    if letter.graph is not None and known is not None and known != letter.graph:
        raise GraphNotFoundError(
            f"dead letter {letter.id} failed in the graph at {letter.graph!r}, not the one at "
            f"{known!r}; replay it with the graph that failed"
        )


def check_pending(
    graph: Pregel[Any, Any, Any, Any], letter: DeadLetter, snapshot: StateSnapshot | None
) -> None:
    """Refuse a replay whose graph has nothing to run at the letter's checkpoint.

    Raises:
        GraphNotFoundError: The checkpoint is missing, or `graph` finds no step to run there (it
            is not the graph that failed, or the thread was pruned).
    """
    if snapshot is None or snapshot.created_at is None:
        raise GraphNotFoundError(
            f"dead letter {letter.id}'s checkpoint is not in this checkpointer (pruned, or "
            "another database); check --checkpointer / SWITCHYARD_CHECKPOINTER"
        )
    if not snapshot.next and not snapshot.tasks:
        raise GraphNotFoundError(
            f"graph {graph.name!r} has nothing to run at dead letter {letter.id}'s checkpoint: it "
            "is not the graph that failed; replay it with that graph"
        )
