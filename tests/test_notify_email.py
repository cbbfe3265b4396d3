"""E-mail channel against a real aiosmtpd server with STARTTLS and AUTH."""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.common.models import Alert, AlertArticle, AlertTopic, alert_id_for
from services.common.redis_server import free_port
from services.common.settings import Settings
from services.notify.channels.base import Destination, Notification, OutcomeStatus
from services.notify.channels.email import EmailChannel

USER, PASSWORD = "alerts", "s3cret"


class Mailbox:
    """aiosmtpd handler: keeps messages, refuses or defers some recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def authenticate(server, session, envelope, mechanism, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def smtp(ca: trustme.CA) -> Iterator[tuple[Controller, Mailbox]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield controller, mailbox
    controller.stop()


def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def channel_for(controller: Controller, ca: trustme.CA, **overrides: Any) -> EmailChannel:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": controller.port,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "smtp_from": "topicwatch@example.org",
    }
    settings = Settings(**{**values, **overrides})
    return EmailChannel.from_settings(settings, ssl_context=client_ctx(ca))


def make_alert(n: int = 1) -> Alert:
    article_id = f"art_{n:024d}"
    return Alert(
        id=alert_id_for("sub_mail", article_id),
        subscription_id="sub_mail",
        article=AlertArticle(
            id=article_id,
            title=f"Turkey <b>S-400</b> batch {n}",
            url=f"https://news.example/{n}",
            source="Example News",
        ),
        topics=[AlertTopic(id="air-defence-procurement", score=0.91)],
        also_reported_by=[AlertArticle(id="art_x", title="same", source="Other Wire")],
    )


async def test_one_alert_one_message_plain_and_html(smtp, ca) -> None:
    controller, mailbox = smtp
    alert = make_alert()
    outcome = await channel_for(controller, ca).send(
        Notification.single(alert, "Air defence"), Destination("email", "analyst@example.org")
    )
    assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
    [(rcpts, message)] = mailbox.messages
    assert rcpts == ["analyst@example.org"]
    assert message["Message-ID"] == f"<{alert.id}@topicwatch>"
    assert message["Subject"] == "[topicwatch] Turkey <b>S-400</b> batch 1"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "https://news.example/1" in text and "air-defence-procurement (0.91)" in text
    assert "Also reported by: Other Wire" in text
    assert "Turkey &lt;b&gt;S-400&lt;/b&gt; batch 1" in html  # escaped, not markup
    assert '<a href="https://news.example/1">' in html


async def test_digest_is_one_message_listing_every_alert(smtp, ca) -> None:
    controller, mailbox = smtp
    alerts = [make_alert(n) for n in range(1, 4)]
    note = Notification.batch("sub_mail", alerts, "Air defence", reason="digest")
    outcome = await channel_for(controller, ca).send(note, Destination("email", "a@example.org"))
    assert outcome.ok
    [(_, message)] = mailbox.messages
    assert message["Subject"] == "[topicwatch] 3 alerts for Air defence"
    text = message.get_body(("plain",)).get_content()
    assert all(f"batch {n}" in text for n in range(1, 4))


async def test_refused_recipient_is_permanent_and_deferred_is_retryable(smtp, ca) -> None:
    controller, mailbox = smtp
    channel = channel_for(controller, ca)
    refused = await channel.send(
        Notification.single(make_alert()), Destination("email", "nobody@example.org")
    )
    assert refused.status is OutcomeStatus.PERMANENT and "550" in refused.reason
    deferred = await channel.send(
        Notification.single(make_alert()), Destination("email", "busy@example.org")
    )
    assert deferred.status is OutcomeStatus.RETRYABLE and "451" in deferred.reason
    assert mailbox.messages == []


async def test_wrong_password_is_permanent(smtp, ca) -> None:
    controller, mailbox = smtp
    channel = channel_for(controller, ca, smtp_password="wrong")
    outcome = await channel.send(
        Notification.single(make_alert()), Destination("email", "a@example.org")
    )
    assert outcome.status is OutcomeStatus.PERMANENT and "535" in outcome.reason
    assert mailbox.messages == []


async def test_without_starttls_the_server_refuses(smtp, ca) -> None:
    controller, mailbox = smtp
    channel = channel_for(controller, ca, smtp_starttls=False)
    outcome = await channel.send(
        Notification.single(make_alert()), Destination("email", "a@example.org")
    )
    assert outcome.status is OutcomeStatus.PERMANENT
    assert mailbox.messages == []


async def test_untrusted_certificate_is_permanent(smtp) -> None:
    controller, _ = smtp
    other_ca = trustme.CA()
    outcome = await channel_for(controller, other_ca).send(
        Notification.single(make_alert()), Destination("email", "a@example.org")
    )
    assert outcome.status is OutcomeStatus.PERMANENT and "TLS" in outcome.reason


async def test_server_down_is_retryable(ca) -> None:
    channel = EmailChannel(host="127.0.0.1", port=free_port(), ssl_context=client_ctx(ca))
    outcome = await channel.send(
        Notification.single(make_alert()), Destination("email", "a@example.org")
    )
    assert outcome.status is OutcomeStatus.RETRYABLE


async def test_unconfigured_smtp_is_permanent() -> None:
    outcome = await EmailChannel.from_settings(Settings()).send(
        Notification.single(make_alert()), Destination("email", "a@example.org")
    )
    assert outcome.status is OutcomeStatus.PERMANENT and "TOPICWATCH_SMTP_HOST" in outcome.reason
