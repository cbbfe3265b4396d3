"""`topicwatch up`'s supervisor with real child processes: restarts are scheduled by deadline
(a service waiting out its backoff never hides another one dying), and the backoff starts over
after a healthy period.  Periods are a fraction of a second so the tests stay fast."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.supervisor import Backoff, Supervisor


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def commands(table: dict[str, list[str]]) -> Callable[[str], list[str]]:
    return lambda service: table[service]


@pytest.fixture
def stopping() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop(timeout=5)


def poll_until(supervisor: Supervisor, condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        supervisor.poll()
        time.sleep(0.01)


def test_backoff_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(first=2, maximum=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(10_000) == 30


def test_a_dying_service_is_restarted_while_another_waits_out_its_backoff(
    stopping: list[Supervisor],
) -> None:
    """The crasher exits at once every time, so its wait grows (0.1, 0.2, 0.4, 0.8, 1.6 s).
    While it waits, the steady service is killed: it must come back after its own short wait,
    long before the crasher is due (the old loop slept through the crasher's wait)."""
    log = io.StringIO()
    supervisor = Supervisor(
        dict(os.environ),
        ("crasher", "steady"),
        backoff=Backoff(first=0.1, maximum=1.6, healthy_after=30),
        command=commands(
            {
                "crasher": python("import sys; sys.exit(3)"),
                "steady": python("import time; time.sleep(600)"),
            }
        ),
        log=log,
    )
    stopping.append(supervisor)
    supervisor.start()
    poll_until(supervisor, lambda: supervisor.crashes["crasher"] >= 5)
    assert "crasher" in supervisor.due
    crasher_due = supervisor.due["crasher"]
    assert crasher_due - time.monotonic() > 0.8  # a long wait is pending

    first = supervisor.children["steady"]
    os.kill(first.pid, signal.SIGKILL)
    poll_until(supervisor, lambda: supervisor.children["steady"] is not first)

    # Restarted while the crasher was still waiting for its own deadline.
    assert time.monotonic() < crasher_due
    assert "crasher" in supervisor.due
    assert supervisor.children["steady"].poll() is None
    assert supervisor.crashes["steady"] == 1
    printed = log.getvalue()
    assert f"steady exited with {-signal.SIGKILL}; restarting in 0.1s" in printed
    assert "crasher exited with 3; restarting in 1.6s" in printed

    # And the crasher is still restarted once its deadline passes.
    restarts = supervisor.restarts["crasher"]
    poll_until(supervisor, lambda: supervisor.restarts["crasher"] > restarts)


def test_the_backoff_starts_over_after_a_healthy_period(
    tmp_path: Path, stopping: list[Supervisor]
) -> None:
    """Each run of the flaky service lasts as long as a file says, then it exits with 1."""
    run_for = tmp_path / "run_for"
    run_for.write_text("0")
    log = io.StringIO()
    supervisor = Supervisor(
        dict(os.environ),
        ("flaky",),
        backoff=Backoff(first=0.1, maximum=5, healthy_after=0.6),
        command=commands(
            {
                "flaky": python(
                    f"import sys, time; time.sleep(float(open({str(run_for)!r}).read())); "
                    "sys.exit(1)"
                )
            }
        ),
        log=log,
    )
    stopping.append(supervisor)
    supervisor.start()
    poll_until(supervisor, lambda: supervisor.crashes["flaky"] >= 3)
    assert "restarting in 0.4s" in log.getvalue()  # 0.1, 0.2, 0.4: growing

    run_for.write_text("1.2")  # the next run is a healthy one (longer than 0.6 s)
    restarts = supervisor.restarts["flaky"]
    poll_until(supervisor, lambda: supervisor.restarts["flaky"] > restarts)
    healthy_run = supervisor.children["flaky"]
    poll_until(supervisor, lambda: healthy_run.poll() is not None and "flaky" in supervisor.due)

    assert supervisor.crashes["flaky"] == 1  # forgiven: counted afresh
    assert log.getvalue().splitlines()[-1] == "topicwatch: flaky exited with 1; restarting in 0.1s"


def test_stop_ends_running_children_and_cancels_pending_restarts(
    stopping: list[Supervisor],
) -> None:
    supervisor = Supervisor(
        dict(os.environ),
        ("crasher", "steady"),
        backoff=Backoff(first=30, maximum=30),
        command=commands(
            {
                "crasher": python("import sys; sys.exit(3)"),
                "steady": python("import time; time.sleep(600)"),
            }
        ),
        log=io.StringIO(),
    )
    stopping.append(supervisor)
    supervisor.start()
    poll_until(supervisor, lambda: "crasher" in supervisor.due)
    steady = supervisor.children["steady"]
    supervisor.stop(timeout=5)
    assert steady.returncode == -signal.SIGTERM
    assert not supervisor.due
    supervisor.poll()  # nothing is restarted once stopping
    assert supervisor.children["steady"] is steady
