"""``topicwatch bench pipeline``: the whole pipe against the transport it runs on (issue 10).

One command starts a private Redis, ingest, classify and notify as separate processes
(:class:`services.harness.stack.Stack`) and a fast webhook receiver in a process of its own
(:mod:`services.bench.receiver`), all on loopback, and prints in one run:

1. **relay**: the bare transport, entries/s through three consumer groups by raw redis-py
   (XADD, XREADGROUP, XACK, no work) on the same Redis: the baseline every other figure is
   read against, because the machine is shared and noisy;
2. **end to end**: articles/s of the realistic stream (:mod:`services.bench.stream`: ~10 %
   defence stories, 1-10 KB bodies) with 1,000 query subscriptions, from the first XADD on
   the ingest stream until every consumer group of the three streams has read and
   acknowledged everything, and its ratio to (1);
3. **fan-out**: signed webhook deliveries/s, N subscriptions x M matching articles written
   straight to the classified stream, with one and then two notify processes;
4. **latency**: XADD -> first webhook p50/p95/p99 at fixed rates of the realistic stream
   (100, 500, 1,000 articles/s), and the p99 of the services' HTTP endpoints meanwhile;
5. **peak RSS** of every process (the kernel's high-water mark).

Every phase also reports the CPU of each process (100 % = one core), so that the load
generator (this process) and the receiver are visibly not the limit, and the load average.
``--quick`` runs every figure at a small size (well under a minute); ``--json PATH`` writes the
figures the table shows. Figures are printed, never asserted: tests check only their shape.

Each figure is one function taking the running :class:`Bench`, so a variant (another
topology, ``--cluster``) adds a figure or a way to start the stack without touching the others.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from services.bench.args import positive_ints
from services.bench.procstat import CpuMeter, peak_rss_mb
from services.bench.receiver import ReceiverProcess
from services.bench.report import (
    fmt,
    latency_summary,
    machine,
    markdown_table,
    table,
    write_json,
)
from services.bench.stream import RealisticStream, StreamArticle, subscriptions
from services.common.models import Article, ClassifiedArticle, TopicTag
from services.common.streams import DATA_FIELD, StreamNames, as_text, encode
from services.harness.articles import FILLER
from services.harness.stack import ClusterSpec, Replica, Stack

# --- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    relay_entries: int = 20_000
    e2e_articles: int = 5_000
    query_subscriptions: int = 1_000
    fanout_subscriptions: int = 500
    fanout_articles: int = 20
    rates: tuple[int, ...] = (100, 500, 1_000)
    rate_seconds: float = 10.0
    drain_timeout: float = 300.0


FULL = Sizes()
QUICK = Sizes(
    relay_entries=2_000,
    e2e_articles=300,
    query_subscriptions=100,
    fanout_subscriptions=50,
    fanout_articles=10,
    rate_seconds=1.0,
    drain_timeout=60.0,
)

#: Targets of issue 10 (2 cores, everything on the machine).
TARGET_FANOUT_PER_S = 2_500
TARGET_FANOUT_SCALING = 1.7
TARGET_E2E_RATIO = 0.25
TARGET_P99_MS = 50.0
TARGET_RSS_MB = 200.0
TARGET_LATENCY_RATE = 500

#: The score of the fan-out articles' topic: under the 0.9 floor some stored queries set, so
#: only the fan-out subscriptions match them.
FANOUT_SCORE = 0.85
FANOUT_TOPIC = "air-defence-procurement"


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"... {time.monotonic() - _STARTED:5.1f}s {message}", file=sys.stderr, flush=True)


# --- the running stack -------------------------------------------------------------------------


class Bench:
    """The stack, the receiver and a Redis client for one run; what every figure needs."""

    def __init__(
        self,
        sizes: Sizes,
        workdir: Path,
        *,
        cluster: ClusterSpec | None = None,
        replicas: dict[str, int] | None = None,
    ) -> None:
        self.sizes = sizes
        self.stack = Stack(
            workdir,
            replicas=replicas,
            settings_env={"TOPICWATCH_LOG_LEVEL": "WARNING"},
            cluster=cluster,
        )
        self.receiver: ReceiverProcess | None = None
        self.names = (
            StreamNames(partitions=cluster.partitions, tagged=True) if cluster else StreamNames()
        )
        self.stream = RealisticStream()
        self._client: redis.Redis | None = None
        self._http: httpx.Client | None = None

    def start(self) -> Bench:
        self.receiver = ReceiverProcess()
        self.stack.start()
        self.receiver.wait_ready()
        self._client = self.stack.client()
        self._http = httpx.Client(timeout=30)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._client is not None:
            self._client.close()
        if self.receiver is not None:
            self.receiver.close()
        self.stack.stop()

    @property
    def client(self) -> redis.Redis:
        assert self._client is not None, "start() first"
        return self._client

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None, "start() first"
        return self._http

    @property
    def recv(self) -> ReceiverProcess:
        assert self.receiver is not None, "start() first"
        return self.receiver

    def replicas(self, service: str | None = None) -> list[Replica]:
        return [r for r in self.stack.replicas if service is None or r.service == service]

    def pids(self) -> dict[str, int]:
        """Every process of the run by name (this one, the load generator, is measured apart)."""
        pids = {r.name: r.process.pid for r in self.replicas() if r.process and r.alive()}
        if self.stack.redis.process is not None:
            pids["redis"] = self.stack.redis.process.pid
        if self.stack.cluster is not None:
            for i, node in enumerate(self.stack.cluster.nodes):
                if node.process is not None:
                    pids[f"redis-{i}"] = node.process.pid
        pids["receiver"] = self.recv.pid
        return pids

    def cpu(self) -> CpuMeter:
        return CpuMeter(self.pids()).start()

    def add_replica(self, service: str, env: dict[str, str] | None = None) -> Replica:
        """Start one more process of ``service`` (the fan-out's second notify; with ``env``,
        a consumer of some partitions: ``TOPICWATCH_CONSUME_PARTITIONS``)."""
        index = len(self.replicas(service)) + 1
        replica = Replica(service, index, {**self.stack.env(), **(env or {})}, self.stack.workdir)
        replica.start()
        self.stack.replicas.append(replica)
        replica.wait_healthy()
        return replica

    def subscribe(self, requests: Iterable[dict[str, Any]]) -> list[str]:
        """Create subscriptions through notify's API (the product's path, validation and all);
        their ids, in order."""
        url = f"{self.replicas('notify')[0].url}/v1/subscriptions"
        ids = []
        for body in requests:
            answer = self.http.post(url, json=body)
            answer.raise_for_status()
            ids.append(str(answer.json()["id"]))
        return ids

    def delivery_state(self, sid: str) -> dict[str, Any]:
        """Where a subscription's delivery stands in Redis, for a report of late webhooks:
        each key naming it (type, and length of a list), and its score in any ``due`` set in
        seconds from now (a lease runs into the future). Scans: for diagnosis only."""
        client, now = self.client, time.time()
        state: dict[str, Any] = {}
        for key in client.scan_iter(match=f"*{sid}*", count=1_000):
            kind = as_text(client.type(key))
            state[as_text(key)] = client.llen(key) if kind == "list" else kind
        for key in client.scan_iter(match="*due*", count=1_000):
            if as_text(client.type(key)) == "zset":
                score = client.zscore(key, sid)
                if score is not None:
                    state[f"{as_text(key)} score - now"] = round(score - now, 1)
        return state

    def publish(self, articles: Sequence[StreamArticle], batch: int = 200) -> None:
        """XADD to the ingest stream, pipelined in batches (how a bulk producer writes)."""
        for start in range(0, len(articles), batch):
            pipe = self.client.pipeline(transaction=False)
            for a in articles[start : start + batch]:
                pipe.xadd(self.names.ingest, {DATA_FIELD: a.payload})
            pipe.execute()

    def drained(self) -> bool:
        """Every group of the three pipe streams has read everything and acknowledged it.

        A service acknowledges an entry only after what it produced is written, so when the
        three are drained at one look, every article has gone all the way through.
        """
        names = self.names
        for stream in (names.ingest, *names.accepted_streams, *names.classified_streams):
            try:
                last = self.client.xinfo_stream(stream)["last-generated-id"]
            except redis.ResponseError:  # no such stream yet: nothing written to it
                continue
            for group in self.client.xinfo_groups(stream):
                if group["pending"] or group["last-delivered-id"] != last:
                    return False
        return True

    def wait_drained(self, timeout: float) -> float:
        """Wait until :meth:`drained`; return the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.drained():
                return time.monotonic()
            time.sleep(0.005)
        raise TimeoutError(f"the pipe did not drain within {timeout:g} s")

    def wait_quiet(self, quiet: float = 0.5, timeout: float = 60.0) -> None:
        """Wait until the receiver has had no webhook for ``quiet`` seconds (deliveries done)."""
        deadline = time.monotonic() + timeout
        last, since = self.recv.counts(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.recv.counts()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


# --- (1) the bare relay ------------------------------------------------------------------------


def relay_baseline(bench: Bench) -> dict[str, Any]:
    """Entries per second through three consumer groups with no work: the Redis floor.

    Raw redis-py in this process, pipelined in batches of 200: the same transport the
    services use (XADD, XREADGROUP, XACK per hop), without any of their work.
    """
    count, batch = bench.sizes.relay_entries, 200
    client = bench.client
    streams = [f"bench:relay:{i}" for i in range(4)]
    for stream in streams[:3]:
        client.xgroup_create(stream, "g", id="0", mkstream=True)
    payload = b'{"n": 0, "body": "' + b"x" * 200 + b'"}'
    meter = bench.cpu()
    started = time.perf_counter()
    for start in range(0, count, 1_000):
        pipe = client.pipeline(transaction=False)
        for _ in range(start, min(count, start + 1_000)):
            pipe.xadd(streams[0], {DATA_FIELD: payload})
        pipe.execute()
    for hop in range(3):
        moved = 0
        while moved < count:
            reply: Any = client.xreadgroup("g", "c", {streams[hop]: ">"}, count=batch)
            entries: list[Any] = reply[0][1] if reply else []
            pipe = client.pipeline(transaction=False)
            for _entry_id, fields in entries:
                pipe.xadd(streams[hop + 1], fields)
            pipe.xack(streams[hop], "g", *[e[0] for e in entries])
            pipe.execute()
            moved += len(entries)
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    client.delete(*streams)
    return {
        "entries": count,
        "seconds": round(seconds, 3),
        "entries_per_s": round(count / seconds, 1),
        "cpu_percent": cpu,
    }


# --- (2) end to end ----------------------------------------------------------------------------


def end_to_end(bench: Bench, relay: dict[str, Any]) -> dict[str, Any]:
    """The realistic stream from XADD on the ingest stream until all three groups drain."""
    articles = bench.stream.take(bench.sizes.e2e_articles)
    before = bench.recv.counts()["track"]
    meter = bench.cpu()
    started = time.monotonic()
    bench.publish(articles)
    drained_at = bench.wait_drained(bench.sizes.drain_timeout)
    cpu = meter.stop()
    seconds = drained_at - started
    rate = len(articles) / seconds
    bench.wait_quiet()
    return {
        "articles": len(articles),
        "defence_share": round(sum(a.defence for a in articles) / len(articles), 3),
        "mean_payload_bytes": round(sum(len(a.payload) for a in articles) / len(articles)),
        "subscriptions": bench.sizes.query_subscriptions,
        "seconds": round(seconds, 3),
        "articles_per_s": round(rate, 1),
        "ratio_to_relay": round(rate / relay["entries_per_s"], 6),
        "webhooks": bench.recv.counts()["track"] - before,
        # What each service spent on an article: on a loaded machine the services get less
        # than a core each, and this (CPU, not wall time) says what a full core would do.
        "cpu_ms_per_article": {
            name: round(1000 * used / len(articles), 3)
            for name, used in meter.seconds.items()
            if name.split("-")[0] in ("ingest", "classify", "notify")
        },
        "cpu_percent": cpu,
    }


# --- (3) fan-out -------------------------------------------------------------------------------


def fanout_article(n: int) -> dict[Any, Any]:
    """A classified article every fan-out subscription matches, its own story (no folding)."""
    rng = random.Random(n)
    body = " ".join(rng.choices(FILLER, k=120)).capitalize() + "."
    article = Article(
        id=f"art_fanout{n:018d}",
        title=f"Fan-out story {n}",
        body=body,
        url=f"https://fanout.example/{n}",
        content_hash=f"fanout{n}",
    )
    classified = ClassifiedArticle(
        article=article,
        topics=[TopicTag(id=FANOUT_TOPIC, score=FANOUT_SCORE)],
        taxonomy_version="bench",
    )
    return dict(encode(classified))


class _Fanout:
    """The fan-out subscriptions, made once; each run writes articles not used before."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.next_article = 0

    @property
    def subscriptions(self) -> int:
        return len(self.ids)


def _fanout_warm_up(bench: Bench, state: _Fanout) -> None:
    """One article to every fan-out subscription, not timed: the figure is the steady state,
    not a new process's first look at the subscriptions or its first connections."""
    expected = bench.recv.counts()["distinct"] + state.subscriptions
    bench.client.xadd(bench.names.classified, fanout_article(state.next_article))
    state.next_article += 1
    deadline = time.monotonic() + bench.sizes.drain_timeout
    while bench.recv.counts()["distinct"] < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def fanout(bench: Bench, state: _Fanout) -> dict[str, Any]:
    """Deliveries/s: every fan-out subscription x ``fanout_articles`` new articles, timed
    from the XADD on the classified stream until the receiver has seen every (subscription,
    article) webhook once (by its ``webhook-id``), after a warm-up article.

    It also checks "exactly one alert per (subscription, article)" as far as a receiver can:
    ``redelivered`` counts POSTs of an id seen before, ``short_subscriptions`` those that got
    fewer webhooks than articles within the wait."""
    sizes = bench.sizes
    if not state.subscriptions:
        url = f"{bench.recv.url}/count"
        state.ids = bench.subscribe(
            {"name": f"fan-out {i}", "topics": [FANOUT_TOPIC], "webhook_url": f"{url}/{i}"}
            for i in range(sizes.fanout_subscriptions)
        )
    _fanout_warm_up(bench, state)
    first = state.next_article
    state.next_article += sizes.fanout_articles
    entries = [fanout_article(n) for n in range(first, state.next_article)]
    deliveries = state.subscriptions * len(entries)
    before = bench.recv.counts()
    before_paths = bench.recv.per_path()
    expected = before["distinct"] + deliveries
    meter = bench.cpu()
    started = time.monotonic()
    pipe = bench.client.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(bench.names.classified, fields)
    pipe.execute()
    deadline = started + sizes.drain_timeout
    while (counts := bench.recv.counts())["distinct"] < expected and time.monotonic() < deadline:
        time.sleep(0.05)  # the receiver notes when the last one came: no need to poll fast
    cpu = meter.stop()
    arrived = counts["distinct"] - before["distinct"]
    # Webhooks of earlier articles that were still on their way (late ones) arrive meanwhile
    # too; the receiver cannot tell them from this run's, so they are counted apart.
    stragglers = max(0, arrived - deliveries)
    delivered = arrived - stragglers
    complete = delivered >= deliveries
    short: dict[str, int] = {}
    if complete:
        seconds = counts["count_at"] - started
    else:  # late or lost webhooks: say so, and give the rate of what did arrive in time
        seconds = sizes.drain_timeout
        paths = bench.recv.per_path()
        for i in range(state.subscriptions):
            path = f"/count/{i}"
            got = paths.get(path, 0) - before_paths.get(path, 0)
            if got < len(entries):
                short[path] = got
        say(
            f"fan-out: only {delivered} of {deliveries} webhooks within "
            f"{sizes.drain_timeout:g} s; short: {short}"
        )
        for path in list(short)[:3]:
            sid = state.ids[int(path.rsplit("/", 1)[1])]
            say(f"fan-out: {path} is {sid}: {bench.delivery_state(sid)}")
    # CPU per delivery: the receiver's says how far it is from being the limit (its capacity
    # on one core), notify's is what the fan-out work costs.
    notify_cpu = sum(v for k, v in meter.seconds.items() if k.startswith("notify"))
    receiver_cpu = meter.seconds.get("receiver", 0.0)
    return {
        "notify_processes": len(bench.replicas("notify")),
        "subscriptions": state.subscriptions,
        "articles": len(entries),
        "deliveries": deliveries,
        "delivered": delivered,
        "complete": complete,
        "redelivered": (counts["count"] - before["count"]) - arrived,
        "stragglers": stragglers,
        "short_subscriptions": short,
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(delivered / seconds, 1),
        "notify_cpu_ms_per_delivery": round(1000 * notify_cpu / max(delivered, 1), 3),
        "receiver_capacity_per_s": round(delivered / receiver_cpu) if receiver_cpu > 0 else None,
        "cpu_percent": cpu,
    }


# --- (4) latency at fixed rates ----------------------------------------------------------------


class HttpProbe(threading.Thread):
    """GETs each service's endpoints in turn (~50 requests/s in all) and times the answers."""

    def __init__(self, targets: dict[str, str], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.targets = targets
        self.interval = interval
        self.times: dict[str, list[float]] = {name: [] for name in targets}
        self.statuses: dict[str, int] = {}
        """Answers other than 200 by status (a 503 from /healthz: not ready), and "error":
        requests that got no answer within 10 s."""
        self._done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._done.is_set():
                for name, url in self.targets.items():
                    started = time.perf_counter()
                    try:
                        status = client.get(url).status_code
                    except httpx.HTTPError:
                        status = 0
                    if status != 200:
                        key = str(status or "error")
                        self.statuses[key] = self.statuses.get(key, 0) + 1
                    if status:
                        self.times[name].append(time.perf_counter() - started)
                    if self._done.wait(self.interval):
                        return

    def stop(self) -> dict[str, Any]:
        self._done.set()
        self.join(15)
        summary: dict[str, Any] = {n: latency_summary(t) for n, t in self.times.items()}
        every = [t for times in self.times.values() for t in times]
        summary["all"] = latency_summary(every)
        summary["not_ok"] = self.statuses
        return summary


def probe_targets(bench: Bench) -> dict[str, str]:
    targets = {f"{r.name} /healthz": f"{r.url}/healthz" for r in bench.replicas()}
    notify = bench.replicas("notify")[0]
    targets["notify-1 GET /v1/subscriptions"] = f"{notify.url}/v1/subscriptions?limit=20"
    return targets


def latency_at(bench: Bench, rate: int) -> dict[str, Any]:
    """Publish the realistic stream at ``rate`` articles/s for ``rate_seconds``; XADD -> first
    webhook of each article that has one (about one in ten: the defence stories)."""
    sizes = bench.sizes
    articles = bench.stream.take(max(1, round(rate * sizes.rate_seconds)))
    sent_at: dict[str, float] = {}
    probe = HttpProbe(probe_targets(bench))
    meter = bench.cpu()
    probe.start()
    started = time.monotonic()
    sent = 0
    while sent < len(articles):
        due = min(len(articles), int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            pipe = bench.client.pipeline(transaction=False)
            for a in articles[sent:due]:
                pipe.xadd(bench.names.ingest, {DATA_FIELD: a.payload})
            now = time.monotonic()
            pipe.execute()
            for a in articles[sent:due]:
                sent_at[a.url] = now
            sent = due
        time.sleep(0.002)
    published = time.monotonic()
    drained = bench.wait_drained(sizes.drain_timeout)
    bench.wait_quiet()
    http = probe.stop()
    cpu = meter.stop()
    stats = bench.recv.stats()
    first, last = stats["first"], stats["last"]
    firsts = [first[u] - t for u, t in sent_at.items() if u in first]
    lasts = [last[u] - t for u, t in sent_at.items() if u in last]
    return {
        "rate": rate,
        "articles": len(articles),
        "achieved_rate": round(len(articles) / max(published - started, 1e-9), 1),
        "backlog_drain_s": round(max(0.0, drained - published), 3),
        "first_webhook": latency_summary(firsts),
        "last_webhook": latency_summary(lasts),
        "http": http,
        "cpu_percent": cpu,
    }


# --- (5) peak memory ---------------------------------------------------------------------------


def peak_rss(bench: Bench) -> dict[str, float | None]:
    """Peak resident MB of every process of the run, read before they stop."""
    peaks = {name: peak_rss_mb(pid) for name, pid in bench.pids().items()}
    return {name: None if mb is None else round(mb, 1) for name, mb in peaks.items()}


# --- the run -----------------------------------------------------------------------------------


def run(sizes: Sizes) -> dict[str, Any]:
    figures: dict[str, Any] = {"machine_at_start": machine(), "sizes": asdict(sizes)}
    with tempfile.TemporaryDirectory(prefix="topicwatch-bench-") as tmp:
        bench = Bench(sizes, Path(tmp))
        say("starting redis, ingest, classify, notify and the receiver")
        bench.start()
        try:
            say(f"subscribing {sizes.query_subscriptions:,} stored queries")
            bench.subscribe(subscriptions(sizes.query_subscriptions, f"{bench.recv.url}/track"))
            say(f"(1) bare relay: {sizes.relay_entries:,} entries through three groups")
            figures["relay"] = relay_baseline(bench)
            say(f"(2) end to end: {sizes.e2e_articles:,} articles of the realistic stream")
            figures["end_to_end"] = end_to_end(bench, figures["relay"])
            figures["latency"] = []
            for rate in sizes.rates:
                say(f"(4) latency at {rate:,} articles/s for {sizes.rate_seconds:g} s")
                figures["latency"].append(latency_at(bench, rate))
            state = _Fanout()
            say(
                f"(3) fan-out: {sizes.fanout_subscriptions:,} subscriptions x "
                f"{sizes.fanout_articles} articles, one notify process"
            )
            one = fanout(bench, state)
            say("(3) fan-out: starting a second notify process")
            bench.add_replica("notify")
            two = fanout(bench, state)
            two["scaling"] = round(two["deliveries_per_s"] / one["deliveries_per_s"], 3)
            figures["fanout"] = [one, two]
            figures["peak_rss_mb"] = peak_rss(bench)
        except BaseException:
            print(bench.stack.logs_tail(), file=sys.stderr)
            raise
        finally:
            bench.stop()
    figures["machine_at_end"] = machine()
    figures["targets"] = verdicts(figures)
    return figures


def verdicts(f: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 10 against this run: met or not, and the gap."""
    out: list[dict[str, Any]] = []

    def check(name: str, measured: float | None, target: float, higher: bool, unit: str) -> None:
        met = measured is not None and (measured >= target if higher else measured <= target)
        out.append({"target": name, "measured": measured, "goal": target, "unit": unit, "met": met})

    one, two = f["fanout"]
    check("fan-out, 1 notify", one["deliveries_per_s"], TARGET_FANOUT_PER_S, True, "/s")
    check("fan-out, 2 notify / 1 notify", two["scaling"], TARGET_FANOUT_SCALING, True, "x")
    check("end to end / relay", f["end_to_end"]["ratio_to_relay"], TARGET_E2E_RATIO, True, "x")
    at = next((r for r in f["latency"] if r["rate"] == TARGET_LATENCY_RATE), None)
    if at is not None:
        check(
            f"p99 XADD->webhook at {TARGET_LATENCY_RATE}/s",
            at["first_webhook"]["p99_ms"],
            TARGET_P99_MS,
            False,
            "ms",
        )
        check("HTTP p99 during the run", at["http"]["all"]["p99_ms"], TARGET_P99_MS, False, "ms")
    services = {k: v for k, v in f["peak_rss_mb"].items() if k not in ("redis", "receiver")}
    worst = max((v for v in services.values() if v is not None), default=None)
    check("peak RSS of a service (this run's subscriptions)", worst, TARGET_RSS_MB, False, "MB")
    return out


# --- printing ----------------------------------------------------------------------------------


def _cpu(cpu: dict[str, float], *names: str) -> str:
    keys = [k for k in cpu if any(k.startswith(n) for n in names)]
    return ", ".join(f"{k} {cpu[k]:.0f}%" for k in keys)


def figure_rows(f: dict[str, Any]) -> list[list[str]]:
    """One row a figure: name, value, notes (the table and the Markdown show the same)."""
    relay, e2e = f["relay"], f["end_to_end"]
    rows = [
        [
            "(1) bare relay, 3 groups",
            fmt(relay["entries_per_s"], "entries/s"),
            f"{relay['entries']:,} entries; " + _cpu(relay["cpu_percent"], "load", "redis"),
        ],
        [
            "(2) end to end",
            fmt(e2e["articles_per_s"], "articles/s"),
            f"{e2e['ratio_to_relay']:.3f}x of (1); {e2e['articles']:,} articles, "
            f"{e2e['subscriptions']:,} query subscriptions, {e2e['webhooks']:,} webhooks; "
            + _cpu(e2e["cpu_percent"], "ingest", "classify", "notify", "redis", "load")
            + "; CPU an article: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in e2e["cpu_ms_per_article"].items()),
        ],
    ]
    for run_ in f["fanout"]:
        note = (
            f"{run_['subscriptions']:,} subs x {run_['articles']} articles; "
            + _cpu(run_["cpu_percent"], "notify", "receiver", "load", "redis")
            + f"; notify {run_['notify_cpu_ms_per_delivery']:.2f} ms CPU a delivery (a full "
            f"core: {fmt(1000 / max(run_['notify_cpu_ms_per_delivery'], 1e-6), '/s')}), "
            f"receiver capacity {fmt(run_['receiver_capacity_per_s'], '/s per core')}"
        )
        if "scaling" in run_:
            note = f"{run_['scaling']:.2f}x of one; " + note
        if run_["stragglers"]:
            note = (
                f"{run_['stragglers']:,} late webhooks of earlier articles came meanwhile; " + note
            )
        if run_["redelivered"]:
            note = f"{run_['redelivered']:,} webhooks sent twice; " + note
        if not run_["complete"]:
            note = (
                f"INCOMPLETE: {run_['delivered']:,} of {run_['deliveries']:,} webhooks within "
                f"{run_['seconds']:g} s ({len(run_['short_subscriptions'])} subscriptions "
                "short); " + note
            )
        rows.append(
            [
                f"(3) fan-out, {run_['notify_processes']} notify",
                fmt(run_["deliveries_per_s"], "deliveries/s"),
                note,
            ]
        )
    for lat in f["latency"]:
        first, http = lat["first_webhook"], lat["http"]["all"]
        rows.append(
            [
                f"(4) latency p50/p95/p99, {lat['rate']:,}/s",
                f"{fmt(first['p50_ms'], '', 0)} / {fmt(first['p95_ms'], '', 0)}"
                f" / {fmt(first['p99_ms'], 'ms', 0)}",
                f"{first['samples']} samples; sent at {lat['achieved_rate']:,.0f}/s, "
                f"drained {lat['backlog_drain_s']:.1f} s after; HTTP p99 "
                f"{fmt(http['p99_ms'], 'ms', 1)} (max {fmt(http['max_ms'], 'ms', 0)})"
                + "".join(f", {n} answered {k}" for k, n in lat["http"]["not_ok"].items()),
            ]
        )
    rss = f["peak_rss_mb"]
    services = [k for k in rss if k not in ("redis", "receiver")]
    rows.append(
        [
            "(5) peak RSS",
            fmt(max(rss[k] or 0 for k in services), "MB", 0),
            ", ".join(f"{k} {fmt(rss[k], 'MB', 0)}" for k in rss),
        ]
    )
    return rows


def target_rows(f: dict[str, Any]) -> list[list[str]]:
    def value(t: dict[str, Any], key: str) -> str:
        return fmt(t[key], t["unit"], 2 if t["unit"] == "x" else 0)

    return [
        [t["target"], value(t, "measured"), value(t, "goal"), "met" if t["met"] else "NOT met"]
        for t in f["targets"]
    ]


def machine_line(f: dict[str, Any]) -> str:
    start, end = f["machine_at_start"], f["machine_at_end"]
    return (
        f"{start['utc']}: {start['cores']} cores ({start['platform']}, Python "
        f"{start['python']}), load average {' '.join(map(str, start['load_average']))} at "
        f"start, {' '.join(map(str, end['load_average']))} at end; a busy loop got "
        f"{start['core_share']:.0%} of a core at start, {end['core_share']:.0%} at end"
    )


TARGET_HEADER = ["target (issue 10)", "measured", "goal", "met"]
NOTE = "CPU % is of one core over the phase; the load generator is this process."


def format_figures(f: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"topicwatch bench pipeline, {machine_line(f)}",
            "",
            table(["figure", "value", "notes"], figure_rows(f), align="lrl"),
            "",
            table(TARGET_HEADER, target_rows(f)),
            "",
            NOTE,
        ]
    )


def format_markdown(f: dict[str, Any]) -> str:
    """The same figures for docs/performance.md and the README."""
    return "\n".join(
        [
            f"`topicwatch bench pipeline`, {machine_line(f)}.",
            "",
            markdown_table(["figure", "value", "notes"], figure_rows(f), align="lrl"),
            "",
            markdown_table(TARGET_HEADER, target_rows(f), align="lrrl"),
            "",
            NOTE,
            "",
        ]
    )


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    overrides = {
        k: v
        for k, v in {
            "query_subscriptions": args.subscriptions,
            "fanout_subscriptions": args.fanout_subscriptions,
            "fanout_articles": args.fanout_articles,
            "e2e_articles": args.articles,
            "rate_seconds": args.rate_seconds,
        }.items()
        if v is not None
    }
    if args.rates is not None:
        overrides["rates"] = tuple(args.rates)
    sizes = Sizes(**{**asdict(sizes), **overrides})
    figures = run(sizes)
    print(format_figures(figures))
    if args.json:
        write_json(args.json, figures)
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(figures), encoding="utf-8")
    return 0


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser(
        "pipeline",
        help="whole pipe: relay baseline, end to end, fan-out, latency, peak RSS (issue 10)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown")
    parser.add_argument("--articles", type=int, help="end-to-end articles (default 5,000)")
    parser.add_argument("--subscriptions", type=int, help="query subscriptions (default 1,000)")
    parser.add_argument("--fanout-subscriptions", type=int, help="default 500")
    parser.add_argument("--fanout-articles", type=int, help="default 20")
    parser.add_argument("--rates", type=positive_ints, help="latency rates (default 100,500,1000)")
    parser.add_argument("--rate-seconds", type=float, help="seconds per rate (default 10)")
    parser.set_defaults(func=cmd_bench_pipeline)
