"""Cluster mode and partitioned streams, end to end (issue 12; docs/scaling.md, "Key layout").

The three services run as real processes against a real 3-master Valkey cluster (created by
its own CLI, tests/conftest.py) or a single server, with 3 partitions (one server with one
partition is tests/test_e2e.py, unchanged): a seeded article
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

from services.common.connections import async_client, sync_client
from services.common.layout import LayoutMismatch, check_layout, describe
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


@pytest.fixture(params=["cluster-3", "single-3"])
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


async def test_a_changed_partition_count_is_refused(redis_url: str, tmp_path: Path) -> None:
    """Data written with 1 partition: another count is refused, saying both; partitions on
    data from before the layout was recorded too. A real process exits with the message."""
    client = async_client(redis_url)
    try:
        await check_layout(client, StreamNames())
        assert json.loads(await client.get("topicwatch:layout") or "{}") == {
            "partitions": 1,
            "tagged": False,
        }
        await check_layout(client, StreamNames())  # the same count starts again
        with pytest.raises(LayoutMismatch, match="written with TOPICWATCH_PARTITIONS=1"):
            await check_layout(client, StreamNames(partitions=3, tagged=True))
        await client.delete("topicwatch:layout")
        await client.xadd(StreamNames().accepted, {"__data__": "{}"})
        with pytest.raises(LayoutMismatch, match="unpartitioned topicwatch data"):
            await check_layout(client, StreamNames(partitions=2, tagged=True))
        await client.delete(StreamNames().accepted)
        await check_layout(client, StreamNames())
    finally:
        await client.aclose()
    env = {"TOPICWATCH_REDIS_URL": redis_url, "TOPICWATCH_PARTITIONS": "3"}
    done = serve_once(env, tmp_path)
    assert done.returncode != 0
    assert "written with TOPICWATCH_PARTITIONS=1" in done.stderr
    assert "this process has TOPICWATCH_PARTITIONS=3" in done.stderr


async def test_cluster_mode_checks_every_master(redis_cluster_url: str) -> None:
    """Each master's INFO is judged; a finding names the masters it was found on (the
    shared test cluster runs without persistence: one warning for all three)."""
    from services.common.connections import is_cluster
    from services.common.redis_requirements import check_server

    client = async_client(redis_cluster_url, cluster=True)
    try:
        assert is_cluster(client)
        report = await check_server(client, require_persistence=False)
    finally:
        await client.aclose()
    assert report.product in ("Valkey", "Redis") and not report.errors  # --redis-server
    [warning] = report.warnings
    assert "persistence is off" in warning
    assert warning.count("127.0.0.1:") == 3


def test_replicas_share_the_partitions(redis_url: str, tmp_path: Path, seed_article: dict) -> None:
    """Two classify and two notify replicas, each given a share of 3 partitions
    (TOPICWATCH_CONSUME_PARTITIONS): together they deliver everything once, and each reads
    only the partitions of its share."""
    names = StreamNames(partitions=3, tagged=True)
    base = {
        "TOPICWATCH_REDIS_URL": redis_url,
        "TOPICWATCH_PARTITIONS": "3",
        "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",
        "TOPICWATCH_API_KEYS": "test-key",
        "TOPICWATCH_READ_BLOCK_MS": "50",
    }
    shares = {"a": "0", "b": "1,2"}
    procs = {
        "ingest": ServiceProcess("ingest", base, tmp_path / "ingest.log"),
        **{
            f"{service}-{name}": ServiceProcess(
                service,
                {**base, "TOPICWATCH_CONSUME_PARTITIONS": share},
                tmp_path / f"{service}-{name}.log",
            )
            for service in ("classify", "notify")
            for name, share in shares.items()
        },
    }
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            proc.wait_healthy()
        articles = one_article_per_partition(seed_article, names)
        with Receiver() as receiver:
            subs = [
                httpx.post(
                    f"{procs['notify-a'].url}/v1/subscriptions",
                    json={"name": f"desk {i}", "topics": TOPICS, "webhook_url": receiver.url},
                    headers=AUTH,
                ).json()
                for i in range(3)
            ]
            for article in articles.values():
                posted = httpx.post(
                    f"{procs['ingest'].url}/v1/articles", json=article, headers=AUTH
                )
                assert posted.json()["articles"][0]["status"] == "accepted"
            receiver.wait_for(9, timeout=30.0)
            time.sleep(1.0)
            pairs = {
                (
                    json.loads(r.body)["data"]["subscription_id"],
                    json.loads(r.body)["data"]["article"]["id"],
                )
                for r in receiver.requests
            }
            assert len(receiver.requests) == 9 and len(pairs) == 9
        assert {s["id"] for s in subs} == {sid for sid, _ in pairs}
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            for service, group, stream_of in (
                ("classify", "classify", names.accepted_in),
                ("notify", "notify", names.classified_in),
            ):
                for name, share in shares.items():
                    pid = procs[f"{service}-{name}"].process.pid  # type: ignore[union-attr]
                    reads = {
                        p
                        for p in range(3)
                        if any(
                            c["name"].endswith(f"-{pid}")
                            for c in client.xinfo_consumers(stream_of(p), group)
                        )
                    }
                    assert reads == {int(p) for p in share.split(",")}, (service, name)
        finally:
            client.close()
    finally:
        for proc in procs.values():
            proc.stop()


def test_cluster_mode_on_a_single_server_and_the_reverse_are_refused(
    redis_url: str, redis_cluster_url: str, tmp_path: Path
) -> None:
    """A configuration error, named: not an outage to wait for."""
    done = serve_once(
        {"TOPICWATCH_REDIS_URL": redis_url, "TOPICWATCH_REDIS_CLUSTER": "true"}, tmp_path
    )
    assert done.returncode != 0
    assert "TOPICWATCH_REDIS_CLUSTER=true, but" in done.stderr
    assert "is not a cluster node" in done.stderr
    first_node = redis_cluster_url.split(",")[0]
    done = serve_once({"TOPICWATCH_REDIS_URL": first_node}, tmp_path)
    assert done.returncode != 0
    assert "node of a Redis Cluster: set TOPICWATCH_REDIS_CLUSTER=true" in done.stderr


def test_a_cluster_not_up_yet_is_waited_for(tmp_path: Path) -> None:
    """Orchestrators start everything at once: with no node answering yet, a service in
    cluster mode stays up and says what it waits for (503 on /readyz), like on one server."""
    env = {
        "TOPICWATCH_REDIS_URL": f"redis://127.0.0.1:{free_port()},redis://127.0.0.1:{free_port()}",
        "TOPICWATCH_REDIS_CLUSTER": "true",
    }
    proc = ServiceProcess("classify", env, tmp_path / "classify.log").start()
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.process and proc.process.poll() is None:
            try:
                ready = httpx.get(f"{proc.url}/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if "waiting for Redis" in ready.text:
                break
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 503, proc.output()
        assert "waiting for Redis" in ready.text
        time.sleep(1.0)
        assert proc.process is not None and proc.process.poll() is None, proc.output()
    finally:
        proc.stop()


async def test_any_reachable_seed_node_will_do(redis_cluster_url: str) -> None:
    """TOPICWATCH_REDIS_URL may list several nodes: the clients and the broker find the
    cluster through any one that answers (here the first listed is down)."""
    from services.common.connections import broker
    from services.common.settings import Settings

    url = f"redis://127.0.0.1:{free_port()},{redis_cluster_url}"
    client = async_client(url, cluster=True)
    try:
        await client.set("seed-check", "1")
        assert await client.get("seed-check") == b"1"
    finally:
        await client.aclose()
    sync = sync_client(url, cluster=True)
    try:
        assert sync.get("seed-check") == b"1"
    finally:
        sync.close()
    cluster_broker = broker(Settings(redis_url=url, redis_cluster=True))
    try:
        connection = await cluster_broker.connect()
        assert await connection.get("seed-check") == b"1"
    finally:
        await cluster_broker.stop()
