"""A lean keep-alive HTTP/1.1 sender for webhooks: one POST, its status, a bounded answer.

Why not a general client: at fan-out rates (thousands of signed POSTs a second from one
process) the client's own request handling was the largest item in notify's profile: with
aiohttp about a third of ~0.7 ms of CPU per delivery went to its request and response
machinery (tracing hooks, cookie jar, multidict headers, a streamed body reader, per-request
timers). A webhook needs much less: connect to an address that was already checked, write one
request, read one answer. This module does only that, on an ``asyncio.Protocol``, and leaves
response parsing to ``httptools`` (the llhttp C parser that uvicorn uses, so it is already
installed and well kept): status line, headers, content-length and chunked bodies are
llhttp's job, not ours.

What it keeps from the aiohttp path (tests/test_notify_webhook.py, tests/test_notify_http1.py):

* The address connected to is the one given (the SSRF check's answer); nothing here resolves
  a name. ``Host`` carries the URL's name; over TLS the name is the server name (SNI) and the
  certificate is verified against it, with the caller's ``ssl.SSLContext``.
* The pool is keyed by (address, port, TLS server name): a connection verified for one name
  is never reused for another name at the same address.
* A connection is reused only when the answer allows keep-alive (HTTP/1.1 without
  ``Connection: close``) and was read to its end within the cap; anything else is closed.
* A pooled connection the server closed meanwhile is detected when the request fails before
  a single byte of answer came back; the request is then sent once more on a fresh
  connection. Any other failure is raised to the caller (the channel reports it retryable).
* No redirects are followed: a 3xx is just a status.
* Bounded memory: at most ``max_response_bytes`` of an answer are kept (a longer answer ends
  the connection instead of being read), the idle pool is capped, and idle connections older
  than ``idle_timeout`` are closed rather than reused.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
import time
from collections import deque
from dataclasses import dataclass

import httptools
import httpx

from services.common.ssrf import IPAddress

#: The body of an answer is kept up to this many bytes; the channel logs a short prefix only.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
#: Servers commonly drop idle keep-alive connections after 5–75 s; older ones are not reused.
DEFAULT_IDLE_TIMEOUT = 15.0


class HTTPError(Exception):
    """The request failed before an answer: connection refused, reset, malformed answer."""


class StaleConnectionError(HTTPError):
    """A connection closed with no byte of answer; on a reused connection, send again."""


@dataclass(frozen=True, slots=True)
class Route:
    """Everything per (URL, checked address) that does not change per request; remembered."""

    key: tuple[str, int, str | None, bool]
    address: str
    port: int
    tls: bool
    server_hostname: str | None
    #: Request line and the fixed headers, up to (not including) Content-Length.
    head: bytes


@functools.lru_cache(maxsize=4096)
def route_for(url_text: str, ip: IPAddress, user_agent: str) -> Route:
    """Where and how to send for ``url`` when its host was checked to be ``address``.

    ``Host`` is the URL's name (with its port when the URL names one); the TLS server name is
    the URL's name in ASCII (IDNA) form, or None for a literal address (then the address is
    both what is connected to and what the certificate must name). Credentials in the URL
    become Basic authorization, as aiohttp did.
    """
    url = httpx.URL(url_text)
    address = str(ip)
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    host = url.raw_host.decode("ascii")
    literal = host.strip("[]") == address
    server_hostname = None if literal or not tls else host
    netloc = url.netloc.decode("ascii")
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    target = url.raw_path.decode("ascii") or "/"
    lines = [
        f"POST {target} HTTP/1.1",
        f"host: {netloc}",
        f"user-agent: {user_agent}",
        "content-type: application/json",
    ]
    if url.userinfo:
        lines.append("authorization: Basic " + base64.b64encode(_userinfo(url)).decode())
    refuse_line_breaks(lines)
    head = ("\r\n".join(lines) + "\r\n").encode("ascii")
    return Route((address, port, server_hostname, tls), address, port, tls, server_hostname, head)


def _userinfo(url: httpx.URL) -> bytes:
    from urllib.parse import unquote_to_bytes

    user, _, password = url.userinfo.partition(b":")
    return unquote_to_bytes(user) + b":" + unquote_to_bytes(password)


def refuse_line_breaks(lines: list[str]) -> None:
    """A CR or LF inside a header line would start a header (or a request) of its own."""
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"a request header contains a line break: {line[:40]!r}")


@dataclass(slots=True)
class Answer:
    """One HTTP answer: status, the ``Retry-After`` header, at most the capped body."""

    status: int
    retry_after: str | None
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, one request at a time; parses answers with llhttp."""

    __slots__ = (
        "body",
        "cap",
        "closed",
        "idle_since",
        "owner",
        "parser",
        "pool",
        "received",
        "retry_after",
        "reusable",
        "status",
        "too_long",
        "transport",
        "waiter",
    )

    def __init__(self, cap: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.cap = cap
        self.closed = False
        self.idle_since = 0.0
        #: The idle deque this connection sits in while idle, so a close can leave it.
        self.pool: deque[_Connection] | None = None
        self.owner: Sender | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.retry_after: str | None = None
        self.body = bytearray()
        self.received = False
        self.reusable = False
        self.too_long = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # nothing asked: an unsolicited answer makes the connection unusable
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # httptools wraps an exception raised in a callback: ``too_long`` says which.
            self.close()
            if not waiter.done():
                if self.too_long:
                    waiter.set_result(self._answer())
                else:
                    waiter.set_exception(HTTPError(f"malformed answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes any request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pool = self.pool
        if pool is not None:
            self.pool = None
            try:
                pool.remove(self)
            except ValueError:
                pass
            else:
                if self.owner is not None:
                    self.owner._idle_count -= 1
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.status >= 200:
            # Headers came, the body ends with the connection (no length, or cut short):
            # the status is what counts, as with any client that reads a prefix.
            waiter.set_result(self._answer())
        elif not self.received:
            reason = f": {exc}" if exc else ""
            waiter.set_exception(
                StaleConnectionError(f"connection closed before any answer{reason}")
            )
        else:
            waiter.set_exception(HTTPError(f"connection closed mid-answer: {exc or 'EOF'}"))

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > self.cap:
            self.too_long = True
            raise _BodyTooLong  # stops the parser; the connection is closed, not read on

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.status = 0
            return
        self.reusable = self.parser.should_keep_alive()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._answer())

    # -- use ----------------------------------------------------------------------------

    def _answer(self) -> Answer:
        return Answer(self.status, self.retry_after, bytes(self.body[: self.cap]))

    async def request(self, data: bytes) -> Answer:
        assert self.transport is not None
        self._reset()
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class _BodyTooLong(Exception):
    pass


class Sender:
    """POSTs to checked addresses over pooled keep-alive connections; one per event loop."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_idle: int = 1024,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        #: Certificates are always verified: the default context checks names and chains.
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int, str | None, bool], deque[_Connection]] = {}
        self._idle_count = 0
        #: Connections opened since start; tests and benchmarks read it to see reuse.
        self.opened = 0

    def _ssl(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    async def post(self, route: Route, headers: bytes, body: bytes) -> Answer:
        """Send ``route.head`` + ``headers`` (CRLF-terminated lines) + ``body``; the answer.

        Raises ``HTTPError`` (or ``OSError``/``ssl.SSLError`` from connecting) when there is
        no answer. Cancellation (the caller's timeout) closes the connection it was using.
        """
        data = b"%sContent-Length: %d\r\n%s\r\n%s" % (route.head, len(body), headers, body)
        conn = self._take_idle(route.key)
        if conn is not None:
            try:
                return await self._exchange(conn, route, data)
            except StaleConnectionError:
                pass  # the server dropped it while idle: once more, on a fresh connection
        conn = await self._connect(route)
        return await self._exchange(conn, route, data)

    async def _exchange(self, conn: _Connection, route: Route, data: bytes) -> Answer:
        try:
            answer = await conn.request(data)
        except BaseException:
            conn.close()
            raise
        if conn.reusable and not conn.closed:
            self._put_idle(route.key, conn)
        else:
            conn.close()
        return answer

    def _take_idle(self, key: tuple[str, int, str | None, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_usable = time.monotonic() - self.idle_timeout
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            conn.pool = None
            self._idle_count -= 1
            if conn.closed or conn.idle_since < oldest_usable:
                conn.close()
                continue
            return conn
        return None

    def _put_idle(self, key: tuple[str, int, str | None, bool], conn: _Connection) -> None:
        if self._idle_count >= self.max_idle:
            conn.close()
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = deque()
        conn.idle_since = time.monotonic()
        conn.pool = idle
        conn.owner = self
        idle.append(conn)
        self._idle_count += 1

    async def _connect(self, route: Route) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self.max_response_bytes)
        async with asyncio.timeout(self.connect_timeout):
            if route.tls:
                await loop.create_connection(
                    lambda: conn,
                    route.address,
                    route.port,
                    ssl=self._ssl(),
                    server_hostname=route.server_hostname,
                )
            else:
                await loop.create_connection(lambda: conn, route.address, route.port)
        self.opened += 1
        return conn

    def idle_connections(self) -> int:
        return self._idle_count

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                conn.pool = None
                conn.close()
        self._idle.clear()
        self._idle_count = 0
