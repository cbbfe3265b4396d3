"""When to try a failed delivery again: the retry schedule, jitter and ``Retry-After``.

Pure functions, no clock of their own and no I/O, so the delivery worker and the tests agree
on exactly one definition. The default schedule is Standard Webhooks' (immediately, then
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h after the previous attempt): about three
days of patience before an alert is dead-lettered, which covers a receiver down over a
weekend. ``Settings.webhook_retry_schedule`` changes it (tests use a few milliseconds).

Jitter spreads retries so that a receiver coming back up is not hit by every queued alert in
the same second. A ``Retry-After`` from the receiver replaces the scheduled delay (it knows
its own load better than we do) but is capped, so a bogus "come back next year" cannot park
an alert for good; the attempt still counts against the schedule, keeping the total finite.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from services.common.models import utcnow
from services.common.settings import STANDARD_WEBHOOKS_SCHEDULE, Settings

#: Longest ``Retry-After`` honoured, in seconds (the longest step of the default schedule).
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``delays[i]`` is the wait before attempt ``i + 1`` (``delays[0]`` before the first)."""

    delays: tuple[float, ...] = STANDARD_WEBHOOKS_SCHEDULE
    jitter: float = 0.1
    max_retry_after: float = MAX_RETRY_AFTER

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(tuple(settings.webhook_retry_schedule), settings.webhook_retry_jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    def next_delay(
        self,
        attempts_made: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when attempts are used up.

        ``attempts_made`` counts attempts already made (1 after the first failure).
        """
        return next_delay(
            self.delays, attempts_made, self.jitter, retry_after, rng, self.max_retry_after
        )


def next_delay(
    delays: Sequence[float],
    attempts_made: int,
    jitter: float = 0.0,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    max_retry_after: float = MAX_RETRY_AFTER,
) -> float | None:
    """See ``RetryPolicy.next_delay``. Jitter is symmetric: ``delay * (1 ± jitter)``."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts attempts already made; it starts at 1")
    if attempts_made >= len(delays):
        return None
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_retry_after)
    base = float(delays[attempts_made])
    if jitter <= 0 or base <= 0:
        return base
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, base * (1.0 + spread))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date; ``None`` if unusable.

    A date in the past means "now" (0 s). Garbage is ignored rather than trusted.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or utcnow()
    return max(0.0, (when - current).total_seconds())
