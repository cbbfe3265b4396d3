"""Ingest's sub-commands: ``publish``, ``rejected list|retry`` and ``feeds add|list|remove|poll``.

They talk to the ingest HTTP API (not to Redis directly), so they work the same against
``topicwatch up``'s embedded Redis, a remote deployment, and with API keys switched on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.common.cli_errors import ServiceRefused
from services.common.files import FileItem, read_all
from services.common.settings import Settings, load_settings
from services.ingest.api import VIA_HEADER

__all__ = ["register"]

#: Attempts for a batch the service answered 503 to (Redis briefly away), with backoff.
PUBLISH_ATTEMPTS = 5


def register(subparsers: Any) -> None:
    publish = subparsers.add_parser(
        "publish", help="send article files (JSON, JSON array, JSONL, or a folder) to ingest"
    )
    publish.add_argument("files", nargs="+", metavar="FILE")
    _add_url(publish)
    publish.add_argument("--batch", type=int, default=200, help="articles per request")
    publish.add_argument(
        "--quiet", action="store_true", help="no progress bar (the summary is still printed)"
    )
    publish.set_defaults(func=cmd_publish)

    rejected = subparsers.add_parser("rejected", help="inputs ingest refused, and retrying them")
    rejected_sub = rejected.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = rejected_sub.add_parser("list", help="newest rejections with their reasons")
    _add_url(listing)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_rejected_list)
    retry = rejected_sub.add_parser(
        "retry", help="re-submit rejections (after fixing topicwatch or the payload)"
    )
    _add_url(retry)
    retry.add_argument("ids", nargs="*", metavar="ENTRY_ID")
    retry.add_argument("--all", action="store_true", help="every rejection (newest 1,000)")
    retry.add_argument(
        "--payload",
        type=Path,
        metavar="FILE",
        help="a corrected JSON payload to submit instead (with exactly one ENTRY_ID)",
    )
    retry.set_defaults(func=cmd_rejected_retry)

    feeds = subparsers.add_parser("feeds", help="RSS/Atom feeds ingest polls")
    feeds_sub = feeds.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = feeds_sub.add_parser("add", help="poll a feed from now on")
    add.add_argument("feed_url", metavar="URL")
    _add_url(add)
    add.set_defaults(func=cmd_feeds_add)
    flist = feeds_sub.add_parser("list", help="feeds with last success, last error, items seen")
    _add_url(flist)
    flist.add_argument("--json", action="store_true")
    flist.set_defaults(func=cmd_feeds_list)
    remove = feeds_sub.add_parser("remove", help="stop polling a feed")
    remove.add_argument("feed_url", metavar="URL")
    _add_url(remove)
    remove.set_defaults(func=cmd_feeds_remove)
    poll = feeds_sub.add_parser("poll", help="poll every feed now")
    _add_url(poll)
    poll.set_defaults(func=cmd_feeds_poll)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="ingest base URL (default from TOPICWATCH_HOST/_INGEST_PORT)")


def _client(args: argparse.Namespace, settings: Settings, timeout: float = 60.0) -> httpx.Client:
    base = args.url or f"http://{settings.host}:{settings.ingest_port}"
    return httpx.Client(base_url=base, headers=settings.api_headers(), timeout=timeout)


def _fail(response: httpx.Response) -> int:
    """Say what the service refused, field by field when it named fields."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        for item in detail:
            print(f"topicwatch: {item.get('field')}: {item.get('message')}", file=sys.stderr)
    else:  # one line, as the CLI entry says every refusal (with the API-key hint on a 401)
        print(f"topicwatch: {ServiceRefused(response).message}", file=sys.stderr)
    return 2


def _call(
    args: argparse.Namespace, method: str, path: str, *, timeout: float = 60.0, **kwargs: Any
) -> httpx.Response:
    """One request to ingest's API (an unreachable service is reported by the CLI entry)."""
    with _client(args, load_settings(), timeout=timeout) as client:
        return client.request(method, path, **kwargs)


# --- publish ------------------------------------------------------------------------------


