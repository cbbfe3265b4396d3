"""When a subscription's queued alerts go out: digests, rate limits and mute windows.

Everything here is a pure function of (the subscription's delivery policy, now, what is
queued), so the rules can be tested without Redis or waiting, and the delivery worker takes
``now`` from an injectable clock (``ManualClock`` in tests).

The rules, in order (Alertmanager's silences and group interval, Google Alerts' "at most once
a day"):

1. **Muted** (a silence with a start and end, or recurring quiet hours in a time zone):
   nothing is sent; the worker waits until the mute ends, chaining overlapping windows.
   Alerts are kept, never dropped.
2. **Held alerts are released as one digest.** Alerts that queued up while a mute was on,
   or past the end of a digest or rate-limit window, go out together in one message
   (a "digest" of one alert is sent as that plain alert).
3. **Digest mode**: windows of N minutes aligned on the Unix epoch (so every process agrees
   on the boundaries); an alert waits until the end of its window.
4. **Rate limit** (immediate mode): at most N alerts per window; when the window's budget is
   spent, the rest wait for the window's end and are folded into the next digest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.models import utcnow

#: Most alerts in one digest message; the rest go in the next one, right after.
MAX_DIGEST_ALERTS = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Silence(BaseModel):
    """A one-off mute: no deliveries from ``start`` to ``end`` (alerts are kept)."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    comment: str = Field(default="", max_length=500)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-01-01T22:00:00Z)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Silence:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class QuietHours(BaseModel):
    """A recurring mute, e.g. 22:00-07:00 Europe/Berlin on weekdays.

    ``days`` are the days on which the quiet period *starts* (0 = Monday); an end earlier
    than the start means the period runs past midnight.
    """

    model_config = ConfigDict(extra="forbid")

    start: dtime
    end: dtime
    timezone: str = "UTC"
    days: list[int] = Field(default_factory=lambda: list(range(7)))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(day < 0 or day > 6 for day in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday), at least one")
        return sorted(set(value))

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def occurrence_containing(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) of the quiet period in force at ``moment``, if any."""
        zone = ZoneInfo(self.timezone)
        local_day = moment.astimezone(zone).date()
        for offset in (-1, 0):  # a period that started yesterday may still run today
            day: date = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = datetime.combine(day, self.start, zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = datetime.combine(end_day, self.end, zone)
            if start <= moment < end:
                return start.astimezone(UTC), end.astimezone(UTC)
        return None


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_alerts: int = Field(ge=1, le=100_000)
    window_minutes: int = Field(ge=1, le=7 * 24 * 60)


class DeliveryPolicy(BaseModel):
    """A subscription's delivery settings (the ``delivery`` object of the API)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["immediate", "digest"] = "immediate"
    digest_interval_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    rate_limit: RateLimit | None = None
    silences: list[Silence] = Field(default_factory=list, max_length=100)
    quiet_hours: list[QuietHours] = Field(default_factory=list, max_length=20)


# --- clocks ----------------------------------------------------------------------------------


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    return utcnow()


class ManualClock:
    """A clock that moves only when told to, for tests of digests and mutes."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self.now += timedelta(seconds=seconds, **delta)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


# --- windows ---------------------------------------------------------------------------------


def window_bounds(moment: datetime, minutes: int) -> tuple[datetime, datetime]:
    """The [start, end) window of ``minutes`` containing ``moment``, aligned on the epoch."""
    size = timedelta(minutes=minutes)
    index = (moment - _EPOCH) // size
    start = _EPOCH + index * size
    return start, start + size


def mute_end(policy: DeliveryPolicy, moment: datetime) -> datetime | None:
    """When the mute in force at ``moment`` ends (following overlapping windows), or None."""
    end: datetime | None = None
    cursor = moment
    for _ in range(1000):  # windows are finite and bounded in number; this is a safety cap
        found = _mute_at(policy, cursor)
        if found is None:
            return end
        end = cursor = found
    return end


def _mute_at(policy: DeliveryPolicy, moment: datetime) -> datetime | None:
    ends = [s.end for s in policy.silences if s.start <= moment < s.end]
    for quiet in policy.quiet_hours:
        occurrence = quiet.occurrence_containing(moment)
        if occurrence is not None:
            ends.append(occurrence[1])
    return max(ends) if ends else None


def is_muted(policy: DeliveryPolicy, moment: datetime) -> bool:
    return _mute_at(policy, moment) is not None


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queued:
    """One alert waiting for delivery, as the worker sees its subscription's queue."""

    alert_id: str
    enqueued_at: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now: send ``alert_ids`` (as one digest if ``digest``), or wait."""

    alert_ids: tuple[str, ...] = ()
    digest: bool = False
    reason: str = ""
    wait_until: datetime | None = None

    @property
    def idle(self) -> bool:
        return not self.alert_ids and self.wait_until is None


def plan(
    policy: DeliveryPolicy,
    now: datetime,
    queue: Sequence[Queued],
    sent_in_window: int = 0,
    max_digest: int = MAX_DIGEST_ALERTS,
) -> Plan:
    """Decide for one subscription whose queue (oldest first) is ``queue``.

    ``sent_in_window`` is how many alerts were sent immediately in the current rate-limit
    window (the worker counts them); it matters only with a rate limit.
    """
    if not queue:
        return Plan()
    muted_until = mute_end(policy, now)
    if muted_until is not None:
        return Plan(reason="muted", wait_until=muted_until)

    def batch(items: Sequence[Queued], reason: str) -> Plan:
        chosen = tuple(item.alert_id for item in items[:max_digest])
        return Plan(chosen, digest=len(chosen) > 1, reason=reason)

    if policy.mode == "digest":
        window_start, _ = window_bounds(now, policy.digest_interval_minutes)
        due = _leading(queue, lambda item: item.enqueued_at < window_start)
        if due:
            return batch(due, "digest")
        _, first_end = window_bounds(queue[0].enqueued_at, policy.digest_interval_minutes)
        return Plan(reason="digest", wait_until=max(first_end, now))

    held = _leading(queue, lambda item: is_muted(policy, item.enqueued_at))
    if held:
        return batch(held, "muted")
    if policy.rate_limit is not None:
        window_start, window_end = window_bounds(now, policy.rate_limit.window_minutes)
        overflow = _leading(queue, lambda item: item.enqueued_at < window_start)
        if overflow:
            return batch(overflow, "rate_limit")
        if sent_in_window >= policy.rate_limit.max_alerts:
            return Plan(reason="rate_limit", wait_until=window_end)
    return Plan((queue[0].alert_id,), digest=False, reason="immediate")


def plan_lookahead(policy: DeliveryPolicy | None, max_digest: int = MAX_DIGEST_ALERTS) -> int:
    """How many queued alerts ``plan`` can look at for this policy.

    A plain immediate subscription (no digest, rate limit, silence or quiet hours) only ever
    sends its head, so the worker reads one queue entry instead of a digest's worth for each
    alert it sends. ``None`` (policy not known yet): the most ``plan`` can look at.
    """
    if (
        policy is not None
        and policy.mode == "immediate"
        and policy.rate_limit is None
        and not policy.silences
        and not policy.quiet_hours
    ):
        return 1
    return max_digest + 1


def _leading(queue: Sequence[Queued], keep: Callable[[Queued], bool]) -> list[Queued]:
    """The longest prefix of ``queue`` whose items satisfy ``keep`` (order is preserved)."""
    out: list[Queued] = []
    for item in queue:
        if not keep(item):
            break
        out.append(item)
    return out
