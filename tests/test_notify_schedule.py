"""Digest windows, rate limits and mute windows as pure functions of (policy, now, queue)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notify.schedule import (
    DeliveryPolicy,
    ManualClock,
    Queued,
    QuietHours,
    RateLimit,
    Silence,
    is_muted,
    mute_end,
    plan,
    window_bounds,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def q(*minutes: float) -> list[Queued]:
    return [Queued(f"alt_{i}", at(m)) for i, m in enumerate(minutes)]


def test_windows_are_aligned_on_the_epoch() -> None:
    assert window_bounds(at(7), 15) == (at(0), at(15))
    assert window_bounds(at(15), 15) == (at(15), at(30))
    start, end = window_bounds(datetime(2026, 1, 5, 0, 59, tzinfo=UTC), 24 * 60)
    assert (start, end) == (datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))


def test_immediate_sends_the_head_alone() -> None:
    result = plan(DeliveryPolicy(), at(1), q(0, 0.5))
    assert result.alert_ids == ("alt_0",) and not result.digest
    assert plan(DeliveryPolicy(), at(1), []).idle


def test_digest_waits_for_the_window_then_sends_everything_due_as_one() -> None:
    policy = DeliveryPolicy(mode="digest", digest_interval_minutes=30)
    queue = q(1, 5, 29, 31)
    waiting = plan(policy, at(10), queue)
    assert waiting.alert_ids == () and waiting.wait_until == at(30)
    due = plan(policy, at(30), queue)
    assert due.alert_ids == ("alt_0", "alt_1", "alt_2") and due.digest and due.reason == "digest"
    # The alert of the next window waits for that window's end.
    assert plan(policy, at(31), queue[3:]).wait_until == at(60)


def test_digest_of_one_alert_is_a_plain_alert() -> None:
    policy = DeliveryPolicy(mode="digest", digest_interval_minutes=30)
    result = plan(policy, at(45), q(3))
    assert result.alert_ids == ("alt_0",) and not result.digest


def test_digest_size_is_capped_and_the_rest_follows() -> None:
    policy = DeliveryPolicy(mode="digest", digest_interval_minutes=30)
    queue = q(*[i * 0.1 for i in range(250)])
    first = plan(policy, at(30), queue, max_digest=100)
    assert len(first.alert_ids) == 100
    second = plan(policy, at(30), queue[100:], max_digest=100)
    assert second.alert_ids[0] == "alt_100"


def test_rate_limit_holds_the_excess_and_folds_it_into_a_digest() -> None:
    policy = DeliveryPolicy(rate_limit=RateLimit(max_alerts=2, window_minutes=10))
    queue = q(1, 2, 3, 4)
    assert plan(policy, at(1), queue, sent_in_window=0).alert_ids == ("alt_0",)
    assert plan(policy, at(2), queue[1:], sent_in_window=1).alert_ids == ("alt_1",)
    held = plan(policy, at(3), queue[2:], sent_in_window=2)
    assert held.alert_ids == () and held.wait_until == at(10) and held.reason == "rate_limit"
    # At the window's end the excess goes out together, none dropped.
    folded = plan(policy, at(10), queue[2:], sent_in_window=0)
    assert folded.alert_ids == ("alt_2", "alt_3") and folded.digest
    assert folded.reason == "rate_limit"


def test_silence_mutes_until_its_end_and_held_alerts_go_out_together() -> None:
    policy = DeliveryPolicy(silences=[Silence(start=at(0), end=at(60))])
    queue = q(5, 10, 20)
    muted = plan(policy, at(20), queue)
    assert muted.alert_ids == () and muted.wait_until == at(60) and muted.reason == "muted"
    released = plan(policy, at(60), queue)
    assert released.alert_ids == ("alt_0", "alt_1", "alt_2") and released.digest
    # After the mute, alerts are immediate again.
    assert plan(policy, at(61), q(61)).alert_ids == ("alt_0",)


def test_overlapping_mutes_chain() -> None:
    policy = DeliveryPolicy(
        silences=[Silence(start=at(0), end=at(30)), Silence(start=at(20), end=at(50))],
        quiet_hours=[QuietHours(start=time(12, 50), end=time(13, 10))],
    )
    assert mute_end(policy, at(5)) == at(70)
    assert mute_end(policy, at(70)) is None


def test_quiet_hours_across_midnight_in_a_time_zone() -> None:
    quiet = QuietHours(start=time(22, 0), end=time(7, 0), timezone="Europe/Berlin")
    policy = DeliveryPolicy(quiet_hours=[quiet])
    # 22:30 Berlin in winter is 21:30 UTC; the mute ends at 07:00 Berlin = 06:00 UTC.
    evening = datetime(2026, 1, 5, 21, 30, tzinfo=UTC)
    assert mute_end(policy, evening) == datetime(2026, 1, 6, 6, 0, tzinfo=UTC)
    early = datetime(2026, 1, 6, 5, 59, tzinfo=UTC)
    assert mute_end(policy, early) == datetime(2026, 1, 6, 6, 0, tzinfo=UTC)
    assert not is_muted(policy, datetime(2026, 1, 6, 6, 0, tzinfo=UTC))
    # Summer time: 07:00 Berlin is 05:00 UTC.
    assert mute_end(policy, datetime(2026, 7, 1, 4, 0, tzinfo=UTC)) == datetime(
        2026, 7, 1, 5, 0, tzinfo=UTC
    )


def test_quiet_hours_only_on_chosen_days() -> None:
    weekend = QuietHours(start=time(0, 0), end=time(23, 59), days=[5, 6])
    policy = DeliveryPolicy(quiet_hours=[weekend])
    assert not is_muted(policy, datetime(2026, 1, 9, 12, tzinfo=UTC))  # Friday
    assert is_muted(policy, datetime(2026, 1, 10, 12, tzinfo=UTC))  # Saturday


def test_digest_window_ending_inside_a_mute_waits_for_the_mute() -> None:
    policy = DeliveryPolicy(
        mode="digest", digest_interval_minutes=30, silences=[Silence(start=at(25), end=at(45))]
    )
    queue = q(1, 2)
    assert plan(policy, at(30), queue).wait_until == at(45)
    released = plan(policy, at(45), queue)
    assert released.alert_ids == ("alt_0", "alt_1") and released.digest


def test_manual_clock() -> None:
    clock = ManualClock(T0)
    assert clock() == T0
    clock.advance(minutes=5)
    assert clock() == at(5)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"mode": "weekly"}, "mode"),
        ({"digest_interval_minutes": 0}, "digest_interval_minutes"),
        ({"rate_limit": {"max_alerts": 0, "window_minutes": 5}}, "max_alerts"),
        (
            {"silences": [{"start": "2026-01-01T10:00:00Z", "end": "2026-01-01T09:00:00Z"}]},
            "silences",
        ),
        ({"silences": [{"start": "2026-01-01T10:00:00", "end": "2026-01-01T11:00:00Z"}]}, "start"),
        (
            {"quiet_hours": [{"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}]},
            "timezone",
        ),
        ({"quiet_hours": [{"start": "22:00", "end": "22:00"}]}, "quiet_hours"),
        ({"quiet_hours": [{"start": "22:00", "end": "07:00", "days": [7]}]}, "days"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_policies_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DeliveryPolicy.model_validate(data)
    assert field in str(info.value)


# --- simulation: the planner driven like the worker drives it --------------------------------


@st.composite
def policies(draw: st.DrawFn) -> DeliveryPolicy:
    mode = draw(st.sampled_from(["immediate", "digest"]))
    rate = draw(
        st.none()
        | st.builds(RateLimit, max_alerts=st.integers(1, 4), window_minutes=st.integers(1, 30))
    )
    silences = []
    for start, length in draw(
        st.lists(st.tuples(st.integers(0, 300), st.integers(1, 120)), max_size=3)
    ):
        silences.append(Silence(start=at(start), end=at(start + length)))
    quiet = draw(
        st.lists(
            st.builds(
                QuietHours,
                start=st.sampled_from([time(12, 30), time(13, 0), time(23, 0)]),
                end=st.sampled_from([time(12, 45), time(14, 0), time(1, 0)]),
            ),
            max_size=1,
        )
    )
    return DeliveryPolicy(
        mode=mode,
        digest_interval_minutes=draw(st.integers(1, 60)),
        rate_limit=rate,
        silences=silences,
        quiet_hours=quiet,
    )


@settings(max_examples=150, deadline=None)
@given(
    policy=policies(),
    arrivals=st.lists(st.floats(0, 400, allow_nan=False), min_size=1, max_size=40),
)
def test_planner_never_drops_reorders_or_sends_while_muted(
    policy: DeliveryPolicy, arrivals: list[float]
) -> None:
    """Drive ``plan`` like the worker: every alert is sent exactly once, in arrival order,
    never during a mute, and at most ``max_alerts`` alone per rate-limit window."""
    times = sorted(at(m) for m in arrivals)
    pending = [Queued(f"alt_{i}", t) for i, t in enumerate(times)]
    queue: list[Queued] = []
    sent: list[str] = []
    alone_per_window: dict[datetime, int] = {}
    now = T0
    for _ in range(10_000):
        while pending and pending[0].enqueued_at <= now:
            queue.append(pending.pop(0))
        if not queue and not pending:
            break
        window = (
            window_bounds(now, policy.rate_limit.window_minutes)[0] if policy.rate_limit else T0
        )
        decision = plan(policy, now, queue, alone_per_window.get(window, 0), max_digest=5)
        if decision.alert_ids:
            assert not is_muted(policy, now)
            assert decision.alert_ids == tuple(q.alert_id for q in queue[: len(decision.alert_ids)])
            sent.extend(decision.alert_ids)
            del queue[: len(decision.alert_ids)]
            if decision.reason == "immediate":
                alone_per_window[window] = alone_per_window.get(window, 0) + 1
                if policy.rate_limit:
                    assert alone_per_window[window] <= policy.rate_limit.max_alerts
            continue
        next_arrival = pending[0].enqueued_at if pending else None
        if decision.wait_until is None:  # idle: jump to the next arrival
            assert not queue and next_arrival is not None
            now = next_arrival
        else:
            assert decision.wait_until > now
            now = min(decision.wait_until, next_arrival) if next_arrival else decision.wait_until
    assert sent == [f"alt_{i}" for i in range(len(times))]
