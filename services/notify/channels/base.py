"""The one small interface every delivery channel implements.

Modelled on Alertmanager's notifiers: a channel only knows how to *send* one notification to
one destination and how to classify what happened. Whether to retry, when, when to give up
and dead-letter, and de-duplication are shared steps in the delivery worker, written once
(``retry.py``, ``schedule.py``) rather than copied into each channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from services.common.models import Alert, utcnow


class OutcomeStatus(StrEnum):
    DELIVERED = "delivered"
    #: Worth another attempt later (timeouts, connection errors, 5xx, 429, SMTP 4xx).
    RETRYABLE = "retryable"
    #: Will fail the same way again (4xx, refused URL, SMTP 5xx): dead-letter now.
    PERMANENT = "permanent"
    #: The receiver says the endpoint is gone for good (HTTP 410): disable the destination.
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt achieved, recorded in the alert's attempt log and dead letter."""

    status: OutcomeStatus
    reason: str = ""
    retry_after: float | None = None
    status_code: int | None = None

    @classmethod
    def delivered(cls, reason: str = "", status_code: int | None = None) -> DeliveryOutcome:
        return cls(OutcomeStatus.DELIVERED, reason, None, status_code)

    @classmethod
    def retryable(
        cls, reason: str, retry_after: float | None = None, status_code: int | None = None
    ) -> DeliveryOutcome:
        return cls(OutcomeStatus.RETRYABLE, reason, retry_after, status_code)

    @classmethod
    def permanent(cls, reason: str, status_code: int | None = None) -> DeliveryOutcome:
        return cls(OutcomeStatus.PERMANENT, reason, None, status_code)

    @classmethod
    def gone(cls, reason: str, status_code: int | None = None) -> DeliveryOutcome:
        return cls(OutcomeStatus.GONE, reason, None, status_code)

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.DELIVERED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "retry_after": self.retry_after,
            "status_code": self.status_code,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryOutcome:
        return cls(
            OutcomeStatus(data["status"]),
            str(data.get("reason", "")),
            data.get("retry_after"),
            data.get("status_code"),
        )


def digest_id_for(subscription_id: str, alert_ids: Sequence[str]) -> str:
    """Deterministic digest id: the same batch gets the same ``webhook-id`` on every retry."""
    basis = "\x00".join((subscription_id, *alert_ids))
    return "dig_" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to send: a single alert, or a digest of several for one subscription.

    ``id`` is the alert id for a single alert and a digest id for a digest; it is the
    ``webhook-id`` header and the e-mail ``Message-ID`` of every attempt, so a receiver can
    drop a repeat however often we retry.
    """

    id: str
    subscription_id: str
    alerts: tuple[Alert, ...]
    digest: bool = False
    subscription_name: str = ""
    reason: str = ""  # why a digest: "digest", "rate_limit", "muted"

    @classmethod
    def single(cls, alert: Alert, subscription_name: str = "") -> Notification:
        return cls(alert.id, alert.subscription_id, (alert,), False, subscription_name)

    @classmethod
    def batch(
        cls,
        subscription_id: str,
        alerts: Sequence[Alert],
        subscription_name: str = "",
        reason: str = "digest",
    ) -> Notification:
        """A digest of ``alerts``; a batch of one is sent as that plain alert."""
        if not alerts:
            raise ValueError("a digest needs at least one alert")
        if len(alerts) == 1:
            return cls.single(alerts[0], subscription_name)
        ids = [alert.id for alert in alerts]
        return cls(
            digest_id_for(subscription_id, ids),
            subscription_id,
            tuple(alerts),
            True,
            subscription_name,
            reason,
        )

    @property
    def alert_ids(self) -> list[str]:
        return [alert.id for alert in self.alerts]

    def payload(self, timestamp: datetime | None = None) -> dict[str, Any]:
        """The JSON body: ``alert.created`` for one alert, ``alert.digest`` for several."""
        ts = timestamp or utcnow()
        if not self.digest:
            return self.alerts[0].webhook_payload(ts)
        return {
            "type": "alert.digest",
            "timestamp": ts.isoformat(),
            "data": {
                "digest_id": self.id,
                "subscription_id": self.subscription_id,
                "reason": self.reason,
                "count": len(self.alerts),
                "alerts": [alert.webhook_payload(ts)["data"] for alert in self.alerts],
            },
        }


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a subscription's notifications go: a webhook URL (with secrets) or an address."""

    kind: Literal["webhook", "email"]
    address: str
    #: Webhook signing secrets, newest first; two while a rotation's grace period runs.
    secrets: tuple[str, ...] = field(default=())


class Channel(Protocol):
    """A way of sending notifications. Implementations must not raise for delivery failures:
    every failure is classified into a ``DeliveryOutcome``."""

    kind: str

    async def send(
        self, notification: Notification, destination: Destination
    ) -> DeliveryOutcome: ...

    async def aclose(self) -> None: ...
