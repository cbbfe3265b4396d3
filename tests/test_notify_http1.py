"""The webhook channel's own HTTP/1.1 sender (``channels/http1.py``) against real loopback servers.

Each server here is a scripted raw HTTP server (asyncio streams) so that the awkward answers
are exact: chunked bodies, a keep-alive connection closed between requests, no answer at all,
an answer far larger than the cap, ``Connection: close``, HTTP/1.0 bodies ended by EOF.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.common.redis_server import free_port
from services.notify.channels.base import Destination, Notification, OutcomeStatus
from services.notify.channels.webhook import WebhookChannel
from services.notify.signing import generate_secret
from tests.test_notify_webhook import make_alert

Script = Callable[["_Conn"], Awaitable[None]]


class _Conn:
    """One accepted connection: read requests off it, write raw answers."""

    def __init__(
        self, server: _Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.requests = 0

    async def read_request(self) -> bytes | None:
        """The next request's body, or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        self.requests += 1
        self.server.requests += 1
        return body

    async def answer(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()


class _Scripted:
    """A loopback server that runs ``script`` on every connection it accepts."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.closed_by_client = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        conn = _Conn(self, reader, writer)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client += 1
        finally:
            writer.close()

    async def __aenter__(self) -> _Scripted:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:  # handlers still reading see EOF and end
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5.0)


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _serve_all(conn: _Conn, raw: bytes = OK) -> None:
    while await conn.read_request() is not None:
        await conn.answer(raw)


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(timeout=2.0, allow_private=True)
    yield ch
    await ch.aclose()


async def _send(channel: WebhookChannel, url: str, n: int = 1):
    return await channel.send(
        Notification.single(make_alert(n)), Destination("webhook", url, (generate_secret(),))
    )


async def test_keep_alive_connection_is_reused(channel: WebhookChannel) -> None:
    async with _Scripted(_serve_all) as server:
        outcomes = [await _send(channel, server.url, n) for n in range(5)]
    assert all(o.ok for o in outcomes)
    assert server.requests == 5 and server.connections == 1


async def test_connection_close_answer_is_not_reused(channel: WebhookChannel) -> None:
    close = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
    async with _Scripted(lambda c: _serve_all(c, close)) as server:
        outcomes = [await _send(channel, server.url, n) for n in range(3)]
    assert all(o.ok for o in outcomes)
    assert server.connections == 3


async def test_chunked_answer_is_read_to_its_end_and_the_connection_reused(
    channel: WebhookChannel,
) -> None:
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n"
        b"retry-after: 7\r\n\r\n"
        b"5\r\nbusy \r\n4\r\nnow,\r\n6\r\n later\r\n0\r\n\r\n"
    )
    async with _Scripted(lambda c: _serve_all(c, chunked)) as server:
        first = await _send(channel, server.url, 1)
        second = await _send(channel, server.url, 2)
    for outcome in (first, second):
        assert outcome.status is OutcomeStatus.RETRYABLE
        assert outcome.reason == "HTTP 503: busy now, later" and outcome.retry_after == 7
    assert server.connections == 1 and server.requests == 2


async def test_stale_pooled_connection_is_retried_once_on_a_fresh_one(
    channel: WebhookChannel,
) -> None:
    """The server answers one request per connection with keep-alive, then closes the
    connection when the next request arrives, without answering: that request is sent
    again on a fresh connection and delivered, not lost."""

    async def one_then_drop(conn: _Conn) -> None:
        if await conn.read_request() is not None:
            await conn.answer(OK)
        await conn.read_request()  # the next request: read, never answered

    async with _Scripted(one_then_drop) as server:
        first = await _send(channel, server.url, 1)
        second = await _send(channel, server.url, 2)
    assert first.ok and second.ok, (first.reason, second.reason)
    assert server.connections == 2 and server.requests == 3


async def test_connection_closed_while_idle_is_not_used(channel: WebhookChannel) -> None:
    async def one_then_close(conn: _Conn) -> None:
        if await conn.read_request() is not None:
            await conn.answer(OK)

    async with _Scripted(one_then_close) as server:
        first = await _send(channel, server.url, 1)
        await asyncio.sleep(0.1)  # the close reaches the client while the connection is idle
        second = await _send(channel, server.url, 2)
    assert first.ok and second.ok
    assert server.connections == 2 and server.requests == 2


async def test_fresh_connection_closed_without_answer_is_retryable(
    channel: WebhookChannel,
) -> None:
    """Retried once only for a reused connection: a fresh one that fails is reported."""

    async def never(conn: _Conn) -> None:
        await conn.read_request()

    async with _Scripted(never) as server:
        outcome = await _send(channel, server.url)
    assert outcome.status is OutcomeStatus.RETRYABLE and "connection" in outcome.reason
    assert server.connections == 1


async def test_a_server_that_never_answers_times_out_and_its_connection_is_dropped() -> None:
    channel = WebhookChannel(timeout=0.3, allow_private=True)
    answered = asyncio.Event()

    async def silent_once(conn: _Conn) -> None:
        if conn.server.connections == 1:
            await conn.read_request()
            await conn.reader.read()  # until the client gives up and closes
            answered.set()
        else:
            await _serve_all(conn)

    try:
        async with _Scripted(silent_once) as server:
            timed_out = await _send(channel, server.url, 1)
            await asyncio.wait_for(answered.wait(), 2.0)  # the client closed that connection
            after = await _send(channel, server.url, 2)
    finally:
        await channel.aclose()
    assert timed_out.status is OutcomeStatus.RETRYABLE and "timeout" in timed_out.reason
    assert after.ok and server.connections == 2


async def test_oversized_answer_is_capped_and_its_connection_closed(
    channel: WebhookChannel,
) -> None:
    """A 50 MB answer: the status counts, at most the cap is kept, and the connection is
    closed rather than read to its end (the server sees the close mid-body)."""
    size = 50 * 1024 * 1024
    written: list[int] = []

    async def huge(conn: _Conn) -> None:
        while await conn.read_request() is not None:
            await conn.answer(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: %d\r\n\r\n" % size
            )
            block = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    await conn.answer(block)
                    sent += len(block)
            finally:
                written.append(sent)

    async with _Scripted(huge) as server:
        first = await _send(channel, server.url, 1)
        second = await _send(channel, server.url, 2)
    for outcome in (first, second):
        assert outcome.status is OutcomeStatus.RETRYABLE and outcome.status_code == 500
        assert len(outcome.reason) < 600  # "HTTP 500: " and the 512-byte prefix at most
    assert server.connections == 2 and server.closed_by_client == 2
    assert all(sent < size for sent in written)


async def test_body_ended_by_close_counts(channel: WebhookChannel) -> None:
    async def http10(conn: _Conn) -> None:
        await conn.read_request()
        await conn.answer(b"HTTP/1.0 418 I'm a teapot\r\n\r\nshort and stout")

    async with _Scripted(http10) as server:
        outcome = await _send(channel, server.url)
    assert outcome.status is OutcomeStatus.PERMANENT
    assert outcome.reason == "HTTP 418: short and stout"


async def test_malformed_answer_is_retryable(channel: WebhookChannel) -> None:
    async def garbage(conn: _Conn) -> None:
        await conn.read_request()
        await conn.answer(b"SMTP ready\r\n\r\n")

    async with _Scripted(garbage) as server:
        outcome = await _send(channel, server.url)
    assert outcome.status is OutcomeStatus.RETRYABLE and "malformed" in outcome.reason


async def test_crlf_in_a_header_is_refused_without_a_request(channel: WebhookChannel) -> None:
    async with _Scripted(_serve_all) as server:
        outcome = await channel.send(
            Notification.single(make_alert().model_copy(update={"id": "al_x\r\nx-evil: 1"})),
            Destination("webhook", server.url, (generate_secret(),)),
        )
    assert outcome.status is OutcomeStatus.PERMANENT and "line break" in outcome.reason
    assert server.requests == 0
