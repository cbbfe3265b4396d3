"""``topicwatch bench pipeline``: the whole pipe, measured end to end.

Starts a private redis-server, the three services as separate processes and a webhook
receiver on loopback, subscribes the receiver, then

1. publishes articles one at a time and times each from ``XADD`` on the ingest stream to the
   signed webhook arriving (the product's promise: an alert within a second);
2. publishes a burst and times how fast it flows through to classified articles and to
   delivered alerts.

The baseline, measured in the same run on the same Redis, is the bare transport: the same
number of entries passed through three consumer groups by raw redis-py (XADD, XREADGROUP,
XACK, no work), so the figures show what the services add to what Redis costs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis

from services.cli import SERVICES, Supervisor
from services.common.http import wait_healthy
from services.common.redis_server import RedisServer, free_port
from services.common.streams import DATA_FIELD, StreamNames

COUNTRIES = ["Poland", "Romania", "Finland", "Egypt", "India", "Qatar", "Morocco", "Greece"]
SYSTEMS = ["Patriot", "NASAMS", "IRIS-T SLM", "SAMP/T", "Sky Sabre", "KM-SAM", "Barak-8"]
FILLER = (
    "officials parliament budget ministry industry talks week region border statement "
    "analysts committee spokesman training agreement funding schedule radar units crews "
    "partners programme review tender offset factory logistics capability timeline"
).split()


def article(n: int) -> dict[str, Any]:
    """A distinct air-defence procurement story (distinct text: notify folds near-duplicates)."""
    rng = random.Random(n)
    country, system = rng.choice(COUNTRIES), rng.choice(SYSTEMS)
    lead = (
        f"{country} signed a contract on Tuesday to buy {rng.randint(2, 12)} {system} "
        f"air defence batteries, the defence ministry said."
    )
    filler = " ".join(rng.choice(FILLER) for _ in range(80))
    return {
        "title": f"{country} orders {system} air defence systems (bench {n})",
        "body": f"{lead}\n\n{filler.capitalize()}.\n\nDeliveries are due to start next year.",
        "url": f"https://bench.example/{n}",
        "source": "bench",
    }


class Receiver:
    """Records when each article's alert arrives (by the article's URL)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                now = time.perf_counter()
                data = json.loads(body)["data"]
                alerts = data["alerts"] if "alerts" in data else [data]
                with receiver.lock:
                    for alert in alerts:
                        receiver.arrived.setdefault(alert["article"]["url"], now)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, urls: list[str], timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if all(u in self.arrived for u in urls):
                    return max(self.arrived[u] for u in urls)
            time.sleep(0.002)
        raise TimeoutError(f"{sum(u in self.arrived for u in urls)} of {len(urls)} alerts")


def transport_baseline(client: redis.Redis, count: int, batch: int) -> float:
    """Entries per second through three consumer groups with no work: the Redis floor."""
    streams = [f"bench:baseline:{i}" for i in range(4)]
    for stream in streams[:3]:
        client.xgroup_create(stream, "g", id="0", mkstream=True)
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(streams[0], {DATA_FIELD: json.dumps({"n": n})})
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
    return count / (time.perf_counter() - started)


def run(latency_samples: int, burst: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(data_dir=Path(tmp) / "redis", appendonly=True).start()
        receiver = Receiver()
        ports = {s: free_port() for s in SERVICES}
        env = {
            **os.environ,
            "TOPICWATCH_REDIS_URL": server.url,
            "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",
            "TOPICWATCH_LOG_LEVEL": "WARNING",
            **{f"TOPICWATCH_{s.upper()}_PORT": str(p) for s, p in ports.items()},
        }
        env.pop("TOPICWATCH_API_KEYS", None)
        supervisor = Supervisor(env, quiet=True)
        supervisor.start()
        client = redis.Redis.from_url(server.url)
        names = StreamNames()
        try:
            for port in ports.values():
                wait_healthy(f"http://127.0.0.1:{port}")
            httpx.post(
                f"http://127.0.0.1:{ports['notify']}/v1/subscriptions",
                json={
                    "name": "bench",
                    "topics": ["air-defence-procurement"],
                    "webhook_url": receiver.url,
                },
            ).raise_for_status()

            latencies = []
            for n in range(latency_samples):
                doc = article(n)
                started = time.perf_counter()
                client.xadd(names.ingest, {DATA_FIELD: json.dumps(doc)})
                latencies.append(receiver.wait([doc["url"]], timeout=30) - started)

            docs = [article(latency_samples + n) for n in range(burst)]
            started = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for doc in docs:
                pipe.xadd(names.ingest, {DATA_FIELD: json.dumps(doc)})
            pipe.execute()
            target = latency_samples + burst
            while client.xlen(names.classified) < target:
                if time.perf_counter() - started > 600:
                    raise TimeoutError("burst not classified within 600 s")
                time.sleep(0.01)
            classified_at = time.perf_counter()
            delivered_at = receiver.wait([d["url"] for d in docs], timeout=600)
            baseline = transport_baseline(client, burst, 200)
        finally:
            supervisor.stop()
            receiver.server.shutdown()
            server.stop()
    ordered = sorted(latencies)
    return {
        "latency_p50_ms": statistics.median(ordered) * 1000,
        "latency_p95_ms": ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000,
        "latency_max_ms": ordered[-1] * 1000,
        "burst": burst,
        "classified_per_s": burst / (classified_at - started),
        "alerted_per_s": burst / (delivered_at - started),
        "baseline_per_s": baseline,
    }


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    print(
        f"starting redis, ingest, classify, notify and a receiver; {args.latency_samples} "
        f"single articles, then a burst of {args.burst}...",
        flush=True,
    )
    f = run(args.latency_samples, args.burst)
    print(
        f"publish -> signed webhook, one at a time: median {f['latency_p50_ms']:.0f} ms, "
        f"p95 {f['latency_p95_ms']:.0f} ms, worst {f['latency_max_ms']:.0f} ms"
    )
    print(
        f"burst of {f['burst']}: classified at {f['classified_per_s']:,.0f} articles/s, "
        f"alerts delivered at {f['alerted_per_s']:,.0f} articles/s"
    )
    print(
        f"baseline (same Redis, same run): bare transport through three consumer groups "
        f"{f['baseline_per_s']:,.0f} entries/s"
    )
    return 0


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser(
        "pipeline", help="whole pipe: publish -> webhook latency and burst throughput"
    )
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--burst", type=int, default=1000)
    parser.set_defaults(func=cmd_bench_pipeline)
