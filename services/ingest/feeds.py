"""RSS/Atom feeds: conditional fetch, parsing, items -> submissions, and per-feed status.

A feed is polled every few minutes for days; fetching it whole each time wastes the
publisher's bandwidth and ours, so every poll is a conditional GET (``If-None-Match`` with the
last ETag, ``If-Modified-Since`` with the last ``Last-Modified``) and a 304 costs nothing.
feedparser does the parsing: twenty years of malformed feeds are its problem, not ours.  It is
only ever handed bytes — given a string it would treat it as a URL and fetch it itself.

Each item becomes an ``ArticleSubmission`` and goes through the same normalisation and
de-duplication as every other input; ``item_key`` is the feed's own identity for the item (its
guid), used to remember which items were already ingested.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from services.common.html import fragment_to_text
from services.common.models import MetadataValue, utcnow
from services.common.ssrf import CheckedTarget, pinned_stream

#: A feed larger than this is refused (a real feed is kilobytes; this is a runaway response).
MAX_FEED_BYTES = 10 * 1024 * 1024
USER_AGENT = "topicwatch-feeds/0.1 (+conditional GET)"

FetchOutcome = Literal["ok", "not_modified", "error"]


class FeedError(Exception):
    """The feed could not be fetched or parsed; the message is the status shown to users."""


@dataclass(slots=True)
class FeedItem:
    """One feed entry, reduced to what ingest uses."""

    key: str
    title: str | None
    link: str | None
    text: str | None
    published: datetime | str | None
    author: str | None
    guid: str | None


@dataclass(slots=True)
class ParsedFeed:
    title: str | None
    items: list[FeedItem] = field(default_factory=list)


@dataclass(slots=True)
class FeedFetch:
    """The outcome of one poll."""

    outcome: FetchOutcome
    feed: ParsedFeed | None = None
    etag: str | None = None
    last_modified: str | None = None
    http_status: int | None = None
    error: str | None = None


class FeedStatus(BaseModel):
    """What ``GET /v1/feeds`` and ``topicwatch feeds list`` show for one feed."""

    url: str
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_outcome: Literal["never", "ok", "not_modified", "error"] = "never"
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_errors: int = 0
    items_seen: int = 0
    """Distinct items this feed has delivered (each ingested once)."""
    last_items_new: int = 0


def _entry_text(entry: Any) -> str | None:
    """The richest text an entry has: full content, else summary; HTML flattened to text."""
    candidates: list[tuple[str, str]] = []
    for content in entry.get("content") or []:
        value = content.get("value")
        if value:
            candidates.append((value, content.get("type") or "text/html"))
    summary = entry.get("summary")
    if summary:
        detail = entry.get("summary_detail") or {}
        candidates.append((summary, detail.get("type") or "text/html"))
    for value, kind in candidates:
        text = fragment_to_text(value) if "html" in kind else value
        if text.strip():
            return text
    return None


def _entry_published(entry: Any) -> datetime | str | None:
    for name in ("published", "updated", "created"):
        parsed = entry.get(f"{name}_parsed")
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                pass
        raw = entry.get(name)
        if raw:
            return str(raw)
    return None


def item_key(guid: str | None, link: str | None, title: str | None, text: str | None) -> str:
    """The feed's identity for an item: its guid, else its link, else a hash of its text."""
    if guid:
        return f"guid:{guid}"
    if link:
        return f"link:{link}"
    digest = hashlib.sha256(f"{title or ''}\x00{text or ''}".encode()).hexdigest()
    return f"hash:{digest[:32]}"


def parse_feed(content: bytes, *, headers: dict[str, str] | None = None) -> ParsedFeed:
    """Parse RSS/Atom bytes; raises ``FeedError`` when they are not a feed at all."""
    import feedparser

    parsed = feedparser.parse(content, response_headers=headers or {})
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""
    if not entries and not version:
        problem = parsed.get("bozo_exception")
        raise FeedError(f"not an RSS/Atom feed{f': {problem}' if problem else ''}")
    feed_meta = parsed.get("feed") or {}
    items = []
    for entry in entries:
        guid = entry.get("id") or None
        link = entry.get("link") or None
        title = entry.get("title") or None
        text = _entry_text(entry)
        items.append(
            FeedItem(
                key=item_key(guid, link, title, text),
                title=title,
                link=link,
                text=text,
                published=_entry_published(entry),
                author=entry.get("author") or None,
                guid=guid,
            )
        )
    return ParsedFeed(title=feed_meta.get("title") or None, items=items)


