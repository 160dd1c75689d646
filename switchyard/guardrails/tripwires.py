"""Input and output guardrails with tripwires, in the manner of the OpenAI Agents SDK.

A guardrail is a check of text: the user's input before an agent's model call
(`InputGuardrail`), or an agent's output before it is handed on or returned
(`OutputGuardrail`). Its function returns a `GuardrailFunctionOutput`; when its
`tripwire_triggered` is set, the run stops with end reason `guardrail_tripped`
(`GuardrailTrippedError`, which no fallback gets round). A guardrail may instead rewrite the
text (`rewrite`: personal data redacted or masked) and let the run go on.

`TripwireGuard` is the middleware that runs them on the one guarded call of an agent
(`switchyard.nodes.tripwires.Tripwires` is the one agents and graphs use). Built in here:

- `prompt_injection()`: a documented list of heuristics (see `INJECTION_PATTERNS` for why no
  library is used);
- `personal_data(action)`: emails, card numbers, phone numbers, IP addresses (the detectors of
  `switchyard.core.pii`, LangChain's `PIIMiddleware` ones) and national id numbers (US SSN, UK
  National Insurance number, Canadian SIN, Spanish DNI: detectors below, in LangChain's custom
  detector form), blocked, redacted or masked with LangChain's strategies;
- `max_length(chars)`.

Topic checks and model-based judges need the router's classifiers and the agent call, so they
live in `switchyard.nodes.tripwires`.

Nothing a tripwire stops is stored as it was: the error names the check, never the text, and
carries `mask`, which turns the offending text into what may be kept (the stop overwrites the
user's message with it; the dead letter holds only that).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import hashlib
import inspect
import operator
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.middleware._redaction import PIIMatch, apply_strategy
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from pydantic import BaseModel, ValidationError

from switchyard.core.errors import ConfigError, SwitchyardError, pickles
from switchyard.core.pii import find_pii
from switchyard.guardrails.scope import current_scope

Stage = Literal["input", "output"]
"""Where a guardrail checks: the user's input, or an agent's output."""

PIIAction = Literal["block", "redact", "mask", "hash"]
"""What a personal-data guardrail does: trip the run, or rewrite the text (LangChain's strategies:
`redact` -> `[REDACTED_EMAIL]`, `mask` -> `****6789`, `hash` -> `<email_hash:1a2b3c4d>`)."""

WITHHELD = "[withheld: it tripped guardrail {name!r}]"
"""What replaces text a guardrail tripped on when the guardrail cannot say which part offends."""


class GuardrailTrippedError(SwitchyardError):
    """A guardrail's tripwire stopped the run (end reason `guardrail_tripped`).

    The message names the guardrail, the agent and the stage, never the offending text.

    Attributes:
        guardrail: The guardrail's name.
        stage: `input` or `output`.
        agent: The agent whose call it guarded (None when unknown).
        mask: Turns the text it tripped on into what may be stored (the user's message is
            overwritten with it when the run stops).
        output_info: What the guardrail function reported (`GuardrailFunctionOutput`).
    """

    def __init__(
        self,
        message: str,
        *,
        guardrail: str,
        stage: Stage,
        agent: str | None = None,
        mask: Callable[[str], str] | None = None,
        output_info: Any = None,
    ) -> None:
        super().__init__(message)
        self.guardrail = guardrail
        self.stage = stage
        self.agent = agent
        self.mask = mask or (lambda _text: WITHHELD.format(name=guardrail))
        self.output_info = output_info

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with what pickles (a run on Temporal sends it from a worker to the Workflow).

        A mask or report that does not pickle (a lambda) is left out: the text is then withheld
        whole, the stricter outcome.
        """
        mask = self.mask if pickles(self.mask) else None
        info = self.output_info if pickles(self.output_info) else None
        return (
            _tripped,
            (
                str(self.args[0]) if self.args else "",
                self.guardrail,
                self.stage,
                self.agent,
                mask,
                info,
            ),
        )


def _tripped(
    message: str,
    guardrail: str,
    stage: Stage,
    agent: str | None,
    mask: Callable[[str], str] | None,
    output_info: Any,
) -> GuardrailTrippedError:
    """A `GuardrailTrippedError` from its pickled fields."""
    return GuardrailTrippedError(
        message, guardrail=guardrail, stage=stage, agent=agent, mask=mask, output_info=output_info
    )


