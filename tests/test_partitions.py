"""Cluster mode and partitioned streams, end to end (issue 12; docs/scaling.md, "Key layout").

The three services run as real processes against a real 3-master Valkey cluster (created by
its own CLI, tests/conftest.py) or a single server, with 1 or 3 partitions: a seeded article
still becomes exactly one signed webhook per subscriber, duplicates stay duplicates, the
stream keys of the three partitions live on the three masters, and a process started with
another partition count than the data was written with refuses to start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.connections import sync_client
from services.common.layout import describe
from services.common.models import article_id_for
from services.common.redis_cluster import LocalCluster
from services.common.redis_server import free_port
from services.common.streams import HASH_SLOTS, StreamNames, spread_tag
from services.common.urls import canonical_url_or_none
from services.notify.signing import verify
from tests.notify_receiver import Receiver
from tests.procs import ROOT, ServiceProcess, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.streams]

AUTH = {"Authorization": "Bearer test-key"}


def test_partition_tags_spread_over_the_slot_space() -> None:
    """Partition p of N hashes into the p-th N-th of the slots (so `--cluster create`'s even
    split puts N partitions on N masters); one partition on one node keeps today's names."""
    for count in (1, 2, 3, 7, 64):
        for p in range(count):
            slot = redis.crc.key_slot(spread_tag("p", p, count).encode())
            assert p * HASH_SLOTS // count <= slot < (p + 1) * HASH_SLOTS // count
    plain = StreamNames()
    assert plain.accepted == "topicwatch:articles:accepted"
    assert plain.alerts == "topicwatch:alerts"
    assert plain.seen(0, "url", "abc") == "topicwatch:seen:url:abc"
    assert plain.subscriptions_key("subscription", "s1") == "topicwatch:subscription:s1"
    tagged = StreamNames(partitions=3, tagged=True)
    assert tagged.ingest == plain.ingest  # the public entry point keeps its name
    for p in range(3):
        tag = spread_tag("p", p, 3)
        slot = redis.crc.key_slot(tag.encode())
        for key in (tagged.accepted_in(p), tagged.classified_in(p), tagged.seen(p, "hash", "h")):
            assert redis.crc.key_slot(key.encode()) == slot, key
    with pytest.raises(ValueError, match="3 partitions"):
        _ = tagged.accepted


EXAMPLES = ROOT / "examples" / "articles"
#: Three different stories (near-duplicates would fold into one alert per subscriber).
TOPICS = ["air-defence-procurement", "missile-test", "sanctions"]


def stories(seed: dict) -> list[dict]:
    briefs = {}
    for line in (EXAMPLES / "briefs.jsonl").read_text(encoding="utf-8").splitlines():
        brief = json.loads(line)
        briefs[brief["id"]] = brief
    return [seed, briefs["example-hwasong"], briefs["example-drone-sanctions"]]


def one_article_per_partition(seed: dict, names: StreamNames) -> dict[int, dict]:
    """A different story in each partition: a URL is chosen for each so that its id (the
    dedup identity) routes it there; the test must not depend on luck to cover them all."""
    chosen: dict[int, dict] = {}
    for partition, story in enumerate(stories(seed)[: names.partitions]):
        n = 0
        while partition not in chosen:
            url = f"https://news.example.com/{story.get('id', 'seed')}/{n}"
            article_id = article_id_for(canonical_url_or_none(url), "unused: the url decides")
            if names.partition_of(article_id) == partition:
                chosen[partition] = {**{k: v for k, v in story.items() if k != "id"}, "url": url}
            n += 1
    return chosen


