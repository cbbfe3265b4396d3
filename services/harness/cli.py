"""``topicwatch soak`` and ``topicwatch chaos``: the reliability harnesses as commands.

Both print a report and exit 1 when the promise did not hold (unbounded state; anything lost
or duplicated), so they can gate a release as well as fill docs/promises.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict
from typing import Any


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the private Redis and the service processes are
    stopped rather than left running."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def cmd_soak(args: argparse.Namespace) -> int:
    from services.harness import soak

    _stop_cleanly_on_sigterm()
    result = soak.run(args.articles, seed=args.seed, timeout=args.timeout, progress=_progress)
    print(soak.report(result))
    return 1 if result.violations else 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from services.harness import chaos

    _stop_cleanly_on_sigterm()
    config = chaos.ChaosConfig(
        articles=args.articles,
        seed=args.seed,
        rate=args.rate,
        kill_every=args.kill_every,
        redis_restarts=args.redis_restarts,
        timeout=args.timeout,
        cluster=args.cluster,
        partitions=args.partitions or (3 if args.cluster else 1),
        master_kills=args.master_kills,
    )
    result = chaos.run(config, progress=_progress)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(chaos.report(result))
    return 0 if result.drained and result.lost == 0 and result.duplicated == 0 else 1


def _positive(value: str) -> int:
    number = int(value.replace("_", "").replace(",", ""))
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def register(subparsers: Any) -> None:
    soak = subparsers.add_parser(
        "soak",
        help="publish many articles with default settings; show Redis stays bounded",
        description=(
            "Runs a private redis-server and the three services with default settings, "
            "publishes N articles and reports used_memory and every stream's and key "
            "family's size before and after (see docs/promises.md)."
        ),
    )
    soak.add_argument("--articles", type=_positive, default=100_000)
    soak.add_argument("--seed", type=int, default=7)
    soak.add_argument("--timeout", type=float, default=3600.0, help="seconds to drain")
    soak.set_defaults(func=cmd_soak)

    chaos = subparsers.add_parser(
        "chaos",
        help="kill services and restart Redis while articles flow; print the accounting",
        description=(
            "Runs a private redis-server (append-only), 1 ingest, 2 classify and 2 notify "
            "processes and a webhook receiver; publishes N articles while SIGKILLing "
            "services at random and restarting Redis; prints published, accepted, duplicate, "
            "rejected, classified, alerts expected/created/delivered, dead-lettered, lost and "
            "duplicated (see docs/promises.md)."
        ),
    )
    chaos.add_argument("--articles", type=_positive, default=10_000)
    chaos.add_argument("--seed", type=int, default=11)
    chaos.add_argument("--rate", type=float, default=150.0, help="articles published per second")
    chaos.add_argument(
        "--kill-every", type=float, default=3.0, help="mean seconds between SIGKILLs"
    )
    chaos.add_argument("--redis-restarts", type=int, default=2)
    chaos.add_argument(
        "--cluster",
        action="store_true",
        help="run on a local cluster (3 masters, a replica each) in cluster mode; the Redis "
        "faults are master SIGKILLs (a replica takes over) instead of restarts",
    )
    chaos.add_argument(
        "--partitions",
        type=_positive,
        default=None,
        help="TOPICWATCH_PARTITIONS (default 3 with --cluster, else 1)",
    )
    chaos.add_argument(
        "--master-kills", type=int, default=2, help="with --cluster: masters SIGKILLed mid-run"
    )
    chaos.add_argument("--timeout", type=float, default=900.0, help="seconds to drain")
    chaos.add_argument("--json", action="store_true", help="print the accounting as JSON")
    chaos.set_defaults(func=cmd_chaos)