@dataclass(frozen=True)
class GuardrailFunctionOutput:
    """What a guardrail function returns (as in the OpenAI Agents SDK).

    Attributes:
        tripwire_triggered: True stops the run (`guardrail_tripped`).
        output_info: Anything worth reporting (why it tripped); kept on the error, not stored.
        masked: The checked text with its offending part masked, to store instead of it when
            the tripwire is triggered. None: the whole text is withheld.
    """

    tripwire_triggered: bool
    output_info: Any = None
    masked: str | None = None


GuardrailFunction = Callable[[str], "GuardrailFunctionOutput | Awaitable[GuardrailFunctionOutput]"]
"""A check of one text: a plain function or a coroutine function, returning the verdict."""


@dataclass(frozen=True)
class Guardrail:
    """A check of text; see `InputGuardrail` and `OutputGuardrail`.

    Attributes:
        guardrail_function: The check (sync or async); gets the text, returns the verdict.
        name: Its name in errors and logs (default: the function's name).
        rewrite: Rewrites the text that goes on (personal data redacted); None: no rewrite.
        mask: Masks a text this guardrail tripped on, for storage (default: the verdict's
            `masked` for the text it checked, anything else withheld).
    """

    guardrail_function: GuardrailFunction
    name: str | None = None
    rewrite: Callable[[str], str] | None = field(default=None, compare=False)
    mask: Callable[[str], str] | None = field(default=None, compare=False)

    @property
    def title(self) -> str:
        """The guardrail's name, or its function's."""
        return str(self.name or getattr(self.guardrail_function, "__name__", "guardrail"))

    def run(self, text: str) -> GuardrailFunctionOutput:
        """The verdict on `text` (an async function is run to completion)."""
        result = self.guardrail_function(text)
        if inspect.isawaitable(result):
            result = _run_coroutine(result)
        return _verdict(self, result)

    async def arun(self, text: str) -> GuardrailFunctionOutput:
        """Async form of `run` (a function's async form, its `acall` attribute, when it has one)."""
        function = getattr(self.guardrail_function, "acall", None) or self.guardrail_function
        result = function(text)
        if inspect.isawaitable(result):
            result = await result
        return _verdict(self, result)


@dataclass(frozen=True)
class InputGuardrail(Guardrail):
    """A check of the user's input, before an agent's model sees it.

    Attributes:
        run_in_parallel: Check while the model call runs, instead of before it: the call is
            made (and charged) anyway, and its answer discarded when the tripwire triggers.
    """

    run_in_parallel: bool = False


@dataclass(frozen=True)
class OutputGuardrail(Guardrail):
    """A check of an agent's output before it is handed on or returned.

    It sees the answer (text or structured output) or the task the agent hands to another.
    """


def _verdict(guardrail: Guardrail, result: Any) -> GuardrailFunctionOutput:
    if not isinstance(result, GuardrailFunctionOutput):
        raise ConfigError(
            f"guardrail {guardrail.title!r} returned {type(result).__name__}; a guardrail "
            "function returns GuardrailFunctionOutput(tripwire_triggered=...)"
        )
    return result


def _run_coroutine(awaitable: Awaitable[Any]) -> Any:
    """Run an async check from sync code: here when no loop runs, else on a thread of its own."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    context = contextvars.copy_context()
    return _executor().submit(context.run, asyncio.run, wait()).result()


@functools.cache
def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # Checks run beside a sync model call (`run_in_parallel`) on these threads.
    return concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tripwire")


_G = TypeVar("_G", bound=Guardrail)


def _decorator(kind: type[_G], func: GuardrailFunction | None, options: dict[str, Any]) -> Any:
    def wrap(function: GuardrailFunction) -> _G:
        return kind(guardrail_function=function, **options)

    return wrap(func) if func is not None else wrap


@overload
def input_guardrail(func: GuardrailFunction) -> InputGuardrail: ...
@overload
def input_guardrail(
    *, name: str | None = None, run_in_parallel: bool = False
) -> Callable[[GuardrailFunction], InputGuardrail]: ...
def input_guardrail(
    func: GuardrailFunction | None = None,
    *,
    name: str | None = None,
    run_in_parallel: bool = False,
) -> Any:
    """Turn a function of the input text into an `InputGuardrail` (bare or with options).

    Example:
        ```python
        @input_guardrail(run_in_parallel=True)
        async def no_homework(text: str) -> GuardrailFunctionOutput:
            return GuardrailFunctionOutput(tripwire_triggered="homework" in text.lower())
        ```
    """
    return _decorator(InputGuardrail, func, {"name": name, "run_in_parallel": run_in_parallel})


@overload
def output_guardrail(func: GuardrailFunction) -> OutputGuardrail: ...
@overload
def output_guardrail(
    *, name: str | None = None
) -> Callable[[GuardrailFunction], OutputGuardrail]: ...
def output_guardrail(func: GuardrailFunction | None = None, *, name: str | None = None) -> Any:
    """Turn a function of an agent's output text into an `OutputGuardrail`."""
    return _decorator(OutputGuardrail, func, {"name": name})


