"""Feed fetches connect to the address the SSRF guard checked (no DNS rebinding).

Real HTTP(S) servers on loopback; only DNS is scripted, through the resolver the guard uses.
127.0.0.2 is loopback too, so two servers on one port tell which address a fetch reached.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest
import trustme

from services.ingest.feed_poller import address_guard
from services.ingest.feeds import fetch_feed

from .feed_server import RSS, FeedServer, running_feed_server


def scripted(answers: dict[str, list[str]], lookups: list[str]):
    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return answers[host]

    return resolver


@pytest.fixture
def checked_and_other() -> Iterator[tuple[FeedServer, FeedServer]]:
    """The server at the checked address (127.0.0.2) and another on 127.0.0.1, same port."""
    with running_feed_server(host="127.0.0.2") as checked:
        with running_feed_server(host="127.0.0.1", port=checked.port) as other:
            yield checked, other


async def test_a_rebinding_name_never_reaches_the_second_address(checked_and_other) -> None:
    """The guard's lookup says 127.0.0.2; the system's says 127.0.0.1 (``localhost``).

    Before pinning, httpx resolved the name again and fetched from 127.0.0.1: the address
    that was never checked.
    """
    checked, other = checked_and_other
    for server in (checked, other):
        server.serve("/feed.xml", RSS)
    lookups: list[str] = []
    guard = address_guard(True, scripted({"localhost": ["127.0.0.2"]}, lookups))
    url = f"http://localhost:{checked.port}/feed.xml"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        fetched = await fetch_feed(client, url, guard=guard)
    assert fetched.outcome == "ok", fetched.error
    assert [r.path for r in checked.requests] == ["/feed.xml"]
    assert other.requests == []
    assert checked.hosts == [f"localhost:{checked.port}"]  # virtual hosting keeps working
    assert lookups == ["localhost"]  # one lookup, the checked one


async def test_every_redirect_hop_is_pinned_and_relative_links_use_the_name(
    checked_and_other,
) -> None:
    checked, other = checked_and_other
    rss = RSS.replace(
        "https://defencewire.example/2023/11/09/davids-sling", "/2023/11/09/davids-sling"
    )
    for server in (checked, other):
        server.serve("/old.xml", "", status=301, location="/feeds/rss.xml")
        server.serve("/feeds/rss.xml", rss)
    guard = address_guard(True, scripted({"localhost": ["127.0.0.2"]}, []))
    base = f"http://localhost:{checked.port}"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        fetched = await fetch_feed(client, f"{base}/old.xml", guard=guard)
    assert fetched.outcome == "ok" and fetched.feed is not None
    assert [r.path for r in checked.requests] == ["/old.xml", "/feeds/rss.xml"]
    assert other.requests == []
    # resolved against the feed's name, not the IP it was fetched from
    assert fetched.feed.items[1].link == f"{base}/2023/11/09/davids-sling"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server_context(ca: trustme.CA, name: str, sni_seen: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)

    def record_sni(_sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(server_name)

    context.sni_callback = record_sni  # type: ignore[assignment]
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_feed_through_the_pinned_path(ca: trustme.CA) -> None:
    """SNI and certificate verification use the feed's name while the connection goes to the
    checked IP; a certificate for another name is refused."""
    sni: list[str | None] = []
    with running_feed_server(tls=tls_server_context(ca, "feeds.test", sni)) as server:
        server.serve("/feed.xml", RSS)
        guard = address_guard(True, scripted({"feeds.test": ["127.0.0.1"]}, []))
        url = f"https://feeds.test:{server.port}/feed.xml"
        async with httpx.AsyncClient(timeout=5, trust_env=False, verify=client_context(ca)) as c:
            fetched = await fetch_feed(c, url, guard=guard)
            again = await fetch_feed(c, url, guard=guard, etag=fetched.etag)
    assert fetched.outcome == "ok", fetched.error
    assert fetched.feed is not None and fetched.feed.title == "Defence Wire"
    assert again.outcome == "not_modified"
    assert sni and set(sni) == {"feeds.test"}
    assert server.hosts[0] == f"feeds.test:{server.port}"

    wrong: list[str | None] = []
    with running_feed_server(tls=tls_server_context(ca, "other.test", wrong)) as impostor:
        impostor.serve("/feed.xml", RSS)
        guard = address_guard(True, scripted({"feeds.test": ["127.0.0.1"]}, []))
        url = f"https://feeds.test:{impostor.port}/feed.xml"
        async with httpx.AsyncClient(timeout=5, trust_env=False, verify=client_context(ca)) as c:
            refused = await fetch_feed(c, url, guard=guard)
    assert refused.outcome == "error" and "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
    assert impostor.requests == []
