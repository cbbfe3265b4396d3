"""A real local HTTP server serving feed files, with ETag / Last-Modified like a real site.

Used by the feed tests: it answers conditional GETs with 304 when the validators match,
records every request's conditional headers, and can be told to fail or change content.
"""

# ruff: noqa: E501  (page and feed texts keep paragraphs on one line, as scrapers deliver them)

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FeedFile:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    send_etag: bool = True
    send_last_modified: bool = True
    last_modified: str = field(default_factory=lambda: formatdate(usegmt=True))
    location: str | None = None
    """For a redirect status: where to."""

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class SeenRequest:
    path: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int


class FeedServer:
    """``host``/``port`` pick the listening address (127.0.0.2 is loopback too: two servers on
    one port tell which address a client connected to); ``tls`` serves HTTPS."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.files: dict[str, FeedFile] = {}
        self.requests: list[SeenRequest] = []
        self.hosts: list[str | None] = []
        """The Host header of every request."""
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet tests
                return

            def do_GET(self) -> None:
                feed = server.files.get(self.path)
                inm = self.headers.get("If-None-Match")
                ims = self.headers.get("If-Modified-Since")
                if feed is None:
                    status = 404
                elif feed.status != 200:
                    status = feed.status
                elif (feed.send_etag and inm == feed.etag) or (
                    not feed.send_etag and feed.send_last_modified and ims == feed.last_modified
                ):
                    status = 304
                else:
                    status = 200
                # Recorded before answering: a client that has its answer sees its request here.
                with server._lock:
                    server.requests.append(SeenRequest(self.path, inm, ims, status))
                    server.hosts.append(self.headers.get("Host"))
                self.send_response(status)
                if feed is None or status == 304:
                    self.end_headers()
                elif status != 200:
                    if feed.location:
                        self.send_header("Location", feed.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_header("Content-Type", feed.content_type)
                    self.send_header("Content-Length", str(len(feed.body)))
                    if feed.send_etag:
                        self.send_header("ETag", feed.etag)
                    if feed.send_last_modified:
                        self.send_header("Last-Modified", feed.last_modified)
                    self.end_headers()
                    self.wfile.write(feed.body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.base_url = f"{'https' if tls else 'http'}://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def serve(self, path: str, body: str | bytes, **options: object) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.files[path] = FeedFile(body=data, **options)  # type: ignore[arg-type]
        return self.url(path)


@contextmanager
def running_feed_server(
    host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[FeedServer]:
    server = FeedServer(host, port, tls)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=5)


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Defence Wire</title><link>https://defencewire.example/</link>
<description>Air defence news</description>
<item>
  <title>Poland signs Wisla phase two deal</title>
  <link>https://defencewire.example/2023/09/19/wisla?utm_source=rss</link>
  <guid isPermaLink="false">dw-1001</guid>
  <pubDate>Tue, 19 Sep 2023 12:20:00 GMT</pubDate>
  <description><![CDATA[<p>WARSAW, Sept 19 (Defence Wire) - Poland signed agreements with the
  United States on Tuesday for the second phase of its Wisla air and missile defence
  programme.</p><p>The package adds 48 Patriot launchers.</p>]]></description>
</item>
<item>
  <title>Finland picks David's Sling</title>
  <link>https://defencewire.example/2023/11/09/davids-sling</link>
  <guid isPermaLink="false">dw-1002</guid>
  <pubDate>Thu, 09 Nov 2023 11:00:00 GMT</pubDate>
  <description>Finland has chosen the Israeli-made David's Sling system for high-altitude air defence.</description>
</item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Orbital Security Report</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2021-11-15T20:45:00Z</updated>
  <entry>
    <title>Russia tests anti-satellite missile</title>
    <link href="https://orbital.example/2021/11/15/asat"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2021-11-15T20:45:00-05:00</updated>
    <author><name>Dana Reyes</name></author>
    <content type="html">&lt;p&gt;WASHINGTON, Nov 15 (Orbital Security Report) - Russia conducted a direct-ascent anti-satellite missile test that destroyed one of its own satellites.&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Headline only item</title>
    <link href="https://orbital.example/2021/11/16/headline"/>
    <id>urn:uuid:2</id>
    <updated>2021-11-16T08:00:00Z</updated>
  </entry>
</feed>
"""