def as_stage(guardrail: Guardrail, stage: Stage) -> Guardrail:
    """`guardrail` as an input or an output guardrail (the built-ins check either)."""
    kind = InputGuardrail if stage == "input" else OutputGuardrail
    if isinstance(guardrail, kind):
        return guardrail
    return kind(
        guardrail_function=guardrail.guardrail_function,
        name=guardrail.name,
        rewrite=guardrail.rewrite,
        mask=guardrail.mask,
    )


# --- built-in: prompt injection ------------------------------------------------------------------

# Why heuristics of our own: the maintained detectors are either a fine-tuned transformer fetched
# from a model hub at run time (llm-guard's PromptInjection, ProtectAI's deberta; heavy, and not
# available offline), or a service or an LLM call (rebuff, NeMo Guardrails' self-check). Neither
# is "light". These patterns catch the common direct attacks (instruction overrides, prompt
# extraction, role hijacks, chat-template markup); a model-based judge
# (`switchyard.nodes.tripwires.model_judge`) is the tool for subtler ones.
_GAP = r"[\w\s,'\"-]{0,40}?"
INJECTION_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "instruction override",
        rf"\b(?:ignore|disregard|forget|override|bypass)\b{_GAP}\b(?:previous|prior|above|"
        rf"earlier|preceding|initial|original|system|all|your)\b{_GAP}\b(?:instructions?|"
        r"prompts?|rules|directions|guidelines|directives)\b",
    ),
    (
        "prompt extraction",
        rf"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell me)\b{_GAP}\b(?:system|"
        r"hidden|initial|original|secret)\s+(?:prompt|instructions?|message)\b",
    ),
    (
        "role hijack",
        r"\byou are no longer\b|\bfrom now on,? you (?:are|will|must)\b|\b(?:act|behave) as "
        r"(?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken)\b|\bpretend (?:to be|you "
        rf"are)\b{_GAP}\b(?:no|without) (?:rules|restrictions|limits|filters)\b",
    ),
    ("jailbreak", r"\bjailbr[eo]ak\w*\b|\bDAN mode\b|\bdo anything now\b|\bdeveloper mode\b"),
    ("new instructions", r"\b(?:new|updated|real|actual) (?:system )?instructions?\s*:"),
    (
        "chat markup",
        r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*"
        r"(?:system|instructions?)\b",
    ),
)
"""Prompt-injection heuristics: (what the pattern catches, regular expression; case-insensitive)."""