class Tally:
    """Outcomes of a publish run: counts, and every rejection with where it came from."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rejections: list[tuple[str, str]] = []

    def add(self, source: str, result: dict[str, Any]) -> None:
        status = str(result.get("status", "rejected"))
        self.counts[status] += 1
        if status == "rejected":
            self.rejections.append((source, str(result.get("reason") or "rejected")))


def _batches(items: list[FileItem], size: int) -> Iterator[list[FileItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _send_batch(
    client: httpx.Client,
    batch: list[FileItem],
    tally: Tally,
    max_article_bytes: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST one batch as NDJSON (one line per article, exactly as read from the file)."""
    sendable: list[FileItem] = []
    for item in batch:
        size = len(item.raw.encode("utf-8", errors="replace"))
        if size > max_article_bytes:
            tally.add(
                item.source,
                {
                    "status": "rejected",
                    "reason": f"article is {size} bytes, over the limit of {max_article_bytes}",
                },
            )
        else:
            sendable.append(item)
    if not sendable:
        return
    body = "\n".join(json.dumps(item.value, ensure_ascii=False) for item in sendable) + "\n"
    for attempt in range(PUBLISH_ATTEMPTS):
        response = client.post(
            "/v1/articles",
            content=body.encode("utf-8"),
            headers={"Content-Type": "application/x-ndjson", VIA_HEADER: "file"},
        )
        if response.status_code in (202, 422) and "articles" in response.json():
            for item, result in zip(sendable, response.json()["articles"], strict=True):
                tally.add(item.source, result)
            return
        if response.status_code == 413 and len(sendable) > 1:
            # Over a limit of the service's (request bytes, batch size) that this machine's
            # settings do not know: nothing was stored, so send each half on its own.
            half = len(sendable) // 2
            for part in (sendable[:half], sendable[half:]):
                _send_batch(client, part, tally, max_article_bytes, sleep)
            return
        if response.status_code == 413:
            tally.add(sendable[0].source, {"status": "rejected", "reason": _detail(response)})
            return
        if response.status_code == 503 and attempt + 1 < PUBLISH_ATTEMPTS:
            # What was stored comes back as duplicate on the retry: nothing is counted twice.
            sleep(min(2.0**attempt, 10.0))
            continue
        raise PublishError(response)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"ingest answered {response.status_code}"


class PublishError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"ingest answered {response.status_code}")


def _summary(console: Console, tally: Tally) -> None:
    counts = tally.counts
    console.print(
        f"accepted {counts['accepted']}, duplicate {counts['duplicate']}, "
        f"rejected {counts['rejected']}"
    )
    if tally.rejections and not console.is_terminal:
        # Plain lines when piped or logged: one rejection per line, nothing wrapped.
        for source, reason in tally.rejections:
            console.print(f"  rejected {source}: {reason}", markup=False, highlight=False)
    elif tally.rejections:
        table = Table("input", "reason", title="rejected", show_lines=False, expand=False)
        for source, reason in tally.rejections:
            table.add_row(source, reason)
        console.print(table)


