"""Secret redaction: one function that masks credentials before text leaves the process.

Everything Switchyard writes for people or machines to read (log lines, span attributes, run
reports, the CLI's output) passes through `redact`. It masks:

- provider API keys by shape: OpenAI (`sk-...`, `sk-proj-...`), Anthropic (`sk-ant-...`), LangSmith
  (`lsv2_...`), Google (`AIza...`), GitHub (`ghp_...`, `github_pat_...`), Slack (`xox.-...`);
- AWS access key ids (`AKIA...`, `ASIA...`) and the secret key that follows `aws_secret_access_key`;
- `Bearer <token>` and the value of any `Authorization:` header;
- the value of `key=value` / `"key": "value"` pairs whose key names a secret (api_key, token,
  secret, password, ...);
- the current value of every environment variable whose name ends with `_API_KEY`, `_TOKEN`,
  `_SECRET`, `_SECRET_KEY`, `_ACCESS_KEY` or `_PASSWORD` (so a key pasted anywhere is caught even
  when its shape is unknown).

Masks name what was removed (`[REDACTED:openai-key]`), so a reader knows a secret was there.

It then masks personal data (emails, Luhn-valid card numbers, phone numbers, IP addresses) with
`switchyard.core.pii.mask_pii`: `[REDACTED_EMAIL]`, `[REDACTED_CREDIT_CARD]`, ...
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from switchyard.core.pii import mask_pii

MASK = "[REDACTED]"
"""What a secret whose kind is not known is replaced with."""

SECRET_ENV_SUFFIXES = (
    "_API_KEY",
    "_TOKEN",
    "_SECRET",
    "_SECRET_KEY",
    "_ACCESS_KEY",
    "_PASSWORD",
)
"""Environment variables whose names end with one of these hold secrets."""

MIN_ENV_SECRET_LENGTH = 8
"""Shorter environment values are not masked: "true" or "1" are settings, not secrets."""

_SECRET_KEY_NAME = (
    r"[A-Za-z0-9_.\-]*(?:api[_\-]?key|access[_\-]?key|secret(?:[_\-]?key)?|password|passwd|"
    r"private[_\-]?key|client[_\-]?secret|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|"
    r"session[_\-]?token|token)"
)

# Order matters: specific shapes before generic ones, so a masked value is not matched twice.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # `Authorization: Bearer abc`, `"authorization": "Basic abc"`: keep the header name.
    (
        re.compile(
            r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(?:bearer|basic|token|digest|apikey)\s+)?[^\s\"',;}\]]+"
        ),
        r"\1[REDACTED:authorization]",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*"), "Bearer [REDACTED:bearer-token]"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{10,}"), "[REDACTED:anthropic-key]"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "[REDACTED:openai-key]"),
    (re.compile(r"\blsv2_(?:pt|sk)_[A-Za-z0-9_]{16,}"), "[REDACTED:langsmith-key]"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), "[REDACTED:google-key]"),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"), "[REDACTED:github-token]"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), "[REDACTED:github-token]"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), "[REDACTED:slack-token]"),
    (
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
        "[REDACTED:aws-key-id]",
    ),
    (
        re.compile(
            r"(?i)(aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{16,}",
        ),
        r"\1[REDACTED:aws-secret]",
    ),
    # Generic `password=...`, `"api_key": "..."`, `client_secret: ...`: mask the value.
    (
        re.compile(
            rf"(?i)(\b{_SECRET_KEY_NAME}[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED)[^\s\"',;}\]]{6,}"
        ),
        r"\1[REDACTED]",
    ),
)

_SECRET_NAME = re.compile(rf"(?i)^{_SECRET_KEY_NAME}$|^authorization$|^cookie$|^set-cookie$")


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables that hold secrets, longest first.

    Args:
        environ: The environment to read; `os.environ` when None.
    """
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if name.upper().endswith(SECRET_ENV_SUFFIXES) and len(value) >= MIN_ENV_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Mask every secret and every piece of personal data in `text` (see the module docstring).

    Args:
        text: Any text: a log message, an error, a model's answer, a tool's output.
        environ: The environment whose secret values are masked too; `os.environ` when None.

    Returns:
        `text` with each secret replaced by a `[REDACTED:...]` marker and each email, card
        number, phone number and IP address by a `[REDACTED_<TYPE>]` one.

    Example:
        ```python
        redact("curl -H 'Authorization: Bearer abc.def.ghi' # ana@example.com")
        # "curl -H 'Authorization: [REDACTED:authorization]' # [REDACTED_EMAIL]"
        ```
    """
    if not text:
        return text
    for value in secret_env_values(environ):
        if value in text:
            text = text.replace(value, "[REDACTED:env]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return mask_pii(text)


def is_secret_name(name: str) -> bool:
    """Whether a field or header named `name` holds a secret (`api_key`, `Authorization`, ...)."""
    return bool(_SECRET_NAME.match(name.strip()))


def redact_value(value: Any, *, environ: Mapping[str, str] | None = None) -> Any:
    """Redact a JSON-like value: strings are masked, containers are copied with masked contents.

    Mapping entries whose key names a secret (`api_key`, `password`, `Authorization`, ...) have
    their whole value masked, whatever its shape. Numbers, booleans and None pass unchanged;
    anything else is converted with `str` and masked.

    Args:
        value: A string, number, mapping, list or tuple (nested to any depth).
        environ: The environment whose secret values are masked too; `os.environ` when None.
    """
    if isinstance(value, str):
        return redact(value, environ=environ)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and is_secret_name(key) and value[key] not in (None, "")
            else redact_value(value[key], environ=environ)
            for key in value
        }
    if isinstance(value, list | tuple):
        items = [redact_value(item, environ=environ) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return redact(str(value), environ=environ)


class RedactingFilter(logging.Filter):
    """Masks a record's message and traceback before any handler sees it.

    Set on the logger a record is made by (`masked_logger`), it runs before the record goes up the
    hierarchy: the handlers an application puts on the root logger get masked text too, not just
    the handler `switchyard.observability.logs.configure_logging` installs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask in place; never drops the record."""
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactingFilter()


def masked_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)`, whose records are masked wherever they are handled."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