def item_to_submission(item: FeedItem, *, feed_url: str, feed_title: str | None) -> dict[str, Any]:
    """The submission payload for a feed item (validated by the caller like any input).

    A payload rather than a model, so that an item that does not validate (no title, say) can
    be rejected with its original content like any other bad input.  Items with only a title
    (common in headline feeds) use the title as body: that is all the text the feed offers.
    """
    metadata: dict[str, MetadataValue] = {"feed_url": feed_url, "feed_item": item.key}
    if feed_title:
        metadata["feed_title"] = feed_title
    if item.author:
        metadata["feed_author"] = item.author
    body = item.text
    if not (body and body.strip()) and item.title:
        body = item.title
        metadata["body_from"] = "title"
    published = item.published
    return {
        "id": item.guid,
        "title": item.title,
        "body": body,
        "url": item.link,
        "source": feed_title,
        "published_at": published.isoformat() if isinstance(published, datetime) else published,
        "metadata": metadata,
    }


#: Checks one address before it is fetched (the feed URL and every redirect) and returns the
#: checked target, whose address is the one connected to (no second DNS lookup: rebinding);
#: raises ``ValueError`` or ``OSError`` with the reason to refuse it.
URLGuard = Callable[[str], Awaitable[CheckedTarget]]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _stream(
    client: httpx.AsyncClient, url: str, target: CheckedTarget | None, headers: dict[str, str]
) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
    if target is None:  # no guard (tests, tools on trusted URLs): an ordinary request
        return client.stream("GET", url, headers=headers, follow_redirects=False)
    return pinned_stream(client, "GET", target, headers=headers)


async def _download(
    client: httpx.AsyncClient,
    url: str,
    target: CheckedTarget | None,
    headers: dict[str, str],
    max_bytes: int,
) -> FeedFetch | tuple[bytes, httpx.Response] | str:
    """One GET: an outcome, the body with its response, or the next URL of a redirect.

    Relative references resolve against ``url``, not ``response.url``: a pinned request's
    response carries the checked IP address instead of the feed's host name.
    """
    async with _stream(client, url, target, headers) as response:
        if response.status_code == 304:
            return FeedFetch(outcome="not_modified", http_status=304)
        if response.status_code in _REDIRECTS:
            location = response.headers.get("location")
            if not location:
                return FeedFetch(outcome="error", error="redirect without a Location")
            return str(httpx.URL(url).join(location))
        if response.status_code >= 400:
            return FeedFetch(
                outcome="error",
                http_status=response.status_code,
                error=f"HTTP {response.status_code} {response.reason_phrase}".strip(),
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return FeedFetch(
                    outcome="error",
                    http_status=response.status_code,
                    error=f"feed larger than {max_bytes} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks), response


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int = MAX_FEED_BYTES,
    guard: URLGuard | None = None,
    max_redirects: int = 5,
) -> FeedFetch:
    """One conditional GET and parse.  Never raises for feed problems: they are an outcome.

    Redirects are followed here rather than by httpx so that ``guard`` sees every address
    before it is requested (a public feed must not redirect ingest into the private network),
    and each request goes to the address the guard checked (``ssrf.pinned_stream``).
    """
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/rss+xml, application/atom+xml, "
        "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    target = url
    for _ in range(max_redirects + 1):
        checked: CheckedTarget | None = None
        if guard is not None:
            try:
                checked = await guard(target)
            except (ValueError, OSError) as exc:
                return FeedFetch(outcome="error", error=f"refused {target}: {exc}")
        try:
            result = await _download(client, target, checked, headers, max_bytes)
        except httpx.HTTPError as exc:
            return FeedFetch(outcome="error", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        if isinstance(result, str):
            target = result
            continue
        if isinstance(result, FeedFetch):
            if result.outcome == "not_modified":
                result.etag, result.last_modified = etag, last_modified
            return result
        content, response = result
        response_headers = {k.lower(): v for k, v in response.headers.items()}
        # Relative item links resolve against the feed's own (final) address.
        response_headers.setdefault("content-location", target)
        try:
            feed = parse_feed(content, headers=response_headers)
        except FeedError as exc:
            return FeedFetch(outcome="error", http_status=response.status_code, error=str(exc))
        return FeedFetch(
            outcome="ok",
            feed=feed,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            http_status=response.status_code,
        )
    return FeedFetch(outcome="error", error=f"more than {max_redirects} redirects")


def record_poll(
    status: FeedStatus, fetch: FeedFetch, *, new_items: int = 0, now: datetime | None = None
) -> FeedStatus:
    """The feed's status after a poll (pure: the caller stores it)."""
    now = now or utcnow()
    update: dict[str, Any] = {"last_polled_at": now, "last_outcome": fetch.outcome}
    if fetch.outcome == "error":
        update.update(
            last_error=fetch.error or "unknown error",
            last_error_at=now,
            consecutive_errors=status.consecutive_errors + 1,
            last_items_new=0,
        )
    else:
        update.update(
            last_success_at=now,
            consecutive_errors=0,
            etag=fetch.etag,
            last_modified=fetch.last_modified,
            items_seen=status.items_seen + new_items,
            last_items_new=new_items,
        )
        if fetch.feed is not None and fetch.feed.title:
            update["title"] = fetch.feed.title
    return status.model_copy(update=update)