def cmd_publish(args: argparse.Namespace) -> int:
    """POST the files' articles in batches; summary at the end, exit 1 if any was rejected."""
    settings = load_settings()
    console = Console(soft_wrap=True)
    tally = Tally()
    items: list[FileItem] = []
    for path in args.files:
        if not Path(path).exists():
            tally.add(str(path), {"status": "rejected", "reason": "no such file or folder"})
            continue
        for item in read_all([path]):
            if item.error:
                tally.add(item.source, {"status": "rejected", "reason": item.error})
            else:
                items.append(item)
    batch_size = max(1, min(args.batch, settings.ingest_max_batch))
    show_progress = not args.quiet and len(items) > batch_size
    progress = Progress(
        TextColumn("publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
        transient=True,
    )
    with _client(args, settings) as client, progress:
        task = progress.add_task("publish", total=len(items))
        try:
            for batch in _batches(items, batch_size):
                _send_batch(client, batch, tally, settings.ingest_max_article_bytes)
                progress.advance(task, len(batch))
        except httpx.HTTPError:
            _summary(console, tally)  # what was sent before the service went away
            raise
        except PublishError as exc:
            _summary(console, tally)
            return _fail(exc.response)
    _summary(console, tally)
    return 1 if tally.counts["rejected"] else 0


# --- rejected -----------------------------------------------------------------------------


def cmd_rejected_list(args: argparse.Namespace) -> int:
    response = _call(args, "GET", "/v1/rejected", params={"limit": args.limit})
    if response.status_code != 200:
        return _fail(response)
    data = response.json()
    if args.json:
        for entry in data["rejected"]:
            print(json.dumps(entry, ensure_ascii=False))
        return 0
    console = Console(soft_wrap=True)
    table = Table("entry id", "rejected at", "via", "reason", "payload")
    for entry in data["rejected"]:
        payload = str(entry.get("payload", entry.get("unreadable", "")))
        table.add_row(
            entry["entry_id"],
            str(entry.get("rejected_at", ""))[:19],
            str(entry.get("received_via", "")),
            str(entry.get("reason", "unreadable entry")),
            payload[:60] + ("..." if len(payload) > 60 else ""),
        )
    console.print(table)
    console.print(f"{len(data['rejected'])} shown of {data['total']} rejected")
    return 0


def cmd_rejected_retry(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        print("topicwatch: name ENTRY_IDs to retry, or --all", file=sys.stderr)
        return 2
    request: dict[str, Any] = {"ids": args.ids, "all": args.all}
    if args.payload is not None:
        if len(args.ids) != 1:
            print("topicwatch: --payload needs exactly one ENTRY_ID", file=sys.stderr)
            return 2
        try:
            request["payloads"] = {args.ids[0]: json.loads(args.payload.read_text())}
        except (OSError, ValueError) as exc:
            print(f"topicwatch: cannot read {args.payload}: {exc}", file=sys.stderr)
            return 2
    response = _call(args, "POST", "/v1/rejected/retry", json=request)
    if response.status_code != 200:
        return _fail(response)
    results = response.json()["results"]
    counts: Counter[str] = Counter()
    for result in results:
        counts[result["status"]] += 1
        line = f"{result['entry_id']}: {result['status']}"
        if result.get("reason"):
            line += f" ({result['reason']})"
        print(line)
    print(", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "nothing to retry")
    return 1 if counts["rejected"] or counts["not_found"] else 0


# --- feeds --------------------------------------------------------------------------------


def _feeds_table(feeds: list[dict[str, Any]]) -> Table:
    table = Table("feed", "title", "last success", "last outcome", "items seen", "last error")
    for feed in feeds:
        table.add_row(
            feed["url"],
            feed.get("title") or "",
            str(feed.get("last_success_at") or "never")[:19],
            feed.get("last_outcome", ""),
            str(feed.get("items_seen", 0)),
            feed.get("last_error") or "",
        )
    return table


def cmd_feeds_add(args: argparse.Namespace) -> int:
    response = _call(args, "POST", "/v1/feeds", json={"url": args.feed_url})
    if response.status_code == 201:
        print(f"added {response.json()['url']}")
        return 0
    if response.status_code == 200:
        print(f"already polled: {response.json()['url']}")
        return 0
    return _fail(response)


def cmd_feeds_list(args: argparse.Namespace) -> int:
    response = _call(args, "GET", "/v1/feeds")
    if response.status_code != 200:
        return _fail(response)
    feeds = response.json()["feeds"]
    if args.json:
        for feed in feeds:
            print(json.dumps(feed))
    elif feeds:
        Console(soft_wrap=True).print(_feeds_table(feeds))
    else:
        print("no feeds (add one with `topicwatch feeds add URL`)")
    return 0


def cmd_feeds_remove(args: argparse.Namespace) -> int:
    response = _call(args, "DELETE", "/v1/feeds", params={"url": args.feed_url})
    if response.status_code == 200:
        print(f"removed {args.feed_url}")
        return 0
    if response.status_code == 404:
        print(f"topicwatch: no feed {args.feed_url}", file=sys.stderr)
        return 1
    return _fail(response)


def cmd_feeds_poll(args: argparse.Namespace) -> int:
    response = _call(args, "POST", "/v1/feeds/poll", timeout=300.0)
    if response.status_code != 200:
        return _fail(response)
    feeds = response.json()["feeds"]
    Console(soft_wrap=True).print(_feeds_table(feeds))
    return 1 if any(feed.get("last_outcome") == "error" for feed in feeds) else 0
