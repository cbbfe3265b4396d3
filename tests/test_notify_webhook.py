"""Webhook channel against a real HTTP receiver on 127.0.0.1: every outcome class."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import standardwebhooks
import trustme

from services.common.models import Alert, AlertArticle, AlertTopic, alert_id_for
from services.common.redis_server import free_port
from services.notify.channels.base import Destination, Notification, OutcomeStatus
from services.notify.channels.webhook import WebhookChannel, classify_response
from services.notify.signing import generate_secret
from tests.notify_receiver import Receiver, Reply


def make_alert(n: int = 1, sub: str = "sub_test") -> Alert:
    article_id = f"art_{n:024d}"
    return Alert(
        id=alert_id_for(sub, article_id),
        subscription_id=sub,
        article=AlertArticle(id=article_id, title=f"S-400 deliveries {n}", source="example"),
        topics=[AlertTopic(id="air-defence-procurement", score=0.9)],
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(timeout=2.0, allow_private=True)
    yield ch
    await ch.aclose()


async def test_delivered_with_a_valid_signature(receiver: Receiver, channel: WebhookChannel):
    secret = generate_secret()
    alert = make_alert()
    outcome = await channel.send(
        Notification.single(alert), Destination("webhook", receiver.url, (secret,))
    )
    assert outcome.status is OutcomeStatus.DELIVERED and outcome.status_code == 200
    [request] = receiver.requests
    assert request.headers["webhook-id"] == alert.id
    assert request.headers["content-type"] == "application/json"
    payload = standardwebhooks.Webhook(secret).verify(request.body.decode(), request.headers)
    assert payload["type"] == "alert.created"
    assert payload["data"]["alert_id"] == alert.id
    assert payload["data"]["article"]["title"] == "S-400 deliveries 1"


async def test_rotation_sends_two_signatures(receiver: Receiver, channel: WebhookChannel):
    new, old = generate_secret(), generate_secret()
    await channel.send(
        Notification.single(make_alert()), Destination("webhook", receiver.url, (new, old))
    )
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (new, old):
        standardwebhooks.Webhook(secret).verify(request.body.decode(), request.headers)


async def test_digest_payload_lists_every_alert(receiver: Receiver, channel: WebhookChannel):
    alerts = [make_alert(n) for n in range(3)]
    note = Notification.batch("sub_test", alerts, reason="digest")
    secret = generate_secret()
    outcome = await channel.send(note, Destination("webhook", receiver.url, (secret,)))
    assert outcome.ok
    [request] = receiver.requests
    body = standardwebhooks.Webhook(secret).verify(request.body.decode(), request.headers)
    assert request.headers["webhook-id"] == note.id and note.id.startswith("dig_")
    assert body["type"] == "alert.digest" and body["data"]["count"] == 3
    assert [a["alert_id"] for a in body["data"]["alerts"]] == [a.id for a in alerts]
    # Same batch, same id on every retry.
    assert Notification.batch("sub_test", alerts).id == note.id


@pytest.mark.parametrize(
    ("reply", "status", "retry_after"),
    [
        (Reply(500, body=b"boom"), OutcomeStatus.RETRYABLE, None),
        (Reply(503, {"retry-after": "7"}), OutcomeStatus.RETRYABLE, 7.0),
        (Reply(429, {"retry-after": "30"}), OutcomeStatus.RETRYABLE, 30.0),
        (Reply(408), OutcomeStatus.RETRYABLE, None),
        (Reply(410), OutcomeStatus.GONE, None),
        (Reply(400, body=b"bad payload"), OutcomeStatus.PERMANENT, None),
        (Reply(404), OutcomeStatus.PERMANENT, None),
        (Reply(302, {"location": "http://169.254.169.254/"}), OutcomeStatus.PERMANENT, None),
    ],
)
async def test_answers_are_classified(
    receiver: Receiver, channel: WebhookChannel, reply: Reply, status: OutcomeStatus, retry_after
):
    receiver.reply(reply)
    outcome = await channel.send(
        Notification.single(make_alert()),
        Destination("webhook", receiver.url, (generate_secret(),)),
    )
    assert outcome.status is status
    assert outcome.status_code == reply.status
    assert outcome.retry_after == retry_after
    if reply.body != b"ok":
        assert reply.body.decode() in outcome.reason
    assert len(receiver.requests) == 1  # redirects are not followed


async def test_429_with_http_date(receiver: Receiver, channel: WebhookChannel):
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.reply(Reply(429, {"retry-after": format_datetime(when, usegmt=True)}))
    outcome = await channel.send(
        Notification.single(make_alert()),
        Destination("webhook", receiver.url, (generate_secret(),)),
    )
    assert outcome.status is OutcomeStatus.RETRYABLE
    assert outcome.retry_after is not None and 100 < outcome.retry_after <= 120


async def test_timeout_is_retryable(receiver: Receiver):
    channel = WebhookChannel(timeout=0.2, allow_private=True)
    receiver.reply(Reply(200, delay=0.8))
    try:
        outcome = await channel.send(
            Notification.single(make_alert()),
            Destination("webhook", receiver.url, (generate_secret(),)),
        )
    finally:
        await channel.aclose()
    assert outcome.status is OutcomeStatus.RETRYABLE and "timeout" in outcome.reason


async def test_connection_refused_is_retryable(channel: WebhookChannel):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    outcome = await channel.send(
        Notification.single(make_alert()), Destination("webhook", url, (generate_secret(),))
    )
    assert outcome.status is OutcomeStatus.RETRYABLE and "connection" in outcome.reason


async def test_private_target_refused_at_delivery_without_a_request(receiver: Receiver):
    channel = WebhookChannel(timeout=2.0, allow_private=False)
    try:
        outcome = await channel.send(
            Notification.single(make_alert()),
            Destination("webhook", receiver.url, (generate_secret(),)),
        )
    finally:
        await channel.aclose()
    assert outcome.status is OutcomeStatus.PERMANENT and "loopback" in outcome.reason
    assert receiver.requests == []


async def test_connects_to_the_checked_address_with_the_original_host(receiver: Receiver):
    """A name is resolved once, checked, and that address is used: no second lookup."""
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    channel = WebhookChannel(timeout=2.0, allow_private=True, resolver=resolver)
    url = f"http://receiver.test:{receiver.port}/hook"
    try:
        outcome = await channel.send(
            Notification.single(make_alert()), Destination("webhook", url, (generate_secret(),))
        )
    finally:
        await channel.aclose()
    assert outcome.ok
    assert lookups == ["receiver.test"]
    assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"


async def test_oversized_payload_is_permanent_and_not_sent(receiver: Receiver):
    channel = WebhookChannel(timeout=2.0, allow_private=True, max_body_bytes=200)
    try:
        outcome = await channel.send(
            Notification.single(make_alert()),
            Destination("webhook", receiver.url, (generate_secret(),)),
        )
    finally:
        await channel.aclose()
    assert outcome.status is OutcomeStatus.PERMANENT and "exceeds" in outcome.reason
    assert receiver.requests == []


async def test_missing_secret_is_permanent(receiver: Receiver, channel: WebhookChannel):
    outcome = await channel.send(
        Notification.single(make_alert()), Destination("webhook", receiver.url)
    )
    assert outcome.status is OutcomeStatus.PERMANENT and "sign" in outcome.reason


def test_classify_response_table() -> None:
    assert classify_response(204, None).ok
    assert classify_response(301, None).status is OutcomeStatus.PERMANENT
    assert classify_response(599, "5").retry_after == 5
    assert classify_response(422, "5").retry_after is None


# --- the checked address is the one connected to, over TLS too (SNI and certificate name) ---


class _Hook:
    """A bare HTTP(S) receiver on one loopback address: records Host headers, answers 204."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            headers = {k.lower(): v for k, v in fields.items()}
            await reader.readexactly(int(headers.get("content-length", "0")))
            self.hosts.append(headers.get("host", ""))
            writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> _Hook:
        self.server = await asyncio.start_server(self._handle, host, port, ssl=tls)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def _scripted(answer: str, lookups: list[str]):
    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return [answer]

    return resolver


