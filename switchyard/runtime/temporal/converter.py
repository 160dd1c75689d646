"""How LangGraph state crosses between a Workflow and its Activities: LangGraph's own serializer.

Temporal's default converter writes JSON and reads values typed `Any` back as plain dicts: a
LangChain message would reach an agent as a dict, a `Send` or a `Command` as a list. The LangGraph
plugin types every node input and output `Any`. LangGraph's checkpoint serializer
(`JsonPlusSerializer`) already round-trips everything a graph's state may hold (messages, pydantic
models, dataclasses, `Send`, `Command`, datetimes) for every checkpointer, so payloads use it: what
a worker receives is what the Workflow sent, of the same types.

Payloads travel only between one deployment's client and workers (as checkpoints travel between
a deployment and its database), so types are reconstructed by name without an allow-list, as a
checkpointer configured with `allowed_msgpack_modules=True` does.
"""

from __future__ import annotations

import dataclasses
import logging
from contextvars import ContextVar
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    BinaryNullPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
)

ENCODING = "binary/x-langgraph-jsonplus"
"""The payload encoding this converter writes and reads."""

_SERDE = JsonPlusSerializer(allowed_msgpack_modules=True)
_decoding: ContextVar[bool] = ContextVar("switchyard_temporal_decoding", default=False)


class _QuietPayloads(logging.Filter):
    """Drop the serializer's "unregistered type" warning while it reads a Temporal payload.

    The warning is meant for checkpoints read from a database; a payload is read by name by
    design (module docstring), and every worker would print it once per state type.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that warning, during a payload read."""
        return not (_decoding.get() and record.getMessage().startswith("Deserializing unregist"))


logging.getLogger(JsonPlusSerializer.__module__).addFilter(_QuietPayloads())


def _plain_command(value: Any) -> Any:
    """An Activity's output with its `Command` as the fields the plugin reads (`cmd["goto"]`)."""
    command = getattr(value, "langgraph_command", None)
    if isinstance(command, Command) and dataclasses.is_dataclass(value):
        fields = {
            "graph": command.graph,
            "update": command.update,
            "resume": command.resume,
            "goto": command.goto,
        }
        return dataclasses.replace(value, langgraph_command=fields)  # type: ignore[type-var]
    return value


def payload_bytes(value: Any) -> bytes:
    """`value` as the bytes a payload of it holds (the same value, the same bytes)."""
    return _SERDE.dumps_typed(value)[1]


class LangGraphPayloadConverter(EncodingPayloadConverter):
    """Any value, as LangGraph's checkpoint serializer writes it."""

    @property
    def encoding(self) -> str:
        """The encoding named in the payload's metadata."""
        return ENCODING

    def to_payload(self, value: Any) -> Payload | None:
        """`value` as one payload."""
        kind, data = _SERDE.dumps_typed(_plain_command(value))
        return Payload(
            metadata={"encoding": ENCODING.encode(), "serde": kind.encode()},
            data=data,
        )

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        """The value `payload` holds, of the type it was written as (`type_hint` is not needed)."""
        kind = payload.metadata.get("serde", b"msgpack").decode()
        token = _decoding.set(True)
        try:
            return _SERDE.loads_typed((kind, payload.data))
        finally:
            _decoding.reset(token)


class SwitchyardPayloadConverter(CompositePayloadConverter):
    """None as Temporal writes it; everything else through LangGraph's serializer."""

    def __init__(self) -> None:
        """The two converters, tried in order."""
        super().__init__(BinaryNullPayloadConverter(), LangGraphPayloadConverter())


data_converter = DataConverter(payload_converter_class=SwitchyardPayloadConverter)
"""The data converter every Switchyard client and worker uses (they must agree)."""
