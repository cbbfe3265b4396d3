"""``topicwatch bench pipeline --cluster``: the pipe on a local Valkey Cluster, 1 and 3 partitions.

Two runs, each on a fresh local cluster of 3 masters (:mod:`services.common.redis_cluster`,
created by the server's own CLI) with the services in cluster mode:

* ``TOPICWATCH_PARTITIONS=1``: every pipeline stream in one slot, so one master carries the
  pipe and one classify and one notify process consume it;
* ``TOPICWATCH_PARTITIONS=3``: each stream split in three, one partition per master, and a
  classify and a notify process per partition (``TOPICWATCH_CONSUME_PARTITIONS=<n>``), as the
  Kubernetes overlay ``redis-cluster`` deploys them.

Each run prints its own bare-relay baseline on the same cluster (three consumer groups, no
work), end-to-end articles/s of the realistic stream with its ratio to that baseline, where
every partition stream lives (which master), and each process's CPU.

On a 2-core machine this proves the **mechanism** — the streams really spread over the
masters and each partition's consumers read only their own — not a speed-up: three
partitions run six consumer processes and three servers on the same two cores as one, so
articles/s cannot grow (it usually falls). The per-partition figures docs/scaling.md
extrapolates from are the single-partition ones, per core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from services.bench.pipeline import FULL, QUICK, Bench, Sizes, end_to_end, relay_baseline, say
from services.bench.report import fmt, machine, table, write_json
from services.bench.stream import subscriptions
from services.harness.stack import ClusterSpec

PARTITION_COUNTS = (1, 3)


def run_partitions(sizes: Sizes, partitions: int) -> dict[str, Any]:
    """One run: a fresh 3-master cluster, ``partitions`` partitions, a classify and a notify
    process per partition; relay baseline, then end to end."""
    with tempfile.TemporaryDirectory(prefix="topicwatch-bench-cluster-") as tmp:
        spec = ClusterSpec(masters=3, replicas_per_master=0, partitions=partitions)
        bench = Bench(sizes, Path(tmp), cluster=spec, replicas={"ingest": 1})
        say(f"{partitions} partition(s): starting a 3-master cluster, ingest and the receiver")
        bench.start()
        try:
            for p in range(partitions):
                for service in ("classify", "notify"):
                    bench.add_replica(service, {"TOPICWATCH_CONSUME_PARTITIONS": str(p)})
            cluster = bench.stack.cluster
            assert cluster is not None
            names = bench.names
            placement = {
                stream: cluster.node_for_key(stream).port
                for stream in (names.ingest, *names.accepted_streams, *names.classified_streams)
            }
            say(f"subscribing {sizes.query_subscriptions:,} stored queries")
            bench.subscribe(subscriptions(sizes.query_subscriptions, f"{bench.recv.url}/track"))
            say(f"bare relay: {sizes.relay_entries:,} entries through three groups")
            relay = relay_baseline(bench)
            say(f"end to end: {sizes.e2e_articles:,} articles of the realistic stream")
            e2e = end_to_end(bench, relay)
            return {
                "partitions": partitions,
                "masters": 3,
                "processes": {
                    service: len(bench.replicas(service))
                    for service in ("ingest", "classify", "notify")
                },
                "placement": placement,
                "relay": relay,
                "end_to_end": e2e,
            }
        except BaseException:
            print(bench.stack.logs_tail(), file=sys.stderr)
            raise
        finally:
            bench.stop()


def run(sizes: Sizes) -> dict[str, Any]:
    figures: dict[str, Any] = {"machine_at_start": machine(), "sizes": asdict(sizes)}
    figures["runs"] = [run_partitions(sizes, p) for p in PARTITION_COUNTS]
    figures["machine_at_end"] = machine()
    return figures


def _cpu(cpu: dict[str, float]) -> str:
    """CPU by kind of process (several servers or replicas summed), heaviest first."""
    kinds: dict[str, float] = {}
    for name, percent in cpu.items():
        kind = name.split("-")[0]
        kinds[kind] = kinds.get(kind, 0.0) + percent
    return ", ".join(f"{k} {v:.0f}%" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


def format_figures(f: dict[str, Any]) -> str:
    rows = []
    for r in f["runs"]:
        relay, e2e = r["relay"], r["end_to_end"]
        masters = len(set(r["placement"].values()))
        rows.append(
            [
                str(r["partitions"]),
                fmt(relay["entries_per_s"], "entries/s"),
                fmt(e2e["articles_per_s"], "articles/s"),
                f"{e2e['ratio_to_relay']:.3f}x",
                f"{r['processes']['classify']} classify, {r['processes']['notify']} notify; "
                f"streams on {masters} master(s); CPU {_cpu(e2e['cpu_percent'])}",
            ]
        )
    start, end = f["machine_at_start"], f["machine_at_end"]
    lines = [
        f"topicwatch bench pipeline --cluster, {start['utc']}: {start['cores']} cores, load "
        f"average {' '.join(map(str, start['load_average']))} at start, "
        f"{' '.join(map(str, end['load_average']))} at end; 3 masters, no replicas",
        "",
        table(
            ["partitions", "bare relay", "end to end", "of relay", "notes"],
            rows,
            align="rrrrl",
        ),
        "",
        "Where each stream lives (master port):",
    ]
    for r in f["runs"]:
        lines.append(f"  {r['partitions']} partition(s): {json.dumps(r['placement'])}")
    lines += [
        "",
        f"On {start['cores']} cores this shows the mechanism (the partition streams on "
        "different masters, a consumer per partition), not a speed-up: every process and "
        "server shares the same cores. CPU % is of one core over the end-to-end phase.",
    ]
    return "\n".join(lines)


def register_bench(bench_subparsers: Any) -> None:
    """Add ``--cluster`` to ``topicwatch bench pipeline`` (registered before this)."""
    parser = bench_subparsers.choices["pipeline"]
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="instead: relay and end to end on a local 3-master cluster with 1 and 3 "
        "partitions, a classify and a notify per partition (--quick, --articles, "
        "--subscriptions and --json apply)",
    )
    single = parser.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        return cmd(args) if args.cluster else int(single(args))

    parser.set_defaults(func=dispatch)


def cmd(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.articles is not None:
        sizes = replace(sizes, e2e_articles=args.articles)
    if args.subscriptions is not None:
        sizes = replace(sizes, query_subscriptions=args.subscriptions)
    figures = run(sizes)
    print(format_figures(figures))
    if args.json:
        write_json(args.json, figures)
    return 0