async def test_a_rebinding_name_never_reaches_the_unchecked_address() -> None:
    """The check's lookup says 127.0.0.2; the system's answer for ``localhost`` is 127.0.0.1.
    Only the checked address gets the webhook, with the name in ``Host``."""
    port = free_port()
    checked = await _Hook().start("127.0.0.2", port)
    other = await _Hook().start("127.0.0.1", port)
    lookups: list[str] = []
    channel = WebhookChannel(
        timeout=5.0, allow_private=True, resolver=_scripted("127.0.0.2", lookups)
    )
    try:
        outcome = await channel.send(
            Notification.single(make_alert()),
            Destination("webhook", f"http://localhost:{port}/hook", (generate_secret(),)),
        )
    finally:
        await channel.aclose()
        await checked.stop()
        await other.stop()
    assert outcome.ok, outcome.reason
    assert checked.hosts == [f"localhost:{port}"] and other.hosts == []
    assert lookups == ["localhost"]


async def test_https_webhook_to_the_checked_address_verifies_the_name() -> None:
    """Connected to the checked IP, TLS still sends the URL's name (SNI) and verifies the
    certificate against it; a certificate for another name is refused, nothing is sent."""
    ca = trustme.CA()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)

    def server_tls(name: str, sni: list[str | None]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = lambda _s, server_name, _c: sni.append(server_name)  # type: ignore[assignment]
        return context

    sni: list[str | None] = []
    port = free_port()
    hook = await _Hook().start("127.0.0.1", port, server_tls("hooks.test", sni))
    channel = WebhookChannel(
        timeout=5.0,
        allow_private=True,
        resolver=_scripted("127.0.0.1", []),
        ssl_context=client_tls,
    )
    try:
        outcome = await channel.send(
            Notification.single(make_alert()),
            Destination("webhook", f"https://hooks.test:{port}/hook", (generate_secret(),)),
        )
    finally:
        await hook.stop()
    assert outcome.ok, outcome.reason
    assert sni == ["hooks.test"] and hook.hosts == [f"hooks.test:{port}"]

    port = free_port()
    impostor = await _Hook().start("127.0.0.1", port, server_tls("other.test", []))
    try:
        refused = await channel.send(
            Notification.single(make_alert(2)),
            Destination("webhook", f"https://hooks.test:{port}/hook", (generate_secret(),)),
        )
    finally:
        await channel.aclose()
        await impostor.stop()
    assert refused.status is OutcomeStatus.RETRYABLE and "certificate" in refused.reason.lower()
    assert impostor.hosts == []