_INJECTION = tuple(
    (label, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for label, pattern in INJECTION_PATTERNS
)

INJECTION_PLACEHOLDER = "[REDACTED_PROMPT_INJECTION]"
"""What replaces injected text where it is stored."""


def detect_prompt_injection(content: str) -> list[PIIMatch]:
    """Injection attempts in `content`, as LangChain's detectors report them (`type`: label)."""
    return [
        PIIMatch(type=label, value=match.group(), start=match.start(), end=match.end())
        for label, pattern in _INJECTION
        for match in pattern.finditer(content)
    ]


def _replace_spans(text: str, matches: Sequence[PIIMatch], placeholder: str) -> str:
    for match in sorted(_disjoint(matches), key=operator.itemgetter("start"), reverse=True):
        text = text[: match["start"]] + placeholder + text[match["end"] :]
    return text


def mask_injection(text: str) -> str:
    """`text` with each injection attempt replaced by `INJECTION_PLACEHOLDER`."""
    return _replace_spans(text, detect_prompt_injection(text), INJECTION_PLACEHOLDER)


def prompt_injection(*, name: str = "prompt_injection", stage: Stage = "input") -> Guardrail:
    """A guardrail that trips on prompt-injection text (`INJECTION_PATTERNS`).

    Args:
        name: Its name in errors.
        stage: `input` (an `InputGuardrail`) or `output` (an `OutputGuardrail`).
    """

    def check(text: str) -> GuardrailFunctionOutput:
        found = detect_prompt_injection(text)
        labels = sorted({match["type"] for match in found})
        return GuardrailFunctionOutput(
            tripwire_triggered=bool(found),
            output_info={"patterns": labels},
            masked=mask_injection(text) if found else None,
        )

    return as_stage(Guardrail(check, name=name, mask=mask_sensitive), stage)


# --- built-in: personal data, national id numbers included ---------------------------------------

# National id numbers, in LangChain's custom detector form (`Callable[[str], list[PIIMatch]]`).
# Each format is checked beyond its shape where the format allows it (SSN ranges that are never
# issued, the SIN's Luhn digit, the DNI's check letter), so ordinary numbers are left alone.
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b")
_NINO = re.compile(
    r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
)
_SIN = re.compile(r"\b\d{3}([- ])\d{3}\1\d{3}\b")
_DNI = re.compile(r"\b(\d{8})-?([A-Z])\b")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _matches(kind: str, pattern: re.Pattern[str], content: str) -> list[PIIMatch]:
    return [
        PIIMatch(type=kind, value=m.group(), start=m.start(), end=m.end())
        for m in pattern.finditer(content)
    ]


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def detect_us_ssn(content: str) -> list[PIIMatch]:
    """US Social Security numbers (`123-45-6789`, `123 45 6789`), never-issued ranges excluded."""
    return _matches("us_ssn", _SSN, content)


def detect_uk_nino(content: str) -> list[PIIMatch]:
    """UK National Insurance numbers (`QQ 12 34 56 C`), with HMRC's prefix rules."""
    return _matches("uk_nino", _NINO, content)


def detect_ca_sin(content: str) -> list[PIIMatch]:
    """Canadian Social Insurance numbers (`046 454 286`) that pass their Luhn check digit."""
    return [m for m in _matches("ca_sin", _SIN, content) if _luhn(re.sub(r"\D", "", m["value"]))]


def detect_es_dni(content: str) -> list[PIIMatch]:
    """Spanish DNI numbers (`12345678Z`) whose check letter is right."""
    return [
        m
        for m in _matches("es_dni", _DNI, content)
        if _DNI_LETTERS[int(m["value"][:8]) % 23] == m["value"][-1]
    ]


NATIONAL_ID_DETECTORS: dict[str, Callable[[str], list[PIIMatch]]] = {
    "us_ssn": detect_us_ssn,
    "uk_nino": detect_uk_nino,
    "ca_sin": detect_ca_sin,
    "es_dni": detect_es_dni,
}
"""National id number detectors, by type."""

PERSONAL_DATA_TYPES = ("email", "credit_card", "ip", "phone", *NATIONAL_ID_DETECTORS)
"""What `personal_data` looks for by default: `switchyard.core.pii`'s types and national ids."""


def _disjoint(matches: Iterable[PIIMatch]) -> list[PIIMatch]:
    """Matches without overlaps: the earlier, then the longer, wins."""
    kept: list[PIIMatch] = []
    for match in sorted(matches, key=lambda m: (m["start"], m["start"] - m["end"])):
        if not kept or match["start"] >= kept[-1]["end"]:
            kept.append(match)
    return kept


def find_personal_data(text: str, types: Iterable[str] = PERSONAL_DATA_TYPES) -> list[PIIMatch]:
    """Personal data of `types` in `text`, in order, without overlaps.

    Raises:
        ConfigError: An unknown type.
    """
    wanted = set(types)
    unknown = wanted - set(PERSONAL_DATA_TYPES)
    if unknown:
        raise ConfigError(
            f"unknown personal data types {sorted(unknown)}; choose from {PERSONAL_DATA_TYPES}"
        )
    found = [
        PIIMatch(type=span.type, value=text[span.start : span.end], start=span.start, end=span.end)
        for span in find_pii(text)
        if span.type in wanted
    ]
    for kind, detect in NATIONAL_ID_DETECTORS.items():
        if kind in wanted:
            found += detect(text)
    return _disjoint(found)


def mask_sensitive(text: str) -> str:
    """`text` as it may be stored: personal data and injection attempts replaced by markers."""
    return mask_injection(apply_strategy(text, find_personal_data(text), "redact"))


def personal_data(
    action: PIIAction = "redact",
    *,
    types: Iterable[str] = PERSONAL_DATA_TYPES,
    name: str = "personal_data",
    stage: Stage = "input",
) -> Guardrail:
    """A guardrail for personal data: trip the run (`block`), or rewrite it and go on.

    Args:
        action: `block` trips; `redact`, `mask` and `hash` rewrite the text the model sees
            (input) or that is handed on (output), with LangChain's `PIIMiddleware` strategies.
        types: What to look for (default: `PERSONAL_DATA_TYPES`).
        name: Its name in errors.
        stage: `input` (an `InputGuardrail`) or `output` (an `OutputGuardrail`).

    Raises:
        ConfigError: An unknown action or type.
    """
    if action not in ("block", "redact", "mask", "hash"):
        raise ConfigError(
            f"personal data action must be block, redact, mask or hash, got {action!r}"
        )
    kinds = tuple(types)
    find_personal_data("", kinds)  # unknown types are refused now, not at the first call

    def redacted(text: str) -> str:
        return apply_strategy(text, find_personal_data(text, kinds), "redact")

    def check(text: str) -> GuardrailFunctionOutput:
        if action != "block":
            return GuardrailFunctionOutput(tripwire_triggered=False)
        found = find_personal_data(text, kinds)
        return GuardrailFunctionOutput(
            tripwire_triggered=bool(found),
            output_info={"types": sorted({m["type"] for m in found})},
            masked=redacted(text) if found else None,
        )

    def rewrite(text: str) -> str:
        return apply_strategy(text, find_personal_data(text, kinds), action)

    guardrail = Guardrail(
        check,
        name=name,
        rewrite=None if action == "block" else rewrite,
        mask=lambda text: mask_injection(redacted(text)),
    )
    return as_stage(guardrail, stage)


# --- built-in: length ----------------------------------------------------------------------------


def max_length(chars: int, *, name: str = "max_length", stage: Stage = "input") -> Guardrail:
    """A guardrail that trips on text longer than `chars` characters.

    Raises:
        ConfigError: `chars` is not positive.
    """
    if chars <= 0:
        raise ConfigError(f"max_length must be a positive number of characters, got {chars}")

    def check(text: str) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(
            tripwire_triggered=len(text) > chars,
            output_info={"length": len(text), "limit": chars},
            masked=mask_sensitive(text),
        )

    return as_stage(Guardrail(check, name=name, mask=mask_sensitive), stage)


# --- the middleware ------------------------------------------------------------------------------

HANDOFF_METADATA_KEY = "handoff_to"
"""The metadata key that marks a handoff tool (`switchyard.nodes.handoff`'s; this layer cannot
import it): a call to such a tool hands a task on, so it is an output."""

_CACHE_KEY = "__tripwires__"
"""Where verdicts on inputs are kept in the run scope (a pseudo-agent's run-scoped values)."""

_charges: ContextVar[list[Any] | None] = ContextVar("switchyard_tripwire_charges", default=None)


def charge_check(usage: Any) -> bool:
    """Report the usage of a check's own model call (a judge); False outside a guarded call.

    The middleware adds it to the guarded agent call's ledger once its checks are done, so a
    check that runs on another thread never writes to the ledger at the same time as the call.
    """
    pending = _charges.get()
    if pending is None:
        return False
    pending.append(usage)
    return True


def _key(guardrail: Guardrail, text: str) -> str:
    # The guardrail object (alive for the run: an agent's spec or middleware holds it) and a
    # digest of the text, so the scope never holds the text itself.
    return f"{id(guardrail)}/{hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}"


def _cached(guardrail: Guardrail, text: str) -> GuardrailFunctionOutput | None:
    scope = current_scope()
    if scope is None:
        return None
    verdict: GuardrailFunctionOutput | None = scope.agent_values(_CACHE_KEY).get(
        _key(guardrail, text)
    )
    return verdict


def _remember(guardrail: Guardrail, text: str, verdict: GuardrailFunctionOutput) -> None:
    scope = current_scope()
    if scope is not None:
        scope.set_agent_values(_CACHE_KEY, {_key(guardrail, text): verdict})


_TRIPPED = "tripped"
"""Where the run scope keeps the input tripwire that stopped the run (for `masked_user_message`)."""


def _recorded(error: GuardrailTrippedError) -> GuardrailTrippedError:
    """`error`, remembered in the run scope.

    So a node that ends the run without the error (a join after parallel branches) can still
    mask the user's message (`masked_user_message(state)`).
    """
    scope = current_scope()
    if scope is not None:
        scope.set_agent_values(_CACHE_KEY, {_TRIPPED: error})
    return error


def user_input(messages: Sequence[BaseMessage]) -> HumanMessage | None:
    """The input an agent's model call answers: the newest user-role message of its request."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def _rewritten(text: str, rewrites: Sequence[Callable[[str], str]]) -> str:
    for rewrite in rewrites:
        text = rewrite(text)
    return text


def _rewritten_content(content: Any, rewrites: Sequence[Callable[[str], str]]) -> Any:
    """A message's content rewritten: text, or the text blocks of a list (images left alone)."""
    if isinstance(content, str):
        return _rewritten(content, rewrites)
    if not isinstance(content, list):
        return content
    return [
        {**block, "text": _rewritten(block["text"], rewrites)}
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
        else _rewritten(block, rewrites)
        if isinstance(block, str)
        else block
        for block in content
    ]


def _rewrite_value(value: Any, rewrites: Sequence[Callable[[str], str]]) -> Any:
    if isinstance(value, str):
        return _rewritten(value, rewrites)
    if isinstance(value, dict):
        return {key: _rewrite_value(item, rewrites) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_rewrite_value(item, rewrites) for item in value)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


class TripwireGuard(AgentMiddleware[Any, Any, Any]):
    """Runs input and output guardrails on an agent's model calls (see the module docstring).

    Input guardrails check the newest user-role message of each request, once per run for a
    given text (the verdict is kept in the run scope, so the same input reaching several agents,
    or one agent several times, is checked once). Guardrails that rewrite (personal data
    redacted) rewrite every user-role message the model sees. `run_in_parallel` checks run
    beside the model call, whose answer is discarded when they trip (it is charged all the same).

    Output guardrails check a model response that is handed on: an answer (text or structured
    output), or a handoff's task (calls to tools other than the agent's own). A response that
    calls the agent's own tools is not an output yet and is not checked.

    Args:
        input_guardrails: Checks of the user's input.
        output_guardrails: Checks of the agent's output.
        agent: The agent guarded, for error messages.
        own_tools: Names of the agent's own tools (their calls are not handed on).
    """

    def __init__(
        self,
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        *,
        agent: str | None = None,
        own_tools: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.input_guardrails = tuple(as_stage(g, "input") for g in input_guardrails)
        self.output_guardrails = tuple(as_stage(g, "output") for g in output_guardrails)
        self.agent = agent
        self.own_tools = frozenset(own_tools)

    def guardrails(
        self, request: ModelRequest[Any]
    ) -> tuple[tuple[Guardrail, ...], tuple[Guardrail, ...]]:
        """The (input, output) guardrails of `request` (a subclass may add the run's)."""
        return self.input_guardrails, self.output_guardrails

    def charge(self, usages: Sequence[Any]) -> None:
        """Record the usage of the checks' own model calls (a subclass writes the ledger)."""

    # -- verdicts --------------------------------------------------------------------------------

    def _tripped(
        self, guardrail: Guardrail, stage: Stage, text: str, verdict: GuardrailFunctionOutput
    ) -> GuardrailTrippedError:
        agent = f"agent {self.agent!r}" if self.agent else "the agent"
        if stage == "input":
            what = f"the user's input, before the model call of {agent}"
        else:
            what = f"the output of {agent}, before it was handed on"
        mask = guardrail.mask
        if mask is None:
            checked, masked, name = text, verdict.masked, guardrail.title

            def mask(other: str) -> str:
                if masked is not None and other == checked:
                    return masked
                return WITHHELD.format(name=name)

        return GuardrailTrippedError(
            f"guardrail {guardrail.title!r} tripped on {what}",
            guardrail=guardrail.title,
            stage=stage,
            agent=self.agent,
            mask=mask,
            output_info=verdict.output_info,
        )

    def _check_input(self, guardrail: Guardrail, text: str) -> None:
        verdict = _cached(guardrail, text)
        if verdict is None:
            verdict = guardrail.run(text)
            _remember(guardrail, text, verdict)
        if verdict.tripwire_triggered:
            raise _recorded(self._tripped(guardrail, "input", text, verdict))

    async def _acheck_input(self, guardrail: Guardrail, text: str) -> None:
        verdict = _cached(guardrail, text)
        if verdict is None:
            verdict = await guardrail.arun(text)
            _remember(guardrail, text, verdict)
        if verdict.tripwire_triggered:
            raise _recorded(self._tripped(guardrail, "input", text, verdict))

    def _check_inputs(self, guardrails: Sequence[Guardrail], text: str) -> None:
        for guardrail in guardrails:
            self._check_input(guardrail, text)

    def _split(
        self, inputs: Sequence[Guardrail], text: str
    ) -> tuple[list[Guardrail], list[Guardrail]]:
        """(checks to run now, checks to run beside the call); a cached verdict counts as now."""
        now: list[Guardrail] = []
        beside: list[Guardrail] = []
        for guardrail in inputs:
            parallel = isinstance(guardrail, InputGuardrail) and guardrail.run_in_parallel
            (beside if parallel and _cached(guardrail, text) is None else now).append(guardrail)
        return now, beside

    # -- rewriting -------------------------------------------------------------------------------

    @staticmethod
    def _rewrite_request(
        request: ModelRequest[Any], inputs: Sequence[Guardrail]
    ) -> ModelRequest[Any]:
        rewrites = [g.rewrite for g in inputs if g.rewrite is not None]
        if not rewrites:
            return request
        messages: list[AnyMessage] = []
        changed = False
        for message in request.messages:
            if isinstance(message, HumanMessage):
                content = _rewritten_content(message.content, rewrites)
                if content != message.content:
                    message, changed = message.model_copy(update={"content": content}), True
            elif isinstance(message, SystemMessage) and getattr(message, "turns", None):
                # The turns a window dropped, on their way to the memory summariser (duck-typed:
                # `switchyard.state.memory.EarlierTurns` sits above this layer). What the model
                # may not see must not reach the notes it will see from then on either.
                turns = [
                    [_rewritten_message(m, rewrites) for m in turn]
                    for turn in message.turns  # type: ignore[attr-defined]
                ]
                message, changed = message.model_copy(update={"turns": turns}), True
            messages.append(message)
        return request.override(messages=messages) if changed else request

    def _own_tools(self, request: ModelRequest[Any]) -> frozenset[str]:
        """The agent's own tools: declared ones, and the request's tools that are no handoffs."""
        offered = {
            str(getattr(tool, "name", ""))
            for tool in request.tools
            if HANDOFF_METADATA_KEY not in (getattr(tool, "metadata", None) or {})
        }
        return self.own_tools | offered

    def _output_text(
        self, response: ModelResponse[Any], own: frozenset[str]
    ) -> tuple[AIMessage, str] | None:
        reply = next((m for m in response.result if isinstance(m, AIMessage)), None)
        if reply is None:
            return None
        parts: list[str] = [str(reply.text)]
        if isinstance(response.structured_response, BaseModel):
            parts.append(response.structured_response.model_dump_json())
        elif reply.tool_calls:
            handed = [c for c in reply.tool_calls if c["name"] not in own]
            if not handed:
                return None  # the agent calls its own tools: no output yet
            parts += [text for call in handed for text in _strings(call["args"])]
        return reply, "\n".join(part for part in parts if part)

    def _check_output(
        self, request: ModelRequest[Any], response: ModelResponse[Any], outputs: Sequence[Guardrail]
    ) -> ModelResponse[Any]:
        own = self._own_tools(request)
        found = self._output_text(response, own) if outputs else None
        if found is None:
            return response
        reply, text = found
        for guardrail in outputs:
            verdict = guardrail.run(text)
            if verdict.tripwire_triggered:
                raise self._tripped(guardrail, "output", text, verdict)
        return self._rewrite_response(response, reply, outputs, own)

    async def _acheck_output(
        self, request: ModelRequest[Any], response: ModelResponse[Any], outputs: Sequence[Guardrail]
    ) -> ModelResponse[Any]:
        own = self._own_tools(request)
        found = self._output_text(response, own) if outputs else None
        if found is None:
            return response
        reply, text = found
        for guardrail in outputs:
            verdict = await guardrail.arun(text)
            if verdict.tripwire_triggered:
                raise self._tripped(guardrail, "output", text, verdict)
        return self._rewrite_response(response, reply, outputs, own)

    @staticmethod
    def _rewrite_response(
        response: ModelResponse[Any],
        reply: AIMessage,
        outputs: Sequence[Guardrail],
        own: frozenset[str],
    ) -> ModelResponse[Any]:
        rewrites = [g.rewrite for g in outputs if g.rewrite is not None]
        if not rewrites:
            return response
        calls = [
            call
            if call["name"] in own
            else {**call, "args": _rewrite_value(call["args"], rewrites)}
            for call in reply.tool_calls
        ]
        content = _rewrite_value(reply.content, rewrites)
        new_reply = reply.model_copy(update={"content": content, "tool_calls": calls})
        structured = response.structured_response
        if isinstance(structured, BaseModel):
            dumped = _rewrite_value(structured.model_dump(mode="json"), rewrites)
            try:
                structured = type(structured).model_validate(dumped)
            except ValidationError:  # a field the rewrite broke (a number masked): never unmasked
                structured = type(structured).model_construct(**dumped)
        result = [new_reply if m is reply else m for m in response.result]
        rewritten: ModelResponse[Any] = ModelResponse(result=result, structured_response=structured)
        update = getattr(response, "switchyard_update", None)
        if update is not None:
            rewritten.switchyard_update = update  # type: ignore[attr-defined]
        return rewritten

    # -- the hooks -------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], Any]
    ) -> Any:
        """Check the input, call the model (beside the parallel checks), check the output."""
        inputs, outputs = self.guardrails(request)
        if not inputs and not outputs:
            return handler(request)
        charges: list[Any] = []
        token = _charges.set(charges)
        try:
            message = user_input(request.messages)
            beside: list[Guardrail] = []
            if message is not None and inputs:
                now, beside = self._split(inputs, message.text)
                for guardrail in now:
                    self._check_input(guardrail, message.text)
                request = self._rewrite_request(request, inputs)
            pending = None
            if beside and message is not None:
                context = contextvars.copy_context()
                text = message.text
                pending = _executor().submit(context.run, self._check_inputs, beside, text)
            try:
                response = handler(request)
            finally:
                if pending is not None:
                    pending.result()  # a trip outranks the call's own failure
            return self._check_output(request, response, outputs)
        finally:
            _charges.reset(token)
            if charges:
                self.charge(charges)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[Any]],
    ) -> Any:
        """Async form of `wrap_model_call`."""
        inputs, outputs = self.guardrails(request)
        if not inputs and not outputs:
            return await handler(request)
        charges: list[Any] = []
        token = _charges.set(charges)
        try:
            message = user_input(request.messages)
            beside: list[Guardrail] = []
            if message is not None and inputs:
                now, beside = self._split(inputs, message.text)
                for guardrail in now:
                    await self._acheck_input(guardrail, message.text)
                request = self._rewrite_request(request, inputs)
            pending = None
            if beside and message is not None:
                text = message.text

                async def check_beside() -> None:
                    for guardrail in beside:
                        await self._acheck_input(guardrail, text)

                pending = asyncio.ensure_future(check_beside())
            try:
                response = await handler(request)
            finally:
                if pending is not None:
                    await pending
            return await self._acheck_output(request, response, outputs)
        finally:
            _charges.reset(token)
            if charges:
                self.charge(charges)


