"""Multi-tenant serving: bearer tokens name a tenant, and a tenant sees only its own threads.

`langgraph.json` points the Agent Server (and `langgraph dev`) at this module:

```json
"auth": {"path": "switchyard.server.auth:auth"}
```

Tokens come from `SWITCHYARD_API_TOKENS`, a comma-separated list of `token:identity` pairs
(`SWITCHYARD_API_TOKENS="s3cr3t-a:alice,s3cr3t-b:bob"`); every request must carry
`Authorization: Bearer <token>`. The handlers then:

- stamp `owner=<identity>` on every thread, run and cron a tenant creates (a client cannot
  choose another owner);
- filter every read, update, delete, run and search of threads and crons by that owner, so a
  foreign thread answers 404 and never appears in a search;
- prefix every store namespace with the identity, so tenants' long-term memories never meet;
- let tenants read the deployment's assistants (the graphs of `langgraph.json`) but not create,
  change or delete them;
- refuse anything else (a default-deny handler).

Local development: when `SWITCHYARD_API_TOKENS` is unset and the server is `langgraph dev`
(which sets `LANGSMITH_LANGGRAPH_API_VARIANT=local_dev`), requests without a token act as the
single tenant `local`, and may edit assistants, so `make studio` and local SDK calls work
unchanged; LangGraph Studio's own requests then act as `local` as well. Anywhere else, no
tokens configured means every request is refused (fail closed). With tokens configured, Studio's
requests (authenticated by the server itself) are the separate tenant `langgraph-studio-user`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, cast

from langgraph_sdk import Auth

TOKENS_ENV = "SWITCHYARD_API_TOKENS"
DEV_IDENTITY = "local"
"""The tenant of token-less requests under `langgraph dev` when no tokens are configured."""
OWNER_KEY = "owner"
"""Metadata key that records a thread's (run's, cron's) owner."""

_VARIANT_ENV = "LANGSMITH_LANGGRAPH_API_VARIANT"

auth = Auth()


class TokenConfigError(ValueError):
    """`SWITCHYARD_API_TOKENS` is malformed."""


def parse_tokens(text: str) -> dict[str, str]:
    """Parse `token:identity,token:identity` into a token -> identity map.

    Raises:
        TokenConfigError: An entry lacks a token or an identity, or one token names two tenants.
    """
    tokens: dict[str, str] = {}
    for index, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        token, sep, identity = entry.rpartition(":")
        token, identity = token.strip(), identity.strip()
        if not sep or not token or not identity:
            raise TokenConfigError(
                f"{TOKENS_ENV} entry {index} is not 'token:identity'; write "
                f'{TOKENS_ENV}="token1:alice,token2:bob"'
            )
        if tokens.get(token, identity) != identity:
            raise TokenConfigError(f"{TOKENS_ENV} gives entry {index}'s token to two tenants")
        tokens[token] = identity
    return tokens


@lru_cache(maxsize=4)
def _tokens(raw: str) -> dict[str, str]:
    return parse_tokens(raw)


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def identify(authorization: str | None, *, tokens: dict[str, str], dev_mode: bool) -> str:
    """The tenant a request's `Authorization` header names.

    Args:
        authorization: The header's value, if any.
        tokens: Token -> identity (empty: no tokens configured).
        dev_mode: Whether the server is `langgraph dev` (token-less requests allowed when no
            tokens are configured).

    Raises:
        Auth.exceptions.HTTPException: 401, with what is missing or wrong.
    """
    if not tokens:
        if dev_mode:
            return DEV_IDENTITY
        raise _unauthorized(
            f"this server has no API tokens configured; set {TOKENS_ENV}=token:identity,..."
        )
    if not authorization:
        raise _unauthorized("missing credentials: send 'Authorization: Bearer <token>'")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("expected 'Authorization: Bearer <token>'")
    identity = None
    for token, owner in tokens.items():  # compare every token, in constant time each
        if hmac.compare_digest(token.encode(), credential.encode()):
            identity = owner
    if identity is None:
        raise _unauthorized("invalid token")
    return identity


def _dev_mode() -> bool:
    return os.environ.get(_VARIANT_ENV) == "local_dev"


def _open_dev_server() -> bool:
    """`langgraph dev` with no tokens configured: one local tenant, assistants editable."""
    return _dev_mode() and not os.environ.get(TOKENS_ENV, "").strip()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Map the bearer token to its tenant (see the module docstring)."""
    raw = os.environ.get(TOKENS_ENV, "")
    try:
        tokens = _tokens(raw)
    except TokenConfigError as exc:
        raise Auth.exceptions.HTTPException(status_code=500, detail=str(exc)) from None
    return {"identity": identify(authorization, tokens=tokens, dev_mode=_dev_mode())}


def _tenant(ctx: Auth.types.AuthContext) -> str:
    """The caller's tenant; on an open dev server, Studio's own user is `local` too.

    So Studio shows the threads that local SDK and CLI calls made.
    """
    return DEV_IDENTITY if _open_dev_server() else str(ctx.user.identity)


def _owned(ctx: Auth.types.AuthContext) -> Auth.types.FilterType:
    return {OWNER_KEY: _tenant(ctx)}


def _stamp(ctx: Auth.types.AuthContext, value: Mapping[str, Any]) -> Auth.types.FilterType:
    """Set the owner on what is created (overriding any owner the client sent)."""
    mutable = cast(dict[str, Any], value)
    metadata = mutable.get("metadata")
    if metadata is None:
        metadata = mutable["metadata"] = {}
    metadata[OWNER_KEY] = _tenant(ctx)
    return _owned(ctx)


@auth.on
async def deny_by_default(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Refuse every resource and action not handled below."""
    return False


@auth.on.threads.create
async def create_thread(
    ctx: Auth.types.AuthContext, value: Auth.types.ThreadsCreate
) -> Auth.types.FilterType:
    """A new thread belongs to its creator; an existing id owned by another is refused."""
    return _stamp(ctx, value)


@auth.on.threads.create_run
async def create_run(
    ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate
) -> Auth.types.FilterType:
    """Runs happen only on the caller's threads (a thread a run creates is the caller's)."""
    return _stamp(ctx, value)


@auth.on.threads.update
async def update_thread(
    ctx: Auth.types.AuthContext, value: Auth.types.ThreadsUpdate
) -> Auth.types.FilterType:
    """Only the owner updates a thread, and cannot give it away."""
    metadata = value.get("metadata")
    if metadata is not None:
        metadata[OWNER_KEY] = _tenant(ctx)
    return _owned(ctx)


@auth.on(resources="threads", actions=["read", "delete", "search"])
async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Reads, deletes and searches see only the caller's threads (others answer 404)."""
    return _owned(ctx)


@auth.on.crons.create
async def create_cron(
    ctx: Auth.types.AuthContext, value: Auth.types.CronsCreate
) -> Auth.types.FilterType:
    """A cron belongs to its creator."""
    return _stamp(ctx, value)


@auth.on(resources="crons", actions=["read", "update", "delete", "search"])
async def own_crons(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Crons are scoped to their owner like threads."""
    return _owned(ctx)


@auth.on(resources="assistants", actions=["read", "search"])
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """The deployment's assistants (its graphs) are shared by every tenant."""
    return True


@auth.on(resources="assistants", actions=["create", "update", "delete"])
async def write_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Assistants are defined by the deployment; tenants may not change them (local dev may)."""
    return _open_dev_server()


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Every store namespace starts with the caller's identity."""
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != _tenant(ctx):
        value["namespace"] = (_tenant(ctx), *namespace)
    return True
