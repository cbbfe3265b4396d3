"""``topicwatch soak``: many articles through the pipe with default settings; Redis stays bounded.

One ingest, classify and notify process on a private redis-server (append-only on), every
setting at its default, three webhook subscriptions to a receiver on loopback. The soak
publishes N articles (the harness mix: defence stories and general news, some re-sends, some
invalid), waits until the pipe has drained and retention has run, and reports ``used_memory``
and every stream's and key family's size before and after.

It proves:

* **bounded**: every key belongs to a known family (:data:`audit.families`), every stream is
  within its retention or window, every per-article key carries a TTL;
* **nothing a consumer group still needs was trimmed**: an audit consumer group of its own on
  the ingest, accepted and classified streams saw every entry, every accepted article was
  classified, and every alert created was delivered.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from services.common.connections import sync_client
from services.common.settings import Settings
from services.common.streams import GROUP_CLASSIFY, GROUP_INGEST, GROUP_NOTIFY, StreamNames
from services.harness.articles import generate
from services.harness.audit import Auditor, FamilyStats, families, group_done, keyspace
from services.harness.stack import Receiver, Stack

#: Subscriptions of both harnesses: desks a newsroom would run, on the packaged taxonomy.
SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"name": "air defence desk", "topics": ["air-defence-procurement"]},
    {"name": "arms and sanctions", "topics": ["arms-trade", "sanctions"]},
    {"name": "missiles and nuclear", "topics": ["missile-test", "nuclear"]},
]


def subscribe(notify_url: str, receiver_url: str) -> list[dict[str, Any]]:
    """Create the harness subscriptions through notify's API; returns what it answered."""
    created = []
    for body in SUBSCRIPTIONS:
        response = httpx.post(
            f"{notify_url}/v1/subscriptions", json={**body, "webhook_url": receiver_url}
        )
        response.raise_for_status()
        created.append(response.json())
    return created


def publish(
    client: redis.Redis,
    names: StreamNames,
    items: list[Any],
    auditor: Auditor | None = None,
    *,
    batch: int = 500,
    max_ahead: int = 5000,
) -> None:
    """XADD every input on the public ingest stream (field ``n`` names the input), at most
    ``max_ahead`` inputs ahead of what has been classified: a steady flow, as in production,
    rather than one huge backlog."""
    for start in range(0, len(items), batch):
        while auditor is not None and start - auditor.classified_upto > max_ahead:
            time.sleep(0.2)
        pipe = client.pipeline(transaction=False)
        for item in items[start : start + batch]:
            pipe.xadd(names.ingest, {"__data__": json.dumps(item.payload), "n": str(item.n)})
        pipe.execute()


def streams_of(names: StreamNames) -> list[str]:
    return [
        names.ingest,
        names.accepted,
        names.classified,
        names.rejected,
        names.alerts,
        names.alerts_dead,
        names.dead_letters,
    ]


@dataclass
class Snapshot:
    used_memory: int
    streams: dict[str, int]
    families: dict[str, FamilyStats]
    unknown: list[str]
    consumers: dict[str, int] = field(default_factory=dict)


def snapshot(client: redis.Redis, names: StreamNames) -> Snapshot:
    stats, unknown = keyspace(client, names)
    streams = {}
    consumers = {}
    for stream in streams_of(names):
        streams[stream] = int(client.xlen(stream)) if client.exists(stream) else 0
    for stream, group in (
        (names.ingest, GROUP_INGEST),
        (names.accepted, GROUP_CLASSIFY),
        (names.classified, GROUP_NOTIFY),
    ):
        try:
            consumers[f"{stream} / {group}"] = len(client.xinfo_consumers(stream, group))
        except redis.ResponseError:
            consumers[f"{stream} / {group}"] = 0
    memory = int(client.info("memory")["used_memory"])
    return Snapshot(memory, streams, stats, unknown, consumers)


@dataclass
class SoakResult:
    articles: int
    seconds: float
    before: Snapshot
    after: Snapshot
    published: int
    accepted: int
    duplicate_or_rejected: int
    classified: int
    alerts_created: int
    alerts_delivered: int
    violations: list[str]
    settings: Settings


