"""The ``topicwatch`` command.

``up`` and ``serve`` live here; every service contributes its own sub-commands from
``services/<service>/cli.py`` through ``register(subparsers)``, so the CLI grows with the
services without this file knowing their details.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from services.common.cli_errors import describe
from services.common.settings import Settings, load_settings
from services.supervisor import SERVICES, Backoff, Supervisor

__all__ = ["SERVICES", "Supervisor", "build_parser", "main"]

#: Modules that add sub-commands (each has ``register(subparsers)``); missing ones are skipped
#: only if the module does not exist at all.
COMMAND_MODULES = (
    "services.ingest.cli",
    "services.classify.cli",
    "services.notify.cli",
    "services.notify.cli_subscriptions",
    "services.asyncapi",
    "services.bench",
    "services.harness.cli",
)


def port_of(settings: Settings, service: str) -> int:
    return int(getattr(settings, f"{service}_port"))


def url_of(settings: Settings, service: str) -> str:
    return f"http://{settings.host}:{port_of(settings, service)}"


def create_service_app(service: str, settings: Settings) -> Any:
    module = importlib.import_module(f"services.{service}.app")
    return module.create_app(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run one service in the foreground."""
    import uvicorn

    settings = load_settings()
    if not settings.redis_url:
        print(
            "topicwatch: TOPICWATCH_REDIS_URL is not set; run `topicwatch up` for an embedded "
            "Redis, or point the service at yours",
            file=sys.stderr,
        )
        return 2
    _configure_logging(settings)
    from services.classify.spec import TaxonomyError

    try:
        app = create_service_app(args.service, settings)
    except TaxonomyError as exc:  # names the file, topic and field: no traceback needed
        print(f"topicwatch: {args.service} cannot start: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=port_of(settings, args.service),
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    )
    # A refusal (old or evicting Redis) ends the process with code 2 after a clean shutdown.
    app.state.runtime.on_fatal = lambda _reason: setattr(server, "should_exit", True)
    server.run()
    refused = getattr(app.state.runtime, "fatal", None)
    if refused:  # e.g. Redis too old or evicting: the log said it, say it last too
        print(f"topicwatch: {args.service} refused to start: {refused}", file=sys.stderr)
        return 2
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded Redis (unless TOPICWATCH_REDIS_URL is set) and the three services."""
    settings = load_settings()
    env = dict(os.environ)
    server: Any = None
    if getattr(args, "cluster", False):
        if settings.redis_url:
            print(
                "topicwatch: --cluster runs its own cluster: unset TOPICWATCH_REDIS_URL",
                file=sys.stderr,
            )
            return 2
        server = _start_embedded_cluster(settings, env)
        if server is None:
            return 1
    elif not settings.redis_url:
        from services.common.redis_server import RedisServer, find_redis_server

        server = RedisServer(
            binary=find_redis_server(settings.redis_server),
            data_dir=Path(settings.data_dir) / "redis",
            port=settings.embedded_redis_port,
            appendonly=True,
        )
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:
            print(f"topicwatch: could not start the embedded Redis: {exc}", file=sys.stderr)
            return 1
        refused = _check_embedded(server.url, settings)
        if refused:
            server.stop()
            print(f"topicwatch: the embedded server cannot be used: {refused}", file=sys.stderr)
            return 1
        env["TOPICWATCH_REDIS_URL"] = server.url
        print(f"redis    {server.url} (embedded, data in {server.data_dir})")
    else:
        print("redis    (TOPICWATCH_REDIS_URL)")
    supervisor = Supervisor(
        env,
        backoff=Backoff(
            first=settings.restart_delay,
            maximum=settings.restart_delay_max,
            healthy_after=settings.restart_healthy_after,
        ),
    )
    stop_requested = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # A hangup (the terminal closed, or `kill -HUP`) stops everything as well: by default it
    # killed this process alone and left Redis and the services running, holding the ports.
    # (The classify service itself reloads its taxonomy on SIGHUP and on every file change.)
    signal.signal(signal.SIGHUP, on_signal)
    supervisor.start()
    for service in SERVICES:
        print(f"{service:<8} {url_of(settings, service)}")
    print("Ctrl-C stops everything.", flush=True)
    try:
        while not stop_requested:
            supervisor.poll()
            time.sleep(0.2)
    finally:
        print("topicwatch: stopping...", file=sys.stderr)
        supervisor.stop()
        if server is not None:
            server.stop()
    return 0


def _start_embedded_cluster(settings: Settings, env: dict[str, str]) -> Any:
    """``up --cluster``: 3 masters with a replica each on the 6 ports from
    TOPICWATCH_EMBEDDED_REDIS_PORT (bus ports 10,000 above), append-only, data in
    TOPICWATCH_DATA_DIR/cluster (created with the CLI on the first start, started again as it
    was afterwards); the services in cluster mode with 3 partitions and the WAIT barrier
    unless the environment says otherwise (docs/scaling.md)."""
    from services.common.redis_cluster import LocalCluster
    from services.common.redis_server import find_redis_server

    base = settings.embedded_redis_port
    cluster = LocalCluster(
        data_dir=Path(settings.data_dir) / "cluster",
        replicas_per_master=1,
        appendonly=True,
        binary=find_redis_server(settings.redis_server),
        ports=[base + i for i in range(6)],
    )
    try:
        cluster.start()
    except (RuntimeError, TimeoutError, ValueError) as exc:
        print(f"topicwatch: could not start the embedded cluster: {exc}", file=sys.stderr)
        return None
    env["TOPICWATCH_REDIS_URL"] = cluster.url
    env["TOPICWATCH_REDIS_CLUSTER"] = "true"
    env.setdefault("TOPICWATCH_PARTITIONS", "3")
    env.setdefault("TOPICWATCH_REDIS_WAIT_REPLICAS", "1")
    print(
        f"redis    cluster of 3 masters with a replica each on ports {base}-{base + 5} "
        f"(embedded, data in {cluster.data_dir}); {env['TOPICWATCH_PARTITIONS']} partitions"
    )
    return cluster


def _check_embedded(url: str, settings: Settings) -> str | None:
    """Why the embedded server (TOPICWATCH_REDIS_SERVER may name any binary) is unusable."""
    from services.common.connections import sync_client
    from services.common.redis_requirements import check_server_sync

    client = sync_client(url)
    try:
        report = check_server_sync(client, require_persistence=settings.require_persistence)
    finally:
        client.close()
    return "; ".join(report.errors) or None


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="topicwatch",
        description="Event-stream alerting for people who watch the news for a living.",
    )
    parser.add_argument("--version", action="version", version=f"topicwatch {_version()}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the Python traceback of an ordinary error (missing file, service down...)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = subparsers.add_parser(
        "up", help="start Redis (embedded unless configured) and all services"
    )
    up.add_argument(
        "--cluster",
        action="store_true",
        help="embedded Valkey Cluster instead of one server: 3 masters with a replica each on "
        "6 ports from TOPICWATCH_EMBEDDED_REDIS_PORT, services in cluster mode, 3 partitions",
    )
    up.set_defaults(func=cmd_up)
    serve = subparsers.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(func=cmd_serve)
    bench = subparsers.add_parser("bench", help="benchmarks that print figures")
    bench_subparsers = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        register: Callable[[Any], None] | None = getattr(module, "register", None)
        if register:
            register(subparsers)
        register_bench: Callable[[Any], None] | None = getattr(module, "register_bench", None)
        if register_bench:
            register_bench(bench_subparsers)
    return parser


def _version() -> str:
    """The installed distribution's version (what pip and bug reports know it by)."""
    try:
        return importlib.metadata.version("topicwatch")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run `make install`)"


def main(argv: list[str] | None = None) -> int:
    """Run one command; an ordinary failure (see ``cli_errors.describe``) is one line on
    stderr and a non-zero exit, whichever command hit it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        described = describe(exc)
        if described is None or args.traceback:
            raise
        message, status = described
        print(f"topicwatch: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