# --- what is stored after a trip -----------------------------------------------------------------


def input_trip() -> GuardrailTrippedError | None:
    """The input tripwire that tripped in the run executing this code, if one did."""
    scope = current_scope()
    error = scope.agent_values(_CACHE_KEY).get(_TRIPPED) if scope is not None else None
    return error if isinstance(error, GuardrailTrippedError) and error.stage == "input" else None


def _rewritten_message(message: AnyMessage, rewrites: Sequence[Callable[[str], str]]) -> AnyMessage:
    """`message` with `rewrites` applied to its text (user, agent and tool messages alike)."""
    content = _rewritten_content(message.content, rewrites)
    return (
        message if content == message.content else message.model_copy(update={"content": content})
    )


def masked_user_message(state: Any, error: BaseException | None = None) -> list[HumanMessage]:
    """The update that overwrites the user's newest message with its masked text, after a trip.

    The user's message is checkpointed before any node runs; a stop after an input tripwire
    writes it again under the same id, masked, so the thread keeps nothing unmasked. Without
    `error`, the input tripwire this run recorded is used (a node that joins parallel branches,
    one of which tripped, calls it so). Empty for any other error, or a state without the
    message.
    """
    if error is None:
        error = input_trip()
    if not isinstance(error, GuardrailTrippedError) or error.stage != "input":
        return []
    if not isinstance(state, dict):
        return []
    message = user_input(state.get("messages") or [])
    if message is None or message.id is None:
        return []
    masked = error.mask(message.text)
    if masked == message.content:
        return []
    return [HumanMessage(content=masked, id=message.id, name=message.name)]


def stored_input(values: Any, text: str) -> str:
    """What a dead letter keeps of the input of a run a tripwire stopped.

    The masked message the state holds, else the input withheld.
    """
    messages = values.get("messages") if isinstance(values, dict) else None
    message = user_input(messages or [])
    if message is not None and message.text != text:
        return message.text
    return "[withheld: the run tripped a guardrail]"
