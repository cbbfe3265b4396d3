"""E-mail channel: one message per alert or per digest over SMTP, plain text and HTML.

Uses the standard library's ``smtplib`` in a worker thread: it is complete (STARTTLS, AUTH,
SMTPUTF8) and the volume here, one message per alert or digest, does not need an async
client. The connection is opened per message so a dead server never leaves a half-open
session behind between alerts.

Failures are classified for the retry step: connection problems, timeouts and SMTP 4xx
replies are retryable; 5xx replies (refused recipient, failed authentication, STARTTLS
missing when required) are permanent. The ``Message-ID`` is derived from the notification
id, so a message retried after an ambiguous failure can be recognised as a repeat.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from services.common.models import Alert
from services.common.settings import Settings
from services.common.streams import as_text
from services.notify.channels.base import DeliveryOutcome, Destination, Notification


class EmailChannel:
    kind = "email"

    def __init__(
        self,
        *,
        host: str | None,
        port: int = 587,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        sender: str = "topicwatch@localhost",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        public_url: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self.password = password
        self.sender = sender
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.public_url = public_url.rstrip("/")

    @classmethod
    def from_settings(
        cls, settings: Settings, ssl_context: ssl.SSLContext | None = None
    ) -> EmailChannel:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=password,
            sender=settings.smtp_from,
            timeout=settings.webhook_timeout * 3,
            ssl_context=ssl_context,
            public_url=settings.public_url,
        )

    async def aclose(self) -> None:
        return None

    def build_message(self, notification: Notification, recipient: str) -> EmailMessage:
        """The MIME message: ``text/plain`` first, ``text/html`` as the richer alternative."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = _subject(notification)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<{notification.id}@topicwatch>"
        message["X-Topicwatch-Subscription"] = notification.subscription_id
        message.set_content(render_text(notification))
        message.add_alternative(render_html(notification), subtype="html")
        return message

    async def send(self, notification: Notification, destination: Destination) -> DeliveryOutcome:
        if not self.host:
            return DeliveryOutcome.permanent("SMTP is not configured (TOPICWATCH_SMTP_HOST)")
        message = self.build_message(notification, destination.address)
        try:
            await asyncio.to_thread(self._send_sync, message, destination.address)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            reason = "; ".join(
                f"{code} {msg.decode(errors='replace')}" for code, msg in exc.recipients.values()
            )
            if codes and all(400 <= code < 500 for code in codes):
                return DeliveryOutcome.retryable(f"recipient deferred: {reason}")
            return DeliveryOutcome.permanent(f"recipient refused: {reason}")
        except smtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.smtp_code} {as_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                return DeliveryOutcome.retryable(text)
            return DeliveryOutcome.permanent(text)
        except smtplib.SMTPNotSupportedError as exc:
            return DeliveryOutcome.permanent(f"SMTP server lacks a needed extension: {exc}")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, TimeoutError) as exc:
            return DeliveryOutcome.retryable(f"SMTP connection: {type(exc).__name__}: {exc}")
        except ssl.SSLError as exc:
            return DeliveryOutcome.permanent(f"TLS failed: {exc}")
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryOutcome.retryable(f"SMTP: {type(exc).__name__}: {exc}")
        return DeliveryOutcome.delivered("250 accepted")

    def _send_sync(self, message: EmailMessage, recipient: str) -> None:
        assert self.host is not None
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message, from_addr=self.sender, to_addrs=[recipient])


def _subject(notification: Notification) -> str:
    name = notification.subscription_name or notification.subscription_id
    if notification.digest:
        return f"[topicwatch] {len(notification.alerts)} alerts for {name}"
    return f"[topicwatch] {notification.alerts[0].article.title}"[:200]


def _alert_lines(alert: Alert) -> list[str]:
    article = alert.article
    topics = ", ".join(f"{t.id} ({t.score:.2f})" for t in alert.topics)
    lines = [article.title]
    meta = " · ".join(
        part
        for part in (
            article.source,
            article.published_at.isoformat() if article.published_at else None,
        )
        if part
    )
    if meta:
        lines.append(meta)
    if article.url:
        lines.append(article.url)
    lines.append(f"Topics: {topics}")
    if alert.also_reported_by:
        others = ", ".join(a.source or a.url or a.id for a in alert.also_reported_by)
        lines.append(f"Also reported by: {others}")
    lines.append(f"Alert id: {alert.id}")
    return lines


def render_text(notification: Notification) -> str:
    """Plain-text body: one block per alert, blank line between."""
    header = (
        f"{len(notification.alerts)} alerts ({notification.reason or 'digest'})\n\n"
        if notification.digest
        else ""
    )
    blocks = ["\n".join(_alert_lines(alert)) for alert in notification.alerts]
    return header + "\n\n".join(blocks) + "\n"


def render_html(notification: Notification) -> str:
    """HTML body; every value from an article is escaped (titles come from the internet)."""
    items = []
    for alert in notification.alerts:
        article = alert.article
        title = html.escape(article.title)
        if article.url and article.url.startswith(("http://", "https://")):
            title = f'<a href="{html.escape(article.url, quote=True)}">{title}</a>'
        topics = ", ".join(html.escape(f"{t.id} ({t.score:.2f})") for t in alert.topics)
        source = html.escape(article.source or "")
        others = ""
        if alert.also_reported_by:
            names = ", ".join(
                html.escape(a.source or a.url or a.id) for a in alert.also_reported_by
            )
            others = f"<br><small>Also reported by: {names}</small>"
        items.append(
            f"<li><strong>{title}</strong><br><small>{source}</small><br>"
            f"Topics: {topics}{others}</li>"
        )
    heading = html.escape(
        f"{len(notification.alerts)} alerts" if notification.digest else "New alert"
    )
    return f"<!doctype html><html><body><h2>{heading}</h2><ul>{''.join(items)}</ul></body></html>"