@pytest.fixture(params=["cluster-3", "single-3", "cluster-1"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(mode: str, request: pytest.FixtureRequest) -> tuple[str, bool, int]:
    """(TOPICWATCH_REDIS_URL, cluster?, partitions) of the mode, on an emptied server."""
    kind, count = mode.split("-")
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        return url, True, int(count)
    return request.getfixturevalue("redis_url"), False, int(count)


@pytest.fixture
def stack(target: tuple[str, bool, int], tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    url, cluster, partitions = target
    env = {
        "TOPICWATCH_REDIS_URL": url,
        "TOPICWATCH_REDIS_CLUSTER": "true" if cluster else "false",
        "TOPICWATCH_PARTITIONS": str(partitions),
        "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on loopback
        "TOPICWATCH_API_KEYS": "test-key",
        "TOPICWATCH_READ_BLOCK_MS": "50",
    }
    procs = start_stack(env, tmp_path)
    yield procs
    for proc in procs.values():
        proc.stop()


def test_every_subscriber_gets_each_article_once_in_order(
    stack: dict[str, ServiceProcess],
    target: tuple[str, bool, int],
    seed_article: dict,
    request: pytest.FixtureRequest,
) -> None:
    url, cluster, partitions = target
    names = StreamNames(partitions=partitions, tagged=cluster or partitions > 1)
    articles = one_article_per_partition(seed_article, names)
    with Receiver() as receiver:
        subs = []
        for i in range(3):
            created = httpx.post(
                f"{stack['notify'].url}/v1/subscriptions",
                json={
                    "name": f"desk {i}",
                    "topics": TOPICS,
                    "webhook_url": receiver.url,
                },
                headers=AUTH,
            )
            assert created.status_code == 201, created.text
            subs.append(created.json())
        secrets = {s["id"]: s["webhook_secret"] for s in subs}

        published: dict[int, str] = {}
        for partition, article in sorted(articles.items()):
            posted = httpx.post(f"{stack['ingest'].url}/v1/articles", json=article, headers=AUTH)
            assert posted.status_code == 202, posted.text
            [result] = posted.json()["articles"]
            assert result["status"] == "accepted"
            assert names.partition_of(result["id"]) == partition
            published[partition] = result["id"]

        expected = len(subs) * len(articles)
        requests = receiver.wait_for(expected, timeout=30.0)
        # Every article again: duplicates, in whichever partition owns them.
        for article in articles.values():
            again = httpx.post(f"{stack['ingest'].url}/v1/articles", json=article, headers=AUTH)
            assert again.json()["articles"][0]["status"] == "duplicate"
        time.sleep(1.5)  # give a second alert every chance to (wrongly) arrive
        assert len(receiver.requests) == expected

    pairs = []
    got_by_sub: dict[str, list[str]] = {}
    for req in requests:
        payload = json.loads(req.body)
        sid = payload["data"]["subscription_id"]
        assert verify(req.headers, req.body, [secrets[sid]]) == payload["data"]["alert_id"]
        pairs.append((sid, payload["data"]["article"]["id"]))
        got_by_sub.setdefault(sid, []).append(payload["data"]["alert_id"])
    assert sorted(pairs) == sorted((s, a) for s in secrets for a in published.values())

    # Per-subscription order: deliveries follow the subscription's history (one queue per
    # subscription, in its shard's slot, whichever partition each article came through).
    for sub in subs:
        history = httpx.get(
            f"{stack['notify'].url}/v1/subscriptions/{sub['id']}/alerts",
            headers={"Authorization": f"Bearer {sub['read_token']}"},
        )
        assert history.status_code == 200, history.text
        listed = [a["id"] for a in history.json()["alerts"]]
        assert listed == got_by_sub[sub["id"]]

    client = sync_client(url, cluster=cluster, decode_responses=True)
    try:
        for partition, article_id in published.items():
            for stream in (names.accepted_in(partition), names.classified_in(partition)):
                entries = client.xrange(stream)
                assert len(entries) == 1, stream
                data = json.loads(entries[0][1]["__data__"])
                assert (data.get("article") or data)["id"] == article_id
        alerts = sum(client.xlen(s) for s in names.alerts_streams)
        assert alerts == expected
        assert json.loads(client.get(names.layout) or "{}") == describe(names)
    finally:
        client.close()

    if cluster and partitions == 3:
        # The partitions' streams live on three different masters.
        lc: LocalCluster = request.getfixturevalue("redis_cluster")
        owners = {lc.node_for_key(names.accepted_in(p)).port for p in range(3)}
        assert len(owners) == 3
        owners = {lc.node_for_key(names.classified_in(p)).port for p in range(3)}
        assert len(owners) == 3


def serve_once(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "classify"],
        env={**os.environ, **env, "TOPICWATCH_CLASSIFY_PORT": str(free_port())},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_changed_partition_count_is_refused(redis_url: str, tmp_path: Path) -> None:
    """Data written with 1 partition; a process with 3 refuses to start and says why; one
    with the recorded count starts."""
    env = {"TOPICWATCH_REDIS_URL": redis_url, "TOPICWATCH_READ_BLOCK_MS": "50"}
    [classify] = start_stack(env, tmp_path, services=("classify",)).values()
    classify.stop()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert json.loads(client.get("topicwatch:layout") or "{}") == {
        "partitions": 1,
        "tagged": False,
    }
    done = serve_once({**env, "TOPICWATCH_PARTITIONS": "3"}, tmp_path)
    assert done.returncode != 0
    assert "written with TOPICWATCH_PARTITIONS=1" in done.stderr
    assert "this process has TOPICWATCH_PARTITIONS=3" in done.stderr
    # Data from before the layout was recorded counts as one partition, too.
    client.delete("topicwatch:layout")
    done = serve_once({**env, "TOPICWATCH_PARTITIONS": "2"}, tmp_path)
    assert done.returncode != 0
    assert "unpartitioned topicwatch data" in done.stderr
    client.close()


async def test_cluster_mode_checks_every_master(redis_cluster_url: str) -> None:
    """Each master's INFO is judged; a finding names the masters it was found on (the
    shared test cluster runs without persistence: one warning for all three)."""
    from services.common.connections import async_client, is_cluster
    from services.common.redis_requirements import check_server

    client = async_client(redis_cluster_url, cluster=True)
    try:
        assert is_cluster(client)
        report = await check_server(client, require_persistence=False)
    finally:
        await client.aclose()
    assert report.product == "Valkey" and not report.errors
    [warning] = report.warnings
    assert "persistence is off" in warning
    assert warning.count("127.0.0.1:") == 3
