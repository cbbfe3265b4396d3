"""What the harnesses compare: the offline expectation, the audit readers, the key families.

* :func:`expect` runs the very code the services run — ingest's validation, normalisation and
  de-duplication rules, the classifier with the packaged taxonomy, the percolator with the
  same subscriptions — over the generated inputs, in this process, without Redis: the alerts
  the pipe must deliver.
* :class:`Auditor` reads the pipe's streams while it runs, with consumer groups of its own
  (``harness-audit``). Retention trims only what *every* group is done with, so these groups
  also prove that guarantee: an entry retention removed before the auditor read it would show
  up as missing.
* :data:`FAMILIES` lists every key family topicwatch writes, with its bound; the soak fails on
  a key that belongs to none of them (a new, unaudited key family).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from redis.exceptions import ClusterError

from services.classify.classifier import load_classifier
from services.common.connections import sync_client
from services.common.models import ClassifiedArticle, alert_id_for
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, StreamNames, as_text
from services.harness.articles import Item
from services.ingest.normalize import NormalizationError, normalize_submission
from services.ingest.pipeline import IngestMetrics, IngestPipeline, Outcome
from services.notify.percolator import Percolator
from services.notify.subscriptions import Subscription

AUDIT_GROUP = "harness-audit"
#: What a client sees while a server restarts or a cluster fails over (the harness retries).
OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ClusterError)


@dataclass
class Expected:
    """Per input index: "accepted", "duplicate" or "rejected"; and the alerts due."""

    outcome: dict[int, str] = field(default_factory=dict)
    article_of: dict[int, str] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    alerts: set[str] = field(default_factory=set)

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcome.values() if value == outcome)


def expect(items: Sequence[Item], subscriptions: Sequence[Subscription]) -> Expected:
    """Classify the inputs offline against the subscriptions, as the pipe will."""
    from services.common.connections import async_client

    unused = "redis://127.0.0.1:1/0"
    settings = Settings(redis_url=unused)
    # The pipeline object is used for its validation only; its client never connects.
    pipeline = IngestPipeline(
        async_client(unused),
        StreamNames(),
        settings,
        IngestMetrics(CollectorRegistry()),
    )
    classifier = load_classifier(settings.taxonomy_path)
    percolator = Percolator()
    percolator.rebuild(subscriptions)
    expected = Expected()
    seen: set[str] = set()
    for item in items:
        checked = pipeline.validate(json.loads(json.dumps(item.payload)))
        if isinstance(checked, Outcome):
            expected.outcome[item.n] = "rejected"
            continue
        try:
            article = normalize_submission(checked, received_via="stream")
        except NormalizationError:
            expected.outcome[item.n] = "rejected"
            continue
        keys = {f"hash:{article.content_hash}"}
        if article.canonical_url:
            keys.add(f"url:{article.canonical_url}")
        expected.article_of[item.n] = article.id
        if keys & seen:
            expected.outcome[item.n] = "duplicate"
            continue
        seen |= keys
        expected.outcome[item.n] = "accepted"
        expected.accepted.add(article.id)
        result = classifier.classify(article.title, article.body)
        classified = ClassifiedArticle(
            article=article,
            topics=result.topics,
            entities=result.entities,
            taxonomy_version=result.taxonomy_version,
        )
        for subscription in percolator.match(classified):
            expected.alerts.add(alert_id_for(subscription.id, article.id))
    return expected


class Auditor:
    """Reads ingest, accepted and classified (own group) and alerts (plain XREAD) while the
    pipe runs, surviving Redis restarts and failovers; counts what it saw by input, article
    and alert id. With partitions it reads every partition's streams and every shard's alerts,
    one stream per command (in a cluster each lives in its own slot)."""

    def __init__(self, url: str, names: StreamNames, *, cluster: bool = False) -> None:
        # Generous timeouts: a loaded Redis (a large backlog) may answer slowly.
        self.client = sync_client(url, cluster=cluster, socket_timeout=60, socket_connect_timeout=5)
        self.names = names
        #: Every stream the audit group reads, and what it holds.
        self.kind_of: dict[str, str] = {
            names.ingest: "ingest",
            **dict.fromkeys(names.accepted_streams, "accepted"),
            **dict.fromkeys(names.classified_streams, "classified"),
        }
        self.inputs: Counter[int] = Counter()  # ingest entries per input index ("n" field)
        self.accepted: Counter[str] = Counter()  # accepted entries per article id
        self.classified: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()  # alerts stream entries per alert id
        #: The highest input number among classified articles (their URLs end with it): how
        #: far the pipe has got, for a publisher that must not run too far ahead.
        self.classified_upto = -1
        self.lock = threading.Lock()
        self._alerts_from = dict.fromkeys(names.alerts_streams, "0-0")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="auditor")
        self.errors = 0

    def create_groups(self) -> None:
        for stream in self.kind_of:
            try:
                self.client.xgroup_create(stream, AUDIT_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def start(self) -> Auditor:
        self.create_groups()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the reading thread, then read what is left (retrying through outages)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(90)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if not self.step():
                    break
            except OUTAGE:
                time.sleep(0.5)
        self.client.close()

    def alert_ids(self) -> set[str]:
        with self.lock:
            return set(self.alerts)

    def caught_up(self, client: redis.Redis) -> bool:
        """Every alerts stream has been read to its end (the groups are checked apart)."""
        for stream in self._alerts_from:
            try:
                info: Any = client.xinfo_stream(stream)
            except redis.ResponseError:
                continue
            with self.lock:
                if _id(self._alerts_from[stream]) < _id(info["last-generated-id"]):
                    return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.step():
                    time.sleep(0.1)
            except OUTAGE:
                self.errors += 1
                time.sleep(0.5)
            except redis.ResponseError as exc:  # NOGROUP after a restart without data
                self.errors += 1
                if "NOGROUP" in str(exc):
                    self.create_groups()
                time.sleep(0.5)

    def step(self) -> int:
        """One read of every stream; returns the entries seen."""
        seen = 0
        for stream in self.kind_of:
            reply: Any = self.client.xreadgroup(AUDIT_GROUP, "auditor", {stream: ">"}, count=1000)
            for _stream, entries in reply or []:
                ids = []
                with self.lock:
                    for entry_id, fields in entries:
                        ids.append(entry_id)
                        self._count(stream, fields)
                if ids:
                    self.client.xack(stream, AUDIT_GROUP, *ids)
                    seen += len(ids)
        for stream, start in list(self._alerts_from.items()):
            alerts: Any = self.client.xread({stream: start}, count=1000)
            with self.lock:
                for _stream, entries in alerts or []:
                    for entry_id, fields in entries:
                        self._alerts_from[stream] = as_text(entry_id)
                        data = json.loads(fields[DATA_FIELD.encode()])
                        self.alerts[str(data["id"])] += 1
                        seen += 1
        return seen

    def _count(self, stream: str, fields: dict[bytes, bytes]) -> None:
        kind = self.kind_of[stream]
        if kind == "ingest":
            self.inputs[int(fields.get(b"n", b"-1"))] += 1
            return
        data = json.loads(fields[DATA_FIELD.encode()])
        if kind == "accepted":
            self.accepted[str(data["id"])] += 1
        else:
            article = data["article"]
            self.classified[str(article["id"])] += 1
            tail = str(article.get("url") or "").rsplit("/", 1)[-1]
            if tail.isdigit():
                self.classified_upto = max(self.classified_upto, int(tail))


def group_done(client: redis.Redis, stream: str, group: str) -> bool:
    """The group has read every entry of ``stream`` and acknowledged all it read."""
    try:
        info: Any = client.xinfo_stream(stream)
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:
        return True  # no such stream: nothing to do
    last = as_text(info["last-generated-id"])
    for entry in groups:
        if as_text(entry["name"]) == group:
            return int(entry["pending"]) == 0 and _id(entry["last-delivered-id"]) >= _id(last)
    return False


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = as_text(value).partition("-")
    return int(ms or 0), int(seq or 0)


# --- key families ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Family:
    """One kind of key topicwatch writes and what keeps it bounded."""

    name: str
    pattern: str
    kind: str
    """"retention", "window", "ttl", "capped" (bounded by count), "per-subscription",
    "per-feed" or "one"."""
    bound: str


def families(names: StreamNames) -> list[Family]:
    """Every key family, most specific pattern first (``{p}`` is the stream prefix)."""
    prefix = re.escape(names.prefix)
    part = r"[^:]+"  # one ':'-free part of a key name

    def family(name: str, kind: str, bound: str, pattern: str | None = None) -> Family:
        """``pattern`` (after the prefix) is ``name`` with each ``*`` one key part, unless given."""
        body = pattern if pattern is not None else re.escape(name).replace(r"\*", part)
        return Family(name, f"{prefix}:{body}", kind, bound)

    consumed = "stream_retention newest consumed entries (default 1,000) + unconsumed"
    dead_window = "dead_letters_window_days (30 d) / _max (100,000)"
    return [
        family("articles:ingest", "retention", consumed),
        family("articles:accepted", "retention", "as ingest"),
        family("articles:classified", "retention", "as ingest"),
        family("articles:rejected", "window", dead_window),
        family("alerts", "window", "alerts_window_days (30 d) / alerts_window_max (1,000,000)"),
        family("alerts:dead", "window", dead_window),
        family("dead-letters", "window", dead_window),
        family("seen:hash|url:*", "ttl", "TTL dedup_window_days (90 d)", f"seen:(hash|url):{part}"),
        family("alert:*:pos", "ttl", "TTL 90 d"),
        family("alert:*:attempts", "ttl", "TTL 90 d"),
        family("alert:*:dead", "ttl", "TTL 90 d"),
        family("alert:*", "ttl", "TTL 90 d (alert-once)"),
        family("story:*:*", "ttl", "TTL 90 d"),
        family(
            "neardup:*",
            "ttl",
            "TTL 3 d (band lists also capped at 16 ids)",
            f"neardup:(of|sig|band:[0-9]+):{part}",
        ),
        family("ratelimit:*:*", "ttl", "TTL 2x the window"),
        family("feeds:lock:*", "ttl", "TTL one poll interval"),
        family(
            "feeds:seen:*",
            "per-feed",
            "feed_seen_days (30 d) since last listed / feed_seen_max (10,000) per feed",
        ),
        family("feeds", "one", "one field per registered feed"),
        family(
            "subscription:*:alerts", "per-subscription", "stream, MAXLEN ~10,000 per subscription"
        ),
        family("subscription:*", "per-subscription", "one per subscription"),
        family(
            "queue:*",
            "per-subscription",
            "undelivered alerts only (drained by delivery; dead-lettered after the retry "
            "schedule, about 3 days)",
        ),
        family("inflight:*", "per-subscription", "one notification per subscription"),
        family("subscriptions:changes", "capped", "stream, MAXLEN 10,000 (exact)"),
        family("subscriptions:version", "one", "a counter"),
        family("subscriptions", "per-subscription", "sorted set, one member per subscription"),
        family(
            "delivery:due", "per-subscription", "sorted set, one member per subscription with work"
        ),
        family("taxonomy", "one", "one key"),
        family("layout", "one", "one key: the partition count (layout.py)"),
    ]


def family_of(key: str, table: Sequence[Family]) -> Family | None:
    for family in table:
        if re.fullmatch(family.pattern, key):
            return family
    return None


@dataclass
class FamilyStats:
    keys: int = 0
    entries: int = 0
    """Stream entries, list/set/zset members, hash fields (0 for strings)."""
    bytes: int = 0
    without_ttl: int = 0
    max_ttl: int = 0


def keyspace(client: redis.Redis, names: StreamNames) -> tuple[dict[str, FamilyStats], list[str]]:
    """Every key under the prefix, by family: count, members, bytes (MEMORY USAGE), TTLs.
    Returns the stats and the keys that belong to no known family."""
    table = families(names)
    stats: dict[str, FamilyStats] = {f.name: FamilyStats() for f in table}
    unknown: list[str] = []
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.ttl(key)
            pipe.memory_usage(key, samples=0)
        replies = pipe.execute()
        sizes = client.pipeline(transaction=False)
        kinds = []
        for i, key in enumerate(batch):
            kind = as_text(replies[3 * i])
            kinds.append(kind)
            size_of = {
                "stream": sizes.xlen,
                "list": sizes.llen,
                "set": sizes.scard,
                "zset": sizes.zcard,
                "hash": sizes.hlen,
            }.get(kind)
            if size_of is not None:
                size_of(key)
            else:
                sizes.exists(key)
        counts = sizes.execute()
        for i, key in enumerate(batch):
            family = family_of(key, table)
            if family is None:
                unknown.append(key)
                continue
            s = stats[family.name]
            s.keys += 1
            s.entries += int(counts[i]) if kinds[i] != "string" else 0
            ttl = int(replies[3 * i + 1])
            if ttl < 0:
                s.without_ttl += 1
            s.max_ttl = max(s.max_ttl, ttl)
            s.bytes += int(replies[3 * i + 2] or 0)
        batch.clear()

    for raw in client.scan_iter(match=f"{names.prefix}:*", count=1000):
        batch.append(as_text(raw))
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return stats, unknown
