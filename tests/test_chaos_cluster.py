"""The chaos run on a cluster: a master SIGKILLed mid-run, its replica takes over, the services
follow without a restart, and the accounting shows nothing lost — the documented bound with
``TOPICWATCH_REDIS_WAIT_REPLICAS=1`` (docs/scaling.md, "Failover").

``topicwatch chaos --cluster`` is the full run; this is a small one: 3 masters with a replica
each (created by the server's own CLI), append-only, 3 partitions (one per master), 1 ingest,
2 classify and 2 notify in cluster mode, services SIGKILLed every ~3 s, one master SIGKILLed
(the one holding partition 0's accepted stream) and started again once its replica has taken
over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.harness import chaos

pytestmark = pytest.mark.e2e


def test_a_master_killed_mid_run_loses_nothing(tmp_path: Path) -> None:
    config = chaos.ChaosConfig(
        articles=300,
        rate=40.0,
        kill_every=3.0,
        cluster=True,
        partitions=3,
        master_kills=1,
        timeout=180.0,
    )
    result = chaos.run(config, workdir=tmp_path)
    text = chaos.report(result)
    assert result.drained, text
    assert len(result.failovers) == 1 and "took over" in result.failovers[0], text
    assert result.lost == 0, text  # the bound with WAIT: nothing acknowledged is lost
    assert result.duplicated == 0, text
    assert result.published == 300, text
    assert result.accepted == result.accepted_expected, text
    assert result.classified == result.accepted, text
    assert result.created == result.alerts_expected > 10, text
    assert result.delivered == result.alerts_expected, text
    assert "3 partitions" in text
    # The services followed the new topology: none had to be restarted for it.
    assert sum(result.self_exits.values()) == 0, text
