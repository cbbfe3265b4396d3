"""The retry schedule: Standard Webhooks defaults, jitter bounds, Retry-After handling."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.settings import STANDARD_WEBHOOKS_SCHEDULE, Settings
from services.notify.retry import MAX_RETRY_AFTER, RetryPolicy, next_delay, parse_retry_after


def test_default_schedule_is_standard_webhooks() -> None:
    policy = RetryPolicy(jitter=0)
    delays = [policy.next_delay(n) for n in range(1, policy.max_attempts + 1)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400, None]
    assert policy.max_attempts == len(STANDARD_WEBHOOKS_SCHEDULE) == 10


def test_policy_from_settings() -> None:
    settings = Settings(webhook_retry_schedule="0,0.01,0.02", webhook_retry_jitter=0)
    policy = RetryPolicy.from_settings(settings)
    assert policy.delays == (0, 0.01, 0.02)
    assert [policy.next_delay(n) for n in (1, 2, 3)] == [0.01, 0.02, None]


@given(attempt=st.integers(1, 9), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int) -> None:
    base = STANDARD_WEBHOOKS_SCHEDULE[attempt]
    delay = next_delay(STANDARD_WEBHOOKS_SCHEDULE, attempt, jitter, rng=random.Random(seed))
    assert delay is not None
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {next_delay(STANDARD_WEBHOOKS_SCHEDULE, 2, 0.1, rng=rng) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_replaces_the_delay_but_is_capped_and_counted() -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.next_delay(1, retry_after=42) == 42
    assert policy.next_delay(1, retry_after=10**9) == MAX_RETRY_AFTER
    assert policy.next_delay(1, retry_after=-5) == 0
    # The attempt still counts: after the last one, Retry-After does not extend the schedule.
    assert policy.next_delay(policy.max_attempts, retry_after=1) is None


def test_attempts_made_starts_at_one() -> None:
    with pytest.raises(ValueError):
        next_delay(STANDARD_WEBHOOKS_SCHEDULE, 0)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 0 ", now) == 0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0  # in the past
    for garbage in (None, "", "soon", "-3", "1.5e3"):
        assert parse_retry_after(garbage, now) is None
