"""``topicwatch chaos``: kill services and restart Redis while articles flow; count everything.

The stack: a private redis-server (append-only on), one ingest, two classify and two notify
processes, a webhook receiver on loopback, and the three harness subscriptions. While N
generated articles (defence stories and general news, re-sends, invalid input) are published
on the ingest stream at a steady rate, a chaos thread SIGKILLs a random service process every
few seconds and starts it again, and the server process itself is stopped and started a few
times (SIGTERM, so the append-only file is complete; see docs/promises.md for a server that
dies harder). Any service process that exits by itself meanwhile is started again and counted,
as a supervisor would.

Then, once everything has drained, the accounting compares the pipe with the same inputs
classified offline (:func:`audit.expect`) against the same subscriptions:

published, accepted, duplicate, rejected, classified, alerts expected, created, delivered,
dead-lettered, **lost** (an expected article, classification or alert that never arrived and
was not dead-lettered with a reason) and **duplicated** (an article accepted twice, or an alert
created twice). A webhook re-sent with the same ``webhook-id`` after a kill is allowed by the
at-least-once promise and counted apart ("redeliveries"); delivered counts distinct alerts.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from services.common.streams import (
    DATA_FIELD,
    GROUP_CLASSIFY,
    GROUP_INGEST,
    GROUP_NOTIFY,
    StreamNames,
)
from services.harness.articles import Item, generate
from services.harness.audit import AUDIT_GROUP, OUTAGE, Auditor, Expected, expect, group_done
from services.harness.soak import SUBSCRIPTIONS, subscribe
from services.harness.stack import ClusterSpec, Receiver, Stack
from services.notify.subscriptions import Subscription, SubscriptionCreate


@dataclass
class ChaosConfig:
    articles: int
    seed: int = 11
    rate: float = 150.0
    """Articles published per second (a steady stream, so the faults hit a pipe in motion)."""
    kill_every: float = 3.0
    """Mean seconds between two SIGKILLs (exponentially distributed)."""
    redis_restarts: int = 2
    redis_down_seconds: float = 2.0
    reclaim_idle_ms: int = 3000
    lease_seconds: float = 8.0
    timeout: float = 900.0
    """Seconds to wait for the pipe to drain after the last article was published."""
    replicas: dict[str, int] = field(
        default_factory=lambda: {"ingest": 1, "classify": 2, "notify": 2}
    )
    cluster: bool = False
    """Run on a local cluster (3 masters, a replica each) in cluster mode; the faults on Redis
    are then master kills (SIGKILL, a replica takes over) instead of restarts."""
    partitions: int = 1
    """``TOPICWATCH_PARTITIONS`` (3 is the natural choice on 3 masters)."""
    master_kills: int = 1
    """Cluster mode: masters SIGKILLed while articles flow (each then started again, and it
    rejoins as a replica)."""
    redis_wait_replicas: int | None = None
    """``TOPICWATCH_REDIS_WAIT_REPLICAS`` for the services: by default 1 on a cluster (every
    master has a replica), 0 on one server."""


@dataclass
class ChaosResult:
    config: dict[str, Any]
    server: str
    seconds: float
    kills: dict[str, int]
    redis_restarts: int
    failovers: list[str]
    """Cluster mode: each master kill, "port -> promoted port, N s"."""
    self_exits: dict[str, int]
    published: int
    entries: int
    accepted: int
    accepted_expected: int
    duplicate: int
    duplicate_expected: int
    rejected: int
    rejected_expected: int
    classified: int
    classified_entries: int
    alerts_expected: int
    created: int
    unexpected: int
    delivered: int
    webhook_requests: int
    redeliveries: int
    dead_lettered: int
    lost: int
    lost_detail: dict[str, int]
    duplicated: int
    drained: bool


class Chaos:
    """The fault injector: SIGKILLs a random replica now and then; revives what exits."""

    def __init__(self, stack: Stack, rng: random.Random, kill_every: float) -> None:
        self.stack = stack
        self.rng = rng
        self.kill_every = kill_every
        self.lock = threading.Lock()  # no kill while Redis restarts, and the reverse
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")

    def start(self) -> Chaos:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        next_kill = time.monotonic() + self.rng.expovariate(1 / self.kill_every)
        while not self._stop.wait(0.2):
            with self.lock:
                self.stack.revive_exited()
                if time.monotonic() < next_kill:
                    continue
                victim = self.rng.choice(self.stack.replicas)
                victim.kill()
            # Down for a moment (as long as a supervisor's restart takes), then back.
            self._stop.wait(self.rng.uniform(0.1, 1.5))
            with self.lock:
                victim.start()
            next_kill = time.monotonic() + self.rng.expovariate(1 / self.kill_every)

    def restart_redis(self, down_seconds: float) -> None:
        with self.lock:
            self.stack.restart_redis(down_seconds)

    def kill_master(self, key: str) -> str:
        """SIGKILL the master holding ``key``, wait for its replica to take over, start the
        dead node again (it rejoins as a replica); what happened, for the report."""
        with self.lock:
            started = time.monotonic()
            dead, promoted = self.stack.kill_master(key)
            took = time.monotonic() - started
            assert self.stack.cluster is not None
            node = next(n for n in self.stack.cluster.nodes if n.port == dead)
            self.stack.cluster.restart(node)
            return f"master :{dead} SIGKILLed -> replica :{promoted} took over in {took:.1f} s"


def publish_batch(client: Any, names: StreamNames, batch: list[Item]) -> None:
    """One MULTI/EXEC of XADDs on the ingest stream. On a cluster, as a producer that must not
    lose what it was told is written: on one connection to the stream's master, followed by
    ``WAIT 1``, and retried (an at-least-once producer; ingest drops the re-sends as
    duplicates) unless the replica has it too — the write a failover cannot take back."""
    fields = [{DATA_FIELD: json.dumps(item.payload), "n": str(item.n)} for item in batch]
    if not isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=True)
        for one in fields:
            pipe.xadd(names.ingest, one)
        pipe.execute()
        return
    node = client.get_node_from_key(names.ingest)
    direct = client.get_redis_connection(node)
    raw = direct.pipeline(transaction=False)  # one connection: WAIT covers these writes
    raw.execute_command("MULTI")
    for one in fields:
        raw.execute_command("XADD", names.ingest, "*", *[x for kv in one.items() for x in kv])
    raw.execute_command("EXEC")
    raw.execute_command("WAIT", 1, 2000)
    try:
        replies = raw.execute()
    except redis.ResponseError as exc:  # MOVED (a failover moved the slot): ask again
        client.nodes_manager.initialize()
        raise redis.ConnectionError(str(exc)) from exc
    if int(replies[-1]) < 1:
        raise redis.TimeoutError("WAIT: no replica acknowledged the batch within 2 s")


def publish_paced(
    stack: Stack,
    names: StreamNames,
    items: list[Item],
    rate: float,
    on_progress: Any,
) -> None:
    """Publish at ``rate`` per second, in small MULTI/EXEC batches, retrying through outages."""
    client = stack.client(socket_timeout=30, socket_connect_timeout=2)
    chunk = max(1, int(rate / 10))
    started = time.monotonic()
    done = 0
    try:
        while done < len(items):
            batch = items[done : done + chunk]
            while True:
                try:
                    publish_batch(client, names, batch)
                    break
                except OUTAGE:
                    time.sleep(0.2)
                    if isinstance(client, RedisCluster):
                        with contextlib.suppress(*OUTAGE):
                            client.nodes_manager.initialize()
            done += len(batch)
            on_progress(done)
            ahead = started + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    finally:
        client.close()


def drained(
    client: redis.Redis,
    names: StreamNames,
    auditor: Auditor,
    receiver: Receiver,
    expected: Expected,
) -> bool:
    pairs = [(names.ingest, GROUP_INGEST), (names.ingest, AUDIT_GROUP)]
    for stream in names.accepted_streams:
        pairs += [(stream, GROUP_CLASSIFY), (stream, AUDIT_GROUP)]
    for stream in names.classified_streams:
        pairs += [(stream, GROUP_NOTIFY), (stream, AUDIT_GROUP)]
    if not all(group_done(client, s, g) for s, g in pairs) or not auditor.caught_up(client):
        return False
    settled = receiver.delivered() | dead_alert_ids(client, names)
    return auditor.alert_ids() <= settled and expected.alerts <= settled


def dead_alert_ids(client: redis.Redis, names: StreamNames) -> set[str]:
    ids = set()
    for stream in names.alerts_dead_streams:
        entries: Any = client.xrange(stream)
        for _entry_id, fields in entries:
            record = json.loads(fields[DATA_FIELD.encode()])
            ids.add(str(record["alert"]["id"]))
    return ids


def run(config: ChaosConfig, *, workdir: Path | None = None, progress: Any = None) -> ChaosResult:
    say = progress or (lambda _msg: None)
    rng = random.Random(config.seed)
    names = StreamNames(
        partitions=config.partitions, tagged=config.cluster or config.partitions > 1
    )
    say(f"generating {config.articles:,} articles...")
    items = generate(config.articles, seed=config.seed)
    with tempfile.TemporaryDirectory(prefix="topicwatch-chaos-") as tmp:
        root = workdir or Path(tmp)
        stack = Stack(
            root,
            replicas=config.replicas,
            settings_env={
                "TOPICWATCH_RECLAIM_IDLE_MS": str(config.reclaim_idle_ms),
                "TOPICWATCH_DELIVERY_LEASE_SECONDS": str(config.lease_seconds),
                "TOPICWATCH_WEBHOOK_TIMEOUT": str(max(1.0, config.lease_seconds / 2)),
                "TOPICWATCH_PARTITIONS": str(config.partitions),
                "TOPICWATCH_REDIS_WAIT_REPLICAS": str(
                    config.redis_wait_replicas
                    if config.redis_wait_replicas is not None
                    else int(config.cluster)
                ),
            },
            cluster=ClusterSpec(partitions=config.partitions) if config.cluster else None,
        )
        receiver = Receiver()
        say(
            "starting a cluster (3 masters, a replica each, append-only) and the services..."
            if config.cluster
            else "starting redis (append-only) and the services..."
        )
        stack.start()
        client = stack.client(socket_timeout=60)
        auditor: Auditor | None = None
        chaos: Chaos | None = None
        try:
            server = _server(client)
            created = subscribe(stack.first("notify").url, receiver.url)
            subscriptions = [
                Subscription.create(
                    SubscriptionCreate(**{**body, "webhook_url": receiver.url}), id=made["id"]
                )
                for body, made in zip(SUBSCRIPTIONS, created, strict=True)
            ]
            say("classifying the same articles offline against the same subscriptions...")
            expected = expect(items, subscriptions)
            auditor = Auditor(stack.redis_url, names, cluster=config.cluster).start()
            redis_faults = config.master_kills if config.cluster else config.redis_restarts
            say(
                f"publishing at {config.rate:g}/s with a SIGKILL every ~{config.kill_every:g}s "
                + (
                    f"and {redis_faults} master kills..."
                    if config.cluster
                    else f"and {redis_faults} Redis restarts..."
                )
            )
            restarts_at = [
                config.articles * (k + 1) // (redis_faults + 1) for k in range(redis_faults)
            ]
            chaos = Chaos(stack, rng, config.kill_every).start()
            started = time.monotonic()
            failovers: list[str] = []
            # The masters to kill in turn: those of the partitions' streams (then the shards').
            victims = [*names.accepted_streams, *names.alerts_streams]

            def on_progress(done: int) -> None:
                while restarts_at and done >= restarts_at[0]:
                    restarts_at.pop(0)
                    assert chaos is not None
                    if config.cluster:
                        key = victims[len(failovers) % len(victims)]
                        say(f"  {done:,} published: SIGKILL the master of {key}")
                        failovers.append(chaos.kill_master(key))
                        say(f"  {failovers[-1]}")
                    else:
                        say(f"  {done:,} published: restarting Redis")
                        chaos.restart_redis(config.redis_down_seconds)

            publish_paced(stack, names, items, config.rate, on_progress)
            say("all published; faults go on for a few more seconds, then the pipe drains...")
            time.sleep(min(10.0, 3 * config.kill_every))
            chaos.stop()
            with chaos.lock:
                stack.revive_exited()
            deadline = time.monotonic() + config.timeout
            is_drained = False
            while time.monotonic() < deadline:
                stack.revive_exited()
                try:
                    if drained(client, names, auditor, receiver, expected):
                        is_drained = True
                        break
                except OUTAGE:
                    pass
                time.sleep(0.5)
            seconds = time.monotonic() - started
            return _account(
                config,
                server,
                seconds,
                stack,
                client,
                names,
                auditor,
                receiver,
                expected,
                items,
                is_drained,
                failovers,
            )
        finally:
            if chaos is not None:
                chaos.stop()
            if auditor is not None:
                auditor.stop()
            client.close()
            receiver.close()
            stack.stop()


def _server(client: redis.Redis) -> str:
    info: Any = client.info("server")
    persistence: Any = client.info("persistence")
    product = "valkey" if "valkey_version" in info else "redis"
    version = info.get("valkey_version") or info.get("redis_version")
    aof = "appendonly yes" if int(persistence.get("aof_enabled", 0)) else "appendonly no"
    return f"{product}-server {version} ({aof})"


def _account(
    config: ChaosConfig,
    server: str,
    seconds: float,
    stack: Stack,
    client: redis.Redis,
    names: StreamNames,
    auditor: Auditor,
    receiver: Receiver,
    expected: Expected,
    items: list[Item],
    is_drained: bool,
    failovers: list[str],
) -> ChaosResult:
    auditor.stop()
    by_n = {item.n: item for item in items}
    entries = sum(auditor.inputs.values())
    # What ingest must make of every entry: an input published twice (a MULTI/EXEC whose
    # reply was lost to a Redis restart) is, the second time, a duplicate or a rejection.
    rejected_expected = sum(
        count for n, count in auditor.inputs.items() if expected.outcome.get(n) == "rejected"
    )
    accepted_ids = set(auditor.accepted)
    rejected_entries: Any = client.xrange(names.rejected)
    rejections = {
        json.loads(fields[DATA_FIELD.encode()]).get("source_entry_id")
        for _id, fields in rejected_entries
    }
    rejected = len(rejections)
    duplicate = entries - len(accepted_ids) - rejected
    duplicate_expected = entries - len(expected.accepted) - rejected_expected
    dead_alerts = dead_alert_ids(client, names)
    dead_letters = int(client.xlen(names.dead_letters))
    delivered = receiver.delivered()
    created = set(auditor.alerts)
    lost_detail = {
        "inputs never on the ingest stream": sum(1 for n in by_n if n not in auditor.inputs),
        "articles never accepted": len(expected.accepted - accepted_ids),
        "accepted, never classified": len(accepted_ids - set(auditor.classified)),
        "alerts never created": len(expected.alerts - created - dead_alerts),
        "alerts created, never delivered nor dead-lettered": len(
            (created | expected.alerts) - delivered - dead_alerts
        )
        - len(expected.alerts - created - dead_alerts),
    }
    duplicated = sum(c - 1 for c in auditor.accepted.values()) + sum(
        c - 1 for c in auditor.alerts.values()
    )
    kills: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    for replica in stack.replicas:
        kills[replica.service] += replica.kills
        exits[replica.service] += replica.exits
    return ChaosResult(
        config=asdict(config),
        server=server,
        seconds=seconds,
        kills=dict(kills),
        redis_restarts=stack.redis_restarts,
        failovers=failovers,
        self_exits=dict(exits),
        published=len(auditor.inputs),
        entries=entries,
        accepted=len(accepted_ids),
        accepted_expected=len(expected.accepted),
        duplicate=duplicate,
        duplicate_expected=duplicate_expected,
        rejected=rejected,
        rejected_expected=rejected_expected,
        classified=len(auditor.classified),
        classified_entries=sum(auditor.classified.values()),
        alerts_expected=len(expected.alerts),
        created=len(created),
        unexpected=len(created - expected.alerts),
        delivered=len(delivered & (created | expected.alerts)),
        webhook_requests=receiver.requests,
        redeliveries=receiver.redeliveries(),
        dead_lettered=dead_letters + len(dead_alerts),
        lost=sum(lost_detail.values()),
        lost_detail=lost_detail,
        duplicated=duplicated,
        drained=is_drained,
    )


def report(r: ChaosResult) -> str:
    c = r.config
    replicas = ", ".join(f"{n} {s}" for s, n in c["replicas"].items())
    kills = ", ".join(f"{s} {n}" for s, n in sorted(r.kills.items()))
    exits = sum(r.self_exits.values())
    rows = [
        ("published", r.published, f"inputs; {r.entries:,} ingest entries"),
        ("accepted", r.accepted, f"expected {r.accepted_expected:,}"),
        ("duplicate", r.duplicate, f"expected {r.duplicate_expected:,}"),
        ("rejected", r.rejected, f"expected {r.rejected_expected:,}"),
        (
            "classified",
            r.classified,
            f"distinct articles; {r.classified_entries - r.classified:,} written again after "
            "a kill (at-least-once, harmless: alerts are created once)",
        ),
        ("alerts expected", r.alerts_expected, "offline: same articles, same subscriptions"),
        ("created", r.created, f"{r.unexpected} not expected offline"),
        (
            "delivered",
            r.delivered,
            f"distinct alerts; {r.webhook_requests:,} webhook requests, {r.redeliveries:,} "
            "re-sent with the same webhook-id",
        ),
        ("dead-lettered", r.dead_lettered, "with a reason"),
        ("lost", r.lost, ", ".join(f"{k} {v}" for k, v in r.lost_detail.items() if v)),
        ("duplicated", r.duplicated, "articles accepted twice + alerts created twice"),
    ]
    if c.get("cluster"):
        topology = (
            f"a cluster of 3 masters with a replica each, {c['partitions']} partitions; {r.server}"
        )
        redis_faults = f"{len(r.failovers)} master SIGKILLs (a replica took over each)"
    else:
        topology = r.server
        redis_faults = (
            f"{r.redis_restarts} Redis restarts (server process stopped and started, "
            f"{c['redis_down_seconds']:g} s down)"
        )
    lines = [
        f"chaos: {c['articles']:,} articles at {c['rate']:g}/s through {replicas}; "
        f"{topology}; {r.seconds:,.0f} s",
        f"faults: {sum(r.kills.values())} SIGKILLs ({kills}), {redis_faults}, "
        f"{exits} service exits restarted by the harness as a supervisor "
        f"({', '.join(f'{s} {n}' for s, n in sorted(r.self_exits.items()))})",
        *[f"  {failover}" for failover in r.failovers],
        "",
    ]
    lines += [f"{name:<16} {value:>8,}  {note}".rstrip() for name, value, note in rows]
    if not r.drained:
        lines.append(f"NOT DRAINED within {c['timeout']:g} s: the figures above are partial")
    return "\n".join(lines)
