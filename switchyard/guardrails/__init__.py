"""Guardrails shared across runs: budgets, circuit breakers, the response cache, idempotency.

Built on `core` only.
"""
