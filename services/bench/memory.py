"""``topicwatch bench memory``: what one subscription costs, in Redis and in a notify process.

The capacity model (docs/scaling.md) needs bytes per subscription, per article and per alert.
Articles and alerts come from ``topicwatch soak`` (it reports every key family's bytes after N
articles through the pipe); this measures subscriptions, which the soak has only three of:

1. a private server (the bundled Valkey, or ``TOPICWATCH_REDIS_SERVER``), ``used_memory``
   before and after N subscriptions are written through the product's store
   (``SubscriptionStore.put``: the JSON document, the index member, the change notice), the
   realistic mix of :mod:`services.bench.stream` (desk topics and stored queries);
2. a ``topicwatch serve notify`` process started on that data: its resident memory once it
   has loaded and indexed them (the percolator lives in each notify process), against one
   started with no subscriptions.

``--cluster`` runs (1) on a local 3-master cluster in cluster mode instead (the store lives in
one slot, so on one master: the figure is the same bytes, but shows where they sit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.bench.pipeline import fanout_article
from services.bench.report import machine
from services.bench.stream import subscriptions
from services.common.connections import async_client, sync_client
from services.common.http import wait_healthy
from services.common.redis_cluster import LocalCluster
from services.common.redis_server import RedisServer, free_port
from services.common.streams import StreamNames
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate


def used_memory(client: Any, cluster: bool) -> int:
    """Bytes the server(s) use for data and overhead (every master's, in a cluster)."""
    if not cluster:
        return int(client.info("memory")["used_memory"])
    total = 0
    for node in client.get_primaries():
        total += int(client.info("memory", target_nodes=node)["used_memory"])
    return total


async def _put_all(url: str, cluster: bool, names: StreamNames, subs: list[Subscription]) -> None:
    client = async_client(url, cluster=cluster)
    store = SubscriptionStore(client, names)
    try:
        for start in range(0, len(subs), 10):
            await asyncio.gather(*(store.put(s) for s in subs[start : start + 10]))
    finally:
        await client.aclose()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def notify_rss(url: str, prefix: str, workdir: Path, settle: float = 3.0) -> float:
    """Resident MB of a notify process on ``url`` with ``prefix`` once its index is built:
    notify builds it on the first article it reads, so one is written to the classified
    stream, and the RSS is read once that article is acknowledged and the RSS has not moved
    for ``settle`` seconds."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICWATCH_")}
    env.update(
        TOPICWATCH_REDIS_URL=url,
        TOPICWATCH_STREAM_PREFIX=prefix,
        TOPICWATCH_NOTIFY_PORT=str(port),
        TOPICWATCH_LOG_LEVEL="WARNING",
    )
    with (workdir / f"notify-{prefix}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "notify"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", 300, alive=lambda: process.poll() is None)
            names = StreamNames(prefix)
            client = sync_client(url)
            try:
                client.xadd(names.classified, fanout_article(0))
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and not _read(client, names.classified):
                    time.sleep(0.2)
            finally:
                client.close()
            last, since = rss_mb(process.pid), time.monotonic()
            while time.monotonic() - since < settle:
                time.sleep(0.5)
                now = rss_mb(process.pid)
                if abs(now - last) > 0.5:
                    last, since = now, time.monotonic()
            return last
        finally:
            process.kill()
            process.wait(30)


def _read(client: Any, stream: str) -> bool:
    """The notify group has read and acknowledged everything on ``stream``."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except Exception:  # not created yet
        return False
    return any(int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0 for g in groups)


def run(count: int, *, cluster: bool = False) -> dict[str, Any]:
    names = StreamNames(partitions=1, tagged=cluster)
    subs = [
        Subscription.create(SubscriptionCreate(**request))
        # A loopback address nothing listens on: notify never sends anywhere (private
        # addresses are refused by default) even if the measuring article matched.
        for request in subscriptions(count, "http://127.0.0.1:9/topicwatch")
    ]
    with tempfile.TemporaryDirectory(prefix="topicwatch-bench-memory-") as tmp:
        root = Path(tmp)
        server: RedisServer | LocalCluster
        if cluster:
            server = LocalCluster(data_dir=root / "cluster")
        else:
            server = RedisServer(data_dir=root / "redis", appendonly=False)
        with server:
            client = sync_client(server.url, cluster=cluster)
            try:
                before = used_memory(client, cluster)
                started = time.monotonic()
                asyncio.run(_put_all(server.url, cluster, names, subs))
                seconds = time.monotonic() - started
                after = used_memory(client, cluster)
                sample = [names.subscriptions_key("subscription", s.id) for s in subs[:500]]
                per_key = sum(int(client.memory_usage(k, samples=0) or 0) for k in sample)
            finally:
                client.close()
            figures: dict[str, Any] = {
                "machine": machine(),
                "subscriptions": count,
                "cluster": cluster,
                "used_memory_before": before,
                "used_memory_after": after,
                "redis_bytes_per_subscription": round((after - before) / count),
                "document_bytes_per_subscription": round(per_key / len(sample)),
                "mean_json_bytes": round(sum(len(s.model_dump_json()) for s in subs) / count),
                "write_seconds": round(seconds, 2),
            }
            if not cluster:
                empty = notify_rss(server.url, "empty", root)
                loaded = notify_rss(server.url, names.prefix, root)
                figures.update(
                    notify_rss_mb_empty=round(empty, 1),
                    notify_rss_mb_loaded=round(loaded, 1),
                    notify_kb_per_subscription=round((loaded - empty) * 1024 / count, 2),
                )
    return figures


def format_figures(f: dict[str, Any]) -> str:
    m = f["machine"]
    lines = [
        f"topicwatch bench memory, {m['utc']}: {f['subscriptions']:,} subscriptions "
        f"({'3-master cluster' if f['cluster'] else 'one server'}); load average "
        f"{' '.join(map(str, m['load_average']))}",
        f"  Redis: used_memory {f['used_memory_before']:,} -> {f['used_memory_after']:,} B: "
        f"{f['redis_bytes_per_subscription']:,} B per subscription "
        f"(its document alone {f['document_bytes_per_subscription']:,} B by MEMORY USAGE; "
        f"JSON {f['mean_json_bytes']:,} B)",
    ]
    if "notify_kb_per_subscription" in f:
        lines.append(
            f"  notify: RSS {f['notify_rss_mb_empty']:,} MB with none, "
            f"{f['notify_rss_mb_loaded']:,} MB with them: "
            f"{f['notify_kb_per_subscription']:,} KB per subscription (index in each process)"
        )
    return "\n".join(lines)


def cmd_bench_memory(args: argparse.Namespace) -> int:
    figures = run(args.subscriptions, cluster=args.cluster)
    print(format_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser(
        "memory",
        help="bytes per subscription in Redis and in a notify process (docs/scaling.md)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--subscriptions", type=int, default=20_000)
    parser.add_argument("--cluster", action="store_true", help="on a local 3-master cluster")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.set_defaults(func=cmd_bench_memory)
