"""``topicwatch bench fanout``: signed webhook deliveries/s from one and two notify processes.

Everything is a separate process on loopback, so no part steals another's interpreter:
a throw-away Redis, one or two ``topicwatch serve notify`` processes and a keep-alive HTTP/1.1
receiver (a bare asyncio protocol that answers 204 and counts ``webhook-id`` values, so it is
visibly not the limit). N webhook subscriptions match each of M classified articles; the
figure is N x M deliveries divided by the time from the ``XADD`` of the burst to the last
request arriving. CPU seconds of every process over the burst are printed beside it, and the
load average, because the machine is shared.

``--baseline DIR`` runs the same measurement against the notify code in ``DIR`` (a checkout
of an older commit) first, so a before/after pair comes from one invocation. ``--profile
DIR`` records each notify process with py-spy (collapsed stacks) during the burst.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from services.common.http import wait_healthy
from services.common.models import Article, ClassifiedArticle, TopicTag
from services.common.redis_server import RedisServer, free_port
from services.common.streams import StreamNames, encode

ROOT = Path(__file__).resolve().parent.parent.parent

_WORDS = (
    "ministry signed contract battery radar interceptor delivery army navy launcher "
    "parliament approved budget programme regiment system order second phase export "
    "industry partner officials said tuesday wednesday agreement units missiles"
).split()


def classified_entry(n: int, tag: str = "fanout") -> dict[Any, Any]:
    """A classified article of its own story (notify folds near-duplicates into one alert)."""
    rng = random.Random(n)
    body = f"Story {n}: " + " ".join(rng.choice(_WORDS) for _ in range(60)) + "."
    article = Article(
        id=f"art_{tag}{n:019d}", title=f"Fan-out story {n}", body=body, content_hash=f"{tag}{n}"
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


# --- the receiver: its own process, a bare asyncio protocol ------------------------------------


def _receiver_main(port: int, count: Any, dupes: Any, ready: Any) -> None:
    import asyncio

    seen: set[bytes] = set()

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                length = 0
                at = head.find(b"content-length:")
                if at >= 0:
                    length = int(
                        head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None]
                    )
                total = end + 4 + length
                if len(self.buf) < total:
                    return
                at = head.find(b"webhook-id:")
                if at >= 0:
                    stop = head.find(b"\r\n", at)
                    wid = head[at + 11 : stop if stop >= 0 else None].strip()
                    if wid in seen:
                        dupes.value += 1
                    seen.add(wid)
                self.buf = self.buf[total:]
                self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                count.value += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


class Receiver:
    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self.port = free_port()
        self.count = ctx.Value("q", 0, lock=False)
        self.dupes = ctx.Value("q", 0, lock=False)
        ready = ctx.Event()
        self.process = ctx.Process(
            target=_receiver_main, args=(self.port, self.count, self.dupes, ready), daemon=True
        )
        self.process.start()
        ready.wait(10)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{i}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# --- one measurement ---------------------------------------------------------------------------


def _alive(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is None


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def measure(
    code_dir: Path,
    *,
    subscriptions: int,
    articles: int,
    processes: int,
    profile: Path | None = None,
    label: str = "",
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Deliveries/s of ``subscriptions`` x ``articles`` with ``processes`` notify processes
    running the code in ``code_dir``."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(data_dir=Path(tmp) / "redis", appendonly=False).start()
        receiver = Receiver()
        env = {
            **os.environ,
            "TOPICWATCH_REDIS_URL": server.url,
            "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",
            "TOPICWATCH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(code_dir),
        }
        env.pop("TOPICWATCH_API_KEYS", None)
        procs: list[subprocess.Popen[bytes]] = []
        ports = [free_port() for _ in range(processes)]
        logs = []
        client = redis.Redis.from_url(server.url)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            for i, port in enumerate(ports):
                log = open(Path(tmp) / f"notify{i}.log", "wb")
                logs.append(log)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services.cli", "serve", "notify"],
                        env={**env, "TOPICWATCH_NOTIFY_PORT": str(port)},
                        cwd=code_dir,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            for port, proc in zip(ports, procs, strict=True):
                wait_healthy(f"http://127.0.0.1:{port}", 60, alive=_alive(proc))
            with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}") as api:
                for i in range(subscriptions):
                    api.post(
                        "/v1/subscriptions",
                        json={
                            "name": f"fanout {i}",
                            "topics": ["air-defence-procurement"],
                            "webhook_url": receiver.url(i),
                        },
                    ).raise_for_status()
            # Every process has seen every subscription before the burst starts.
            names = StreamNames()
            time.sleep(1.0)
            warm = classified_entry(10**9, "warm")
            client.xadd(names.classified, warm)
            deadline = time.monotonic() + timeout
            while receiver.count.value < subscriptions:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{label} warm-up: {receiver.count.value} of {subscriptions} webhooks"
                    )
                time.sleep(0.01)
            spy_bin = shutil.which("py-spy")
            if profile is not None and spy_bin:
                profile.mkdir(parents=True, exist_ok=True)
                for i, proc in enumerate(procs):
                    spies.append(
                        subprocess.Popen(  # noqa: S603 - fixed argv
                            [spy_bin, "record", "--pid", str(proc.pid), "--format", "raw",
                             "--rate", "200", "-o", str(profile / f"{label}notify{i}.txt")],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )  # fmt: skip
                time.sleep(0.5)
            pids = {f"notify{i}": p.pid for i, p in enumerate(procs)}
            pids["receiver"] = receiver.process.pid or 0
            pids["redis"] = server.process.pid if server.process else 0
            cpu_before = {name: _cpu(pid) for name, pid in pids.items()}
            before = receiver.count.value
            expected = before + subscriptions * articles
            started = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for n in range(articles):
                pipe.xadd(names.classified, classified_entry(n))
            pipe.execute()
            deadline = time.monotonic() + timeout
            alerts_before = client.xlen(names.alerts)
            created_s = None
            while receiver.count.value < expected:
                if created_s is None and (
                    client.xlen(names.alerts) - alerts_before >= subscriptions * articles
                ):
                    created_s = time.perf_counter() - started
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"only {receiver.count.value - before} of {expected - before}"
                    )
                time.sleep(0.002)
            seconds = time.perf_counter() - started
            cpu = {name: _cpu(pid) - cpu_before[name] for name, pid in pids.items()}
            time.sleep(0.3)  # anything extra (a duplicate) has time to arrive
            extra = receiver.count.value - expected
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                try:
                    spy.wait(20)
                except subprocess.TimeoutExpired:
                    spy.kill()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for log in logs:
                log.close()
            client.close()
            receiver.stop()
            server.stop()
    deliveries = subscriptions * articles
    return {
        "label": label,
        "processes": processes,
        "deliveries": deliveries,
        "seconds": seconds,
        "alerts_written_s": created_s if created_s is not None else seconds,
        "per_s": deliveries / seconds,
        "duplicates": receiver.dupes.value + max(0, extra),
        "cpu_s": cpu,
        "cpu_pct": {name: 100 * v / seconds for name, v in cpu.items()},
        "load": os.getloadavg(),
    }


def _line(f: dict[str, Any]) -> str:
    cpu = ", ".join(f"{k} {v:.0f} %" for k, v in f["cpu_pct"].items())
    notify_cpu = sum(v for k, v in f["cpu_s"].items() if k.startswith("notify"))
    per_delivery = notify_cpu / f["deliveries"]
    return (
        f"{f['label'] or 'this'}: {f['processes']} notify -> {f['deliveries']} deliveries in "
        f"{f['seconds']:.2f} s = {f['per_s']:.0f}/s (all alerts written after "
        f"{f['alerts_written_s']:.2f} s); duplicates {f['duplicates']}; CPU {cpu}; "
        f"load {f['load'][0]:.1f}; notify CPU {per_delivery * 1e6:.0f} us per delivery "
        f"(= {1 / per_delivery:.0f} deliveries per CPU-second)"
    )


def cmd_bench_fanout(args: argparse.Namespace) -> int:
    runs: list[dict[str, Any]] = []
    codes: list[tuple[str, Path]] = []
    if args.baseline:
        codes.append(("baseline", Path(args.baseline).resolve()))
    codes.append(("this", ROOT))
    for n in args.processes:
        for label, code in codes:
            f = measure(
                code,
                subscriptions=args.subscriptions,
                articles=args.articles,
                processes=n,
                profile=Path(args.profile) if args.profile else None,
                label=f"{label}-{n}p-" if args.profile else label,
            )
            f["label"] = label
            runs.append(f)
            print(_line(f), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "fanout", help="notify: signed webhook deliveries/s with one and two notify processes"
    )
    bench.add_argument("--subscriptions", type=int, default=500)
    bench.add_argument("--articles", type=int, default=20)
    bench.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    bench.add_argument("--baseline", help="a checkout of older code to measure first")
    bench.add_argument("--profile", help="directory for py-spy collapsed stacks")
    bench.add_argument("--json", help="write the figures here too")
    bench.set_defaults(func=cmd_bench_fanout)
