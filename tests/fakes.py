"""The suite's one scripted fake model, in the spirit of openai-agents' `ScriptedModel`.

It replays the replies it is given, records what each call received, fails loudly when its script is
exhausted, and `assert_consumed()` fails when replies are left over. It never cycles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from switchyard.core.models import register_chat_model, unregister_chat_model

Reply = AIMessage | str | BaseException


class ScriptExhaustedError(AssertionError):
    """The model was called more times than its script has replies."""


@dataclass
class Call:
    """What one call received."""

    messages: list[BaseMessage]
    tools: list[str] = field(default_factory=list)
    tool_choice: Any = None

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


class ScriptedChatModel(BaseChatModel):
    """Replies from a script, in order; records every call.

    A reply reports 10 input and 5 output tokens unless it carries its own `usage_metadata`;
    with `report_usage=False` a reply without one stays without (a server that sends no `usage`).
    """

    script: list[Any]
    label: str = "scripted"
    report_usage: bool = True
    _calls: list[Call] = PrivateAttr(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[Call]:
        return list(self._calls)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(
            tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
            self._calls.append(Call(list(messages), tools, kwargs.get("tool_choice")))
            if self._position >= len(self.script):
                raise ScriptExhaustedError(
                    f"{self.label}: call {self._position + 1} but the script has only "
                    f"{len(self.script)} replies; last messages: {[m.text for m in messages][-2:]}"
                )
            reply = self.script[self._position]
            self._position += 1
        if isinstance(reply, BaseException):
            raise reply
        message = AIMessage(content=reply) if isinstance(reply, str) else reply.model_copy()
        if message.usage_metadata is None and self.report_usage:
            message.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def assert_consumed(self) -> None:
        left = len(self.script) - self._position
        if left:
            raise AssertionError(f"{self.label}: {left} scripted replies were never used")


@contextmanager
def scripted(name: str, *replies: Reply, report_usage: bool = True) -> Iterator[ScriptedChatModel]:
    """Register a scripted model as `name` for the duration of the block; checks it was used up."""
    model = ScriptedChatModel(script=list(replies), label=name, report_usage=report_usage)
    register_chat_model(name, model)
    try:
        yield model
    finally:
        unregister_chat_model(name)
    model.assert_consumed()
