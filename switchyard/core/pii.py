"""Personal data masking: emails, card numbers, phone numbers and IP addresses in outgoing text.

`switchyard.core.redact.redact` calls `mask_pii` after masking secrets, so everything that leaves
the process (log lines, span attributes, run reports, dead letters, the CLI's output) is masked
with it. What agents see inside a graph is not touched here: that is `PIIMiddleware`'s job, which
users add per agent when a model must not see personal data either. (The offline model, which
quotes its request in its reply, masks the quote with `redact`, as it does for secrets.)

Detectors are maintained ones, not regexes of our own:

- emails, card numbers (16 digits, optionally grouped by 4, that pass the Luhn check, so a random
  16-digit id is left alone) and IPv4 addresses: LangChain's `PIIMiddleware` detectors
  (`langchain.agents.middleware.pii`);
- phone numbers: Google's libphonenumber (the `phonenumbers` package). LangChain ships no phone
  detector, and a phone regex either misses real numbers or masks every long integer; the
  library validates each candidate against the numbering plan of its country. Numbers written
  with a `+` country code are found for every country, national ones for `DEFAULT_PHONE_REGION`.

Loopback addresses (`127.0.0.1`) are not masked: they identify no one, and error messages that
name the server they could not reach (`127.0.0.1:6379`) stay useful.

Placeholders are LangChain's `redact` strategy's (`[REDACTED_EMAIL]`, `[REDACTED_CREDIT_CARD]`,
`[REDACTED_IP]`), plus `[REDACTED_PHONE]`, so text masked in-graph by `PIIMiddleware` and text
masked on the way out read the same.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import phonenumbers

if TYPE_CHECKING:
    from langchain.agents.middleware.pii import PIIMatch

DEFAULT_PHONE_REGION = "US"
"""Country whose national phone format (`(415) 555-2671`) is recognised without a `+` prefix."""

PII_TYPES = ("email", "credit_card", "ip", "phone")
"""The kinds of personal data `mask_pii` masks."""

# A phone number has at least 7 digits; text without such a run skips libphonenumber, which costs
# far more than the regex. ISO dates and times (in every log line) and digits inside hex ids (a
# correlation id) do not count: libphonenumber would refuse them anyway.
_PHONE_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])\d(?:[\s().\-/]{0,3}\d){6,}(?![A-Za-z0-9])")
_DATE_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?")


@dataclass(frozen=True)
class PIISpan:
    """One piece of personal data found in a text.

    Attributes:
        type: One of `PII_TYPES`.
        start: Index of its first character.
        end: Index just past its last character.
    """

    type: str
    start: int
    end: int


def placeholder(pii_type: str) -> str:
    """The text that replaces personal data of a type: LangChain's `redact` strategy's marker."""
    return f"[REDACTED_{pii_type.upper()}]"


@cache
def _langchain_detectors() -> tuple[tuple[str, Callable[[str], Sequence[PIIMatch]]], ...]:
    # Imported on first use: the agents package is large, and a process that only logs (or only
    # builds a report) should not pay for it at import time.
    from langchain.agents.middleware.pii import detect_credit_card, detect_email, detect_ip

    return (("email", detect_email), ("credit_card", detect_credit_card), ("ip", detect_ip))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _phone_spans(text: str, region: str) -> list[PIISpan]:
    if not _PHONE_CANDIDATE.search(_DATE_TIME.sub(" ", text)):
        return []
    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return [PIISpan("phone", match.start, match.end) for match in matcher]


def find_pii(text: str, *, phone_region: str = DEFAULT_PHONE_REGION) -> list[PIISpan]:
    """Personal data in `text`, in order, without overlaps (the earlier, then longer, span wins).

    Args:
        text: Any text.
        phone_region: Country (ISO 3166 alpha-2) whose national phone format is recognised.
    """
    found: list[PIISpan] = []
    for pii_type, detect in _langchain_detectors():
        for match in detect(text):
            start, end = match["start"], match["end"]
            if pii_type == "ip" and _is_loopback(text[start:end]):
                continue
            found.append(PIISpan(pii_type, start, end))
    found.extend(_phone_spans(text, phone_region))
    found.sort(key=lambda span: (span.start, span.start - span.end))
    kept: list[PIISpan] = []
    for span in found:
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def mask_pii(text: str, *, phone_region: str = DEFAULT_PHONE_REGION) -> str:
    """Replace emails, Luhn-valid card numbers, phone numbers and IP addresses in `text`.

    Args:
        text: Any text: a log message, a model's answer, an error.
        phone_region: Country (ISO 3166 alpha-2) whose national phone format is recognised.

    Returns:
        `text` with each piece of personal data replaced by its placeholder.

    Example:
        ```python
        mask_pii("mail ana@example.com, card 4111 1111 1111 1111, id 1234567812345678")
        # "mail [REDACTED_EMAIL], card [REDACTED_CREDIT_CARD], id 1234567812345678"
        ```
    """
    if not text:
        return text
    parts: list[str] = []
    position = 0
    for span in find_pii(text, phone_region=phone_region):
        parts += [text[position : span.start], placeholder(span.type)]
        position = span.end
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)
