"""``topicwatch bench delivery``: how fast notify turns classified articles into webhooks.

Starts a throw-away redis-server, the notify service (consumer, worker, API) and a local
webhook receiver, all on loopback, then measures:

* latency: one article at a time, from ``XADD articles:classified`` to the signed POST
  arriving at the receiver (median and worst);
* throughput: a burst of articles matching several subscriptions at once, alerts delivered
  per second (each subscription's queue drains in order, subscriptions in parallel).

Figures depend on the machine; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from services.bench.report import fmt, latency_summary, write_json
from services.common.models import Article, ClassifiedArticle, TopicTag
from services.common.redis_server import RedisServer, free_port
from services.common.settings import Settings
from services.common.streams import StreamNames, encode


class _Receiver:
    """Counts signed POSTs; answers 204."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.port = free_port()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        with self.lock:
            self.count += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def wait_for(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count} of {n} webhooks arrived")
            time.sleep(0.001)


def _serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="auto")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server


_WORDS = (
    "ministry signed contract battery radar interceptor delivery army navy launcher "
    "parliament approved budget programme regiment system order second phase export "
    "industry partner officials said tuesday wednesday agreement units missiles"
).split()


def _classified(n: int) -> dict[Any, Any]:
    # Every story its own text: notify folds near-duplicate stories into one alert.
    rng = random.Random(n)
    body = f"Story {n}: " + " ".join(rng.choice(_WORDS) for _ in range(60)) + "."
    article = Article(
        id=f"art_bench{n:019d}",
        title=f"Bench story {n}",
        body=body,
        content_hash=f"bench{n}",
    )
    return dict(
        encode(
            ClassifiedArticle(
                article=article,
                topics=[TopicTag(id="air-defence-procurement", score=0.9)],
                taxonomy_version="bench",
            )
        )
    )


def run(latency_samples: int, burst: int, subscriptions: int) -> dict[str, Any]:
    from services.notify.app import create_app

    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(data_dir=Path(tmp), appendonly=False) as redis_server,
    ):
        settings = Settings(
            redis_url=redis_server.url,
            data_dir=Path(tmp),
            allow_private_webhooks=True,
            read_block_ms=20,
        )
        receiver = _Receiver()
        hook = _serve(receiver, receiver.port)
        port = free_port()
        app = _serve(create_app(settings), port)
        client = redis.Redis.from_url(redis_server.url)
        stream = StreamNames(settings.stream_prefix).classified
        try:
            for i in range(subscriptions):
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/subscriptions",
                    json={
                        "name": f"bench {i}",
                        "topics": ["air-defence-procurement"],
                        "webhook_url": f"http://127.0.0.1:{receiver.port}/hook/{i}",
                    },
                ).raise_for_status()
                if i == 0:
                    latencies = []
                    for n in range(latency_samples):
                        started = time.perf_counter()
                        client.xadd(stream, _classified(n))
                        receiver.wait_for(n + 1)
                        latencies.append(time.perf_counter() - started)
            before = receiver.count
            started = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for n in range(latency_samples, latency_samples + burst):
                pipe.xadd(stream, _classified(n))
            pipe.execute()
            expected = before + burst * subscriptions
            receiver.wait_for(expected)
            seconds = time.perf_counter() - started
        finally:
            client.close()
            app.should_exit = True
            hook.should_exit = True
            time.sleep(0.3)
    return {
        "latency": latency_summary(latencies),
        "alerts": burst * subscriptions,
        "alerts_per_s": round(burst * subscriptions / seconds, 1),
    }


def cmd_bench_delivery(args: argparse.Namespace) -> int:
    figures = run(args.latency_samples, args.burst, args.subscriptions)
    latency = figures["latency"]
    print(
        f"classified -> webhook latency over {latency['samples']} alerts: "
        f"median {fmt(latency['p50_ms'], 'ms', 1)}, worst {fmt(latency['max_ms'], 'ms', 1)}"
    )
    print(
        f"burst of {args.burst} articles x {args.subscriptions} subscriptions: "
        f"{figures['alerts']} alerts delivered at {fmt(figures['alerts_per_s'], 'alerts/s')}"
    )
    if args.json:
        write_json(args.json, figures)
    return 0


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "delivery", help="notify: classified article -> signed webhook, latency and throughput"
    )
    bench.add_argument("--latency-samples", type=int, default=50)
    bench.add_argument("--burst", type=int, default=500, help="articles in the burst")
    bench.add_argument("--subscriptions", type=int, default=4)
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.set_defaults(func=cmd_bench_delivery)
