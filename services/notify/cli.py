"""Notify's sub-commands: ``subscribe``, ``tail``, ``dead-letters list|replay``.

``subscribe`` and ``tail`` talk to the notify API (``TOPICWATCH_NOTIFY_PORT`` on
``TOPICWATCH_HOST``, or ``--url``); ``dead-letters`` reads and replays the dead-letter stream
in Redis directly (``TOPICWATCH_REDIS_URL``), so it works while the service is down too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse
from prometheus_client import CollectorRegistry
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from services.common.cli_errors import CommandError, ServiceRefused, check_response
from services.common.connections import redis_client
from services.common.settings import Settings, load_settings
from services.common.streams import StreamNames
from services.notify.deadletters import list_dead_letters, replay_dead_letters
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.retry import RetryPolicy
from services.notify.store import SubscriptionStore


def register(subparsers: Any) -> None:
    sub = subparsers.add_parser("subscribe", help="create a subscription (webhook, e-mail or none)")
    sub.add_argument("--topic", action="append", default=[], help="topic id (repeatable)")
    sub.add_argument("--query", help="boolean query, e.g. '\"S-400\" AND (Turkey OR India)'")
    sub.add_argument("--min-score", type=float, help="lowest topic score that alerts (0..1)")
    sub.add_argument("--name", help="a name for the subscription (default: from the filters)")
    target = sub.add_mutually_exclusive_group()
    target.add_argument("--webhook", metavar="URL", help="deliver to this webhook")
    target.add_argument("--email", metavar="ADDR", help="deliver by e-mail")
    sub.add_argument("--digest", type=int, metavar="MINUTES", help="one digest every N minutes")
    sub.add_argument("--url", help="notify base URL (default from settings)")
    sub.add_argument("--json", action="store_true", help="print the API's JSON answer")
    sub.set_defaults(func=cmd_subscribe)

    tail = subparsers.add_parser("tail", help="follow a subscription's alerts live")
    tail.add_argument("subscription_id", metavar="SUBSCRIPTION_ID")
    tail.add_argument(
        "--token",
        help="the subscription's read token (default $TOPICWATCH_READ_TOKEN, else an API key)",
    )
    tail.add_argument("--since", help="replay from this alert id or time first")
    tail.add_argument("--count", type=int, help="exit after this many alerts")
    tail.add_argument("--url", help="notify base URL (default from settings)")
    tail.set_defaults(func=cmd_tail)

    dead = subparsers.add_parser("dead-letters", help="alerts whose delivery failed for good")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = dead_sub.add_parser("list", help="show dead-lettered alerts, oldest first")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON record per line")
    listing.set_defaults(func=cmd_dead_list)
    replay = dead_sub.add_parser("replay", help="queue dead-lettered alerts for delivery again")
    replay.add_argument("alert_ids", nargs="*", metavar="ALERT_ID")
    replay.add_argument("--all", action="store_true", help="replay every dead-lettered alert")
    replay.set_defaults(func=cmd_dead_replay)


def _base_url(settings: Settings, override: str | None) -> str:
    return (override or f"http://{settings.host}:{settings.notify_port}").rstrip("/")


# --- subscribe -------------------------------------------------------------------------------


def cmd_subscribe(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not args.topic and not args.query:
        print("topicwatch: give at least one --topic or a --query", file=sys.stderr)
        return 2
    body: dict[str, Any] = {
        "name": args.name or ", ".join([*args.topic, *([args.query] if args.query else [])])[:200],
        "topics": args.topic,
    }
    if args.query:
        body["query"] = args.query
    if args.min_score is not None:
        body["min_score"] = args.min_score
    if args.webhook:
        body["webhook_url"] = args.webhook
    if args.email:
        body["email"] = args.email
    if args.digest:
        body.update(delivery="digest", digest_interval_minutes=args.digest)
    base = _base_url(settings, args.url)
    response = httpx.post(
        f"{base}/v1/subscriptions", json=body, headers=settings.api_headers(), timeout=30
    )
    check_response(response, 201)
    created = response.json()
    if args.json:
        print(json.dumps(created, indent=2))
        return 0
    print(f"subscription {created['id']} created")
    print(f"  read token:     {created['read_token']}  (for `topicwatch tail` and history)")
    if created.get("webhook_secret"):
        print(f"  webhook secret: {created['webhook_secret']}  (verify signatures with it)")
    print("  these secrets are shown once; keep them.")
    print(
        f"  follow it:      TOPICWATCH_READ_TOKEN={created['read_token']} "
        f"topicwatch tail {created['id']}"
    )
    return 0


# --- tail ------------------------------------------------------------------------------------


def render_alert(alert: dict[str, Any]) -> Panel:
    """One alert as a block: title, source and time, link, topics, other outlets."""
    article = alert.get("article", {})
    lines = [Text(article.get("title", "(no title)"), style="bold")]
    meta = " · ".join(str(p) for p in (article.get("source"), article.get("published_at")) if p)
    if meta:
        lines.append(Text(meta, style="dim"))
    if article.get("url"):
        lines.append(Text(article["url"], style="cyan"))
    topics = ", ".join(f"{t['id']} {t['score']:.2f}" for t in alert.get("topics", []))
    if topics:
        lines.append(Text(f"topics: {topics}"))
    others = [
        a.get("source") or a.get("url") or a.get("id") for a in alert.get("also_reported_by", [])
    ]
    if others:
        lines.append(Text(f"also reported by: {', '.join(str(o) for o in others)}"))
    return Panel(
        Group(*lines),
        title=alert.get("id", ""),
        title_align="left",
        subtitle=str(alert.get("created_at", "")),
        subtitle_align="right",
    )


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the live stream; on a dropped connection, reconnect with Last-Event-ID.

    Events are decoded by httpx-sse, which follows the SSE spec: the last ``id:`` of an event
    wins (and carries over to later events), ``data:`` lines join with newlines, comments
    (keep-alives) are skipped, lines end at CR, LF or CRLF only (an alert title holding
    U+2028 stays whole), and a ``retry:`` from the server sets the reconnection delay.
    A service that cannot be reached (or refuses) at the start is an error; a stream that
    drops after it was open is reconnected.
    """
    settings = load_settings()
    base = _base_url(settings, args.url)
    read_token = settings.read_token.get_secret_value() if settings.read_token else None
    token = args.token or read_token
    headers = {"Authorization": f"Bearer {token}"} if token else settings.api_headers()
    console = Console()
    last_id = ""
    seen = 0
    retry_base = 0.5  # seconds; the server's `retry:` replaces it
    backoff = retry_base
    connected_once = False
    url = f"{base}/v1/subscriptions/{args.subscription_id}/stream"
    timeout = httpx.Timeout(10.0, read=None)
    with httpx.Client(timeout=timeout) as client:
        while True:
            request_headers = dict(headers)
            params = {}
            if last_id:
                request_headers["Last-Event-ID"] = last_id
            elif args.since:
                params["since"] = args.since
            try:
                with connect_sse(
                    client, "GET", url, headers=request_headers, params=params
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        response.read()
                        raise ServiceRefused(response, f"tail {args.subscription_id}")
                    connected_once = True
                    backoff = retry_base
                    for event in source.iter_sse():
                        if event.retry is not None:
                            retry_base = backoff = max(event.retry / 1000, 0.05)
                        last_id = event.id or last_id
                        # No data, no event (the spec dispatches none; httpx-sse yields it
                        # for its id or retry).
                        if event.event != "alert" or not event.data:
                            continue
                        try:
                            alert = json.loads(event.data)
                        except ValueError:
                            print(
                                f"topicwatch: skipped an alert event that is not JSON "
                                f"(id {event.id or '-'}): {event.data[:80]!r}",
                                file=sys.stderr,
                            )
                            continue
                        console.print(render_alert(alert))
                        seen += 1
                        if args.count and seen >= args.count:
                            return 0
                print("topicwatch: the stream was closed; reconnecting", file=sys.stderr)
            except SSEError as exc:  # not an event stream at all: retrying will not help
                raise CommandError(f"{url} did not answer with an event stream: {exc}") from None
            except httpx.TransportError as exc:
                if not connected_once:
                    raise
                print(f"topicwatch: stream interrupted ({exc}); reconnecting", file=sys.stderr)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


# --- dead letters ----------------------------------------------------------------------------


def _redis_settings() -> Settings:
    """TOPICWATCH_REDIS_URL, or the embedded Redis of `topicwatch up` when it is unset."""
    return load_settings().with_redis()


def cmd_dead_list(args: argparse.Namespace) -> int:
    settings = _redis_settings()

    async def run() -> int:
        client = redis_client(settings)
        try:
            records = await list_dead_letters(
                client, StreamNames.for_settings(settings), count=args.limit
            )
        finally:
            await client.aclose()
        for record in records:
            if args.json:
                print(json.dumps({"entry_id": record.entry_id, **record.data}))
                continue
            data = record.data
            title = data["alert"]["article"]["title"]
            print(f"{data['alert']['id']}  {data['subscription_id']}  {data['dead_at']}")
            print(f"  {title}")
            print(f"  {data['channel']}: {data['reason']}")
            for i, attempt in enumerate(data.get("attempts", []), 1):
                print(
                    f"    attempt {i} at {attempt['at']}: {attempt['status']} "
                    f"{attempt.get('reason', '')}"
                )
        if not args.json:
            print(f"{len(records)} dead-lettered alert(s)")
        return 0

    return asyncio.run(run())


def cmd_dead_replay(args: argparse.Namespace) -> int:
    settings = _redis_settings()
    if not args.alert_ids and not args.all:
        print("topicwatch: name ALERT_IDs to replay, or --all", file=sys.stderr)
        return 2

    async def run() -> int:
        client = redis_client(settings)
        names = StreamNames.for_settings(settings)
        try:
            worker = DeliveryWorker(
                client,
                names,
                SubscriptionStore(client, names),
                {},
                RetryPolicy.from_settings(settings),
                DeliveryMetrics(CollectorRegistry()),
            )
            records = []
            start = "-"
            while True:  # page through the whole stream
                page = await list_dead_letters(client, names, count=500, start=start)
                records += page
                if len(page) < 500:
                    break
                start = f"({page[-1].entry_id}"
            if not args.all:
                wanted = set(args.alert_ids)
                records = [r for r in records if r.data["alert"]["id"] in wanted]
                missing = wanted - {r.data["alert"]["id"] for r in records}
                for alert_id in sorted(missing):
                    print(
                        f"topicwatch: {alert_id} is not in the dead-letter stream", file=sys.stderr
                    )
            refused: dict[str, str] = {}
            queued = await replay_dead_letters(worker, records, refused)
        finally:
            await client.aclose()
        for alert_id in queued:
            print(f"queued {alert_id}")
        for alert_id, reason in refused.items():
            print(f"topicwatch: {alert_id} not replayed: {reason}", file=sys.stderr)
        print(f"{len(queued)} alert(s) queued for delivery again")
        if refused:
            return 1
        return 0 if args.all or len(queued) == len(set(args.alert_ids)) else 1

    return asyncio.run(run())
