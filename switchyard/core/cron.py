"""When a scheduled job fires: a cron expression in a time zone, or a fixed interval.

Cron expressions are parsed and stepped by `cronsim` (maintained, typed, daylight-saving
correct in any IANA zone); zones come from the standard library's `zoneinfo` (with `tzdata` where
the OS has no zone database). Five fields are classic cron (`0 9 * * 1-5`, minute resolution); a
sixth, leading field gives seconds (`*/10 * * * * *`). Only the stepping lives here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from switchyard.core.errors import InvalidInputError

_NOW = datetime(2000, 1, 1, tzinfo=UTC)  # any instant: parsing does not depend on it

MAX_EVERY_S = 366 * 86_400
"""Longest interval: a year (a longer one is a cron expression's job)."""


@dataclass(frozen=True)
class Timing:
    """A job's times: `cron` in zone `tz`, or every `every_s` seconds from `anchor`.

    Attributes:
        cron: A cron expression (5 fields, or 6 with seconds first), or None.
        every_s: An interval in seconds, or None (exactly one of `cron` and `every_s` is set).
        tz: IANA time zone the cron expression is read in (e.g. "Europe/Zurich").
        anchor: Unix time interval firings count from (its multiples are the firing times).
    """

    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    anchor: float = 0.0

    def __post_init__(self) -> None:
        """Check the expression and zone now, so a bad job is refused before it is stored."""
        if (self.cron is None) == (self.every_s is None):
            raise InvalidInputError("give a schedule either a cron expression or an interval")
        self.zone()
        if self.every_s is not None:
            # Whole seconds, as Temporal's: fractions would round away firing times in floats.
            every = self.every_s
            if not (math.isfinite(every) and every == int(every) and 1 <= every <= MAX_EVERY_S):
                raise InvalidInputError(
                    f"the interval must be a whole number of seconds from 1 to {MAX_EVERY_S:,}, "
                    f"got {every!r}"
                )
            return
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) not in (5, 6):
            raise InvalidInputError(
                f"cron expression {self.cron!r} has {len(fields)} fields; give 5 (minute hour "
                "day-of-month month day-of-week) or 6 (seconds first)"
            )
        try:
            CronSim(self.cron, _NOW)
        except CronSimError as exc:
            raise InvalidInputError(f"cron expression {self.cron!r} is invalid: {exc}") from None

    def zone(self) -> ZoneInfo:
        """The time zone.

        Raises:
            InvalidInputError: The zone is not an IANA name.
        """
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInputError(
                f"unknown time zone {self.tz!r}; use an IANA name such as 'Europe/Zurich' or 'UTC'"
            ) from None

    def next_after(self, when: float) -> float:
        """The first firing time strictly after Unix time `when`.

        Raises:
            InvalidInputError: The expression never matches again (e.g. 30 February).
        """
        if self.every_s is not None:
            steps = math.floor((when - self.anchor) / self.every_s) + 1
            after = self.anchor + steps * self.every_s
            while after <= when:  # never the same time again, whatever the float rounding
                steps += 1
                after = self.anchor + steps * self.every_s
            return after
        assert self.cron is not None
        start = datetime.fromtimestamp(math.floor(when), tz=self.zone())
        try:
            return next(iter(CronSim(self.cron, start))).timestamp()
        except StopIteration:
            raise InvalidInputError(f"cron expression {self.cron!r} never fires again") from None

    def describe(self) -> str:
        """The schedule in words, e.g. "At 09:00 on Monday-Friday (Europe/Zurich)"."""
        if self.every_s is not None:
            return f"every {self.every_s:g} s"
        assert self.cron is not None
        try:
            text = CronSim(self.cron, _NOW).explain()
        except Exception:  # the explainer covers most, not all, of what the parser accepts
            text = self.cron
        return f"{text} ({self.tz})"

    def temporal_cron(self) -> str:
        """The expression in Temporal's field order (its 6-field form ends with a year)."""
        assert self.cron is not None
        fields = self.cron.split()
        return self.cron if len(fields) == 5 else f"{self.cron} *"


def jitter(key: str, jitter_s: float) -> float:
    """A delay in [0, jitter_s) that is the same for `key` on every scheduler.

    Several schedulers must agree on when a firing is due, so the jitter is derived from the
    firing's idempotency key rather than drawn at random.
    """
    if jitter_s <= 0:
        return 0.0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter_s


def stamp(when: float) -> str:
    """A Unix time as a compact UTC stamp for ids, e.g. 20261207T090000Z (milliseconds kept)."""
    total = round(when * 1000)  # rounded once: 12.9996 is 13.000, not 12 s and 1000 ms
    seconds, millis = divmod(total, 1000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


__all__ = ["Timing", "jitter", "stamp"]