def wait_drained(
    client: redis.Redis,
    names: StreamNames,
    auditor: Auditor,
    receiver: Receiver,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    pairs = [
        (names.ingest, GROUP_INGEST),
        (names.accepted, GROUP_CLASSIFY),
        (names.classified, GROUP_NOTIFY),
        (names.ingest, "harness-audit"),
        (names.accepted, "harness-audit"),
        (names.classified, "harness-audit"),
    ]
    while time.monotonic() < deadline:
        try:
            if all(group_done(client, s, g) for s, g in pairs) and auditor.caught_up(client):
                if auditor.alert_ids() <= receiver.delivered():
                    return
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the pipe did not drain within {timeout:g}s")


def check_bounds(snap: Snapshot, settings: Settings, subscriptions: int, feeds: int) -> list[str]:
    """Every way ``snap`` could break a bound, as sentences (empty: bounded)."""
    names = StreamNames(settings.stream_prefix)
    table = {f.name: f for f in families(names)}
    slack = 100  # approximate trims remove whole macro-nodes (100 entries) only
    problems = [f"key of no known family: {key}" for key in snap.unknown[:20]]
    for stream in (names.ingest, names.accepted, names.classified):
        if snap.streams[stream] > settings.stream_retention + slack:
            problems.append(
                f"{stream}: {snap.streams[stream]} entries after draining, retention keeps "
                f"{settings.stream_retention}"
            )
    windows = {
        names.alerts: settings.alerts_window_max,
        names.alerts_dead: settings.dead_letters_window_max,
        names.dead_letters: settings.dead_letters_window_max,
        names.rejected: settings.dead_letters_window_max,
    }
    for stream, cap in windows.items():
        if snap.streams[stream] > cap + slack:
            problems.append(f"{stream}: {snap.streams[stream]} entries, window {cap}")
    for name, stats in snap.families.items():
        family = table[name]
        if family.kind == "ttl" and stats.without_ttl:
            problems.append(f"{name}: {stats.without_ttl} keys without a TTL")
        if family.kind == "per-subscription" and stats.keys > max(subscriptions, 1):
            problems.append(f"{name}: {stats.keys} keys for {subscriptions} subscriptions")
        if family.kind == "per-feed" and stats.keys > feeds:
            problems.append(f"{name}: {stats.keys} keys for {feeds} feeds")
        if name == "queue:*" and stats.entries:
            problems.append(f"{name}: {stats.entries} alerts still queued after draining")
    return problems


def run(
    articles: int,
    *,
    seed: int = 7,
    timeout: float = 1800.0,
    workdir: Path | None = None,
    progress: Any = None,
) -> SoakResult:
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="topicwatch-soak-") as tmp:
        root = workdir or Path(tmp)
        stack = Stack(root)
        receiver = Receiver()
        names = StreamNames()
        settings = Settings()  # what the services run with: every default
        say("starting redis and the services (default settings)...")
        stack.start()
        client = sync_client(stack.redis_url, socket_timeout=60)
        auditor = None
        try:
            created = subscribe(stack.first("notify").url, receiver.url)
            auditor = Auditor(stack.redis_url, names).start()
            time.sleep(2.5)  # one watchdog round: gauges and windows have run once
            before = snapshot(client, names)
            items = generate(articles, seed=seed, distinct_stories=False)
            say(f"publishing {articles:,} articles...")
            started = time.monotonic()
            publish(client, names, items, auditor)
            say("waiting for the pipe to drain...")
            wait_drained(client, names, auditor, receiver, timeout)
            seconds = time.monotonic() - started
            # Retention runs every 2 s in each service, at most 10,000 entries a step.
            deadline = time.monotonic() + 60 + articles / 2000
            while time.monotonic() < deadline:
                lengths = [client.xlen(s) for s in streams_of(names)[:3]]
                if max(lengths) <= settings.stream_retention + 100:
                    break
                time.sleep(1.0)
            time.sleep(2.5)
            auditor.stop()
            after = snapshot(client, names)
            violations = check_bounds(after, settings, len(created), feeds=0)
            published = len(auditor.inputs)
            if published != articles:
                violations.append(f"the audit group saw {published} of {articles} inputs")
            missing = set(auditor.accepted) - set(auditor.classified)
            if missing:
                violations.append(f"{len(missing)} accepted articles never classified")
            undelivered = set(auditor.alerts) - receiver.delivered()
            if undelivered:
                violations.append(f"{len(undelivered)} alerts created but not delivered")
            return SoakResult(
                articles=articles,
                seconds=seconds,
                before=before,
                after=after,
                published=published,
                accepted=len(auditor.accepted),
                duplicate_or_rejected=articles - len(auditor.accepted),
                classified=len(auditor.classified),
                alerts_created=len(auditor.alerts),
                alerts_delivered=len(receiver.delivered() & set(auditor.alerts)),
                violations=violations,
                settings=settings,
            )
        finally:
            if auditor is not None:
                auditor.stop()
            client.close()
            receiver.close()
            stack.stop()


def _mb(value: int) -> str:
    return f"{value / 1_048_576:,.1f} MB"


def report(result: SoakResult) -> str:
    b, a = result.before, result.after
    s = result.settings
    lines = [
        f"soak: {result.articles:,} articles through ingest -> classify -> notify in "
        f"{result.seconds:,.0f} s, default settings (stream_retention {s.stream_retention}, "
        f"alerts window {s.alerts_window_days:g} d / {s.alerts_window_max:,}, dead letters "
        f"{s.dead_letters_window_days:g} d / {s.dead_letters_window_max:,}, dedup window "
        f"{s.dedup_window_days:g} d)",
        f"inputs seen by the audit group: {result.published:,}; accepted {result.accepted:,}, "
        f"duplicate or rejected {result.duplicate_or_rejected:,}; classified "
        f"{result.classified:,}; alerts created {result.alerts_created:,}, delivered "
        f"{result.alerts_delivered:,}",
        "",
        f"used_memory: before {_mb(b.used_memory)}, after {_mb(a.used_memory)}",
        "",
        f"{'stream':<34} {'before':>9} {'after':>9}",
    ]
    for stream in a.streams:
        lines.append(f"{stream:<34} {b.streams[stream]:>9,} {a.streams[stream]:>9,}")
    lines += ["", f"{'consumers in group':<50} {'before':>6} {'after':>6}"]
    for name in a.consumers:
        lines.append(f"{name:<50} {b.consumers.get(name, 0):>6} {a.consumers[name]:>6}")
    table = {f.name: f for f in families(StreamNames(s.stream_prefix))}
    lines += [
        "",
        f"{'key family':<24} {'keys':>8} {'entries':>9} {'memory':>10} {'no TTL':>7}  bound",
    ]
    for name, stats in a.families.items():
        if not stats.keys and not b.families[name].keys:
            continue
        lines.append(
            f"{name:<24} {stats.keys:>8,} {stats.entries:>9,} {_mb(stats.bytes):>10} "
            f"{stats.without_ttl:>7,}  {table[name].bound}"
        )
    lines.append("")
    if result.violations:
        lines.append("NOT BOUNDED:")
        lines += [f"  - {v}" for v in result.violations]
    else:
        lines.append(
            "bounded: every key in a known family, streams within retention and windows, "
            "every per-article key with a TTL; nothing a group needed was trimmed"
        )
    return "\n".join(lines)
