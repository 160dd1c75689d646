"""A run's spend and retry budget shared by all its workers at once, through Redis.

Each agent Activity gets the run's spend as it stood when the Activity was sent (`scope`); what
Activities running at the same time spend is merged into the Workflow only as each returns. A
fan-out of 1,000 agents in 16 shard Activities would then check its budget 16 times against the
spend before the step. With `SWITCHYARD_REDIS_URL` set (as for the breakers and rate limits),
every charge is also added to one Redis hash per run scope, and every admission check counts
what the run's other Activities have charged meanwhile (`RunMeter.spent_elsewhere`): a run
budget and a session budget stop the next call of any worker once the run has spent it, as in
one process. Agent budgets span sessions and are checked against the snapshot. The run-wide
retry budget (`Context.max_retries`) is counted there too (`SharedRunScope`); without Redis each
Activity may take the retries left when it was sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from switchyard.guardrails.breaker import REDIS_ENV
from switchyard.guardrails.budgets import RunMeter, Spend
from switchyard.guardrails.scope import RunScope

KEY_PREFIX = "switchyard:run-spend:"
KEY_TTL_S = 24 * 3600
"""How long a run's shared spend is kept after its last charge."""


@dataclass
class SharedRunMeter(RunMeter):
    """A `RunMeter` that also counts the spend of the run's other Activities, in Redis.

    Attributes:
        key: The Redis hash of this run scope (`run_key`).
    """

    key: str = ""
    _client: Any = None

    def spent_elsewhere(self) -> Spend:
        """The run's spend in Redis beyond what this meter has counted itself."""
        raw = self._client.hmget(self.key, "tokens", "usd")
        total = Spend(int(raw[0] or 0), float(raw[1] or 0.0))
        with self._lock:
            local = Spend(self.run_spent.tokens, self.run_spent.usd)
        return Spend(max(0, total.tokens - local.tokens), max(0.0, total.usd - local.usd))

    def charge(self, agent: str, tokens: int, usd: float | None, agent_budget: Any = None) -> None:
        """Charge the call here and in the run's shared total (no dollars for an unknown price)."""
        pipe = self._client.pipeline()
        pipe.hincrby(self.key, "tokens", int(tokens))
        pipe.hincrbyfloat(self.key, "usd", float(usd or 0.0))
        pipe.expire(self.key, KEY_TTL_S)
        pipe.execute()
        super().charge(agent, tokens, usd, agent_budget)


SPEND_KEY = "switchyard_spend_key"
"""Run config metadata naming the Redis hash of the run scope (set by the Workflow)."""


@dataclass
class SharedRunScope(RunScope):
    """A `RunScope` whose run-wide retry budget is counted across the run's Activities, in Redis.

    Attributes:
        key: The Redis hash of this run scope (`run_key`).
        max_retries: The run's retry budget (`Context.max_retries`).
    """

    key: str = ""
    max_retries: int | None = None
    _client: Any = None

    def take_retry(self) -> bool:
        """Spend one of the run's retries, counted with every other Activity's.

        Returns:
            False when none is left.
        """
        if not super().take_retry():
            return False
        if self.max_retries is None:
            return True
        pipe = self._client.pipeline()
        pipe.hincrby(self.key, "retries", 1)
        pipe.expire(self.key, KEY_TTL_S)
        taken, _ = pipe.execute()
        return int(taken) <= self.max_retries


def run_key(workflow_id: str, scope_number: int) -> str:
    """The Redis hash of one run scope: a turn's Workflow, and which of its runs.

    A turn that waited for a person runs again from the answer, with a scope of its own.
    """
    return f"{KEY_PREFIX}{workflow_id}:{scope_number}"


_clients: dict[str, Any] = {}


def shared_client() -> Any | None:
    """The Redis client of this worker for shared spend, when `SWITCHYARD_REDIS_URL` is set."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        return None
    if url not in _clients:
        import redis

        _clients[url] = redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)
    return _clients[url]
