"""A small chaos run: SIGKILLs and a Redis restart under load; nothing lost, nothing repeated.

``topicwatch chaos --articles 10000`` is the full run (its output is in docs/promises.md);
this is the same harness at a size the suite can afford: 1 ingest, 2 classify and 2 notify
processes, a private append-only redis-server, services SIGKILLed every ~2 s and the server
process stopped and started once while articles flow.
"""

from __future__ import annotations

import pytest

from services.harness import chaos

pytestmark = pytest.mark.e2e


def test_kills_and_a_redis_restart_lose_and_repeat_nothing(tmp_path) -> None:
    config = chaos.ChaosConfig(
        articles=400, rate=40.0, kill_every=2.0, redis_restarts=1, timeout=120.0
    )
    result = chaos.run(config, workdir=tmp_path)
    text = chaos.report(result)
    assert result.drained, text
    assert sum(result.kills.values()) >= 3, text
    assert result.redis_restarts == 1, text
    assert result.lost == 0, text
    assert result.duplicated == 0, text
    assert result.published == 400, text
    assert result.accepted == result.accepted_expected, text
    assert result.duplicate == result.duplicate_expected, text
    assert result.rejected == result.rejected_expected > 0, text
    assert result.classified == result.accepted, text
    assert result.created == result.alerts_expected > 20, text
    assert result.unexpected == 0, text
    assert result.delivered == result.alerts_expected, text
    assert result.dead_lettered == 0, text
