"""Notify's HTTP API: subscriptions (CRUD), alert history, live stream, redelivery.

Authorisation:

* Subscription CRUD, secret rotation and redelivery need an API key from
  ``TOPICWATCH_API_KEYS`` (``Authorization: Bearer <key>``) when keys are configured.
* A subscription's history and live stream need its own read token (``swr_...``, returned at
  creation) or an API key, as a bearer token or ``?token=`` (browsers' ``EventSource`` cannot
  send headers). The read token can be handed to a dashboard without giving it write access.

Secrets (webhook secret, read token) are shown once, in the answer that creates them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import ValidationError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.http import require_api_key
from services.common.models import field_errors, utcnow
from services.common.openapi import errors
from services.common.settings import Settings
from services.common.ssrf import ResolutionError, UnsafeURLError, check_webhook_url
from services.common.streams import DATA_FIELD, as_text
from services.notify import deadletters
from services.notify.alerts import AlertKeys
from services.notify.delivery import DeliveryWorker
from services.notify.signing import generate_secret
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import (
    RetiringSecret,
    Subscription,
    SubscriptionCreate,
    SubscriptionPatch,
)

HIDDEN_FIELDS = ("webhook_secret", "read_token", "previous_webhook_secrets")
MAX_HISTORY_PAGE = 1000
#: Largest listing offset (Redis ranks are 64-bit; past the last subscription a page is empty).
MAX_OFFSET = 2**53
#: Largest stream id part (Redis stream ids are two unsigned 64-bit numbers).
MAX_STREAM_ID_PART = 2**64 - 1

#: The subscription a 201 created, for the operations on it (clients and schemathesis follow).
_SUBSCRIPTION = "#/paths/~1v1~1subscriptions~1{subscription_id}"
_CREATED_LINKS = {
    name: {
        "operationRef": ref,
        "parameters": {"subscription_id": "$response.body#/id"},
        "description": description,
    }
    for name, ref, description in (
        ("GetSubscription", f"{_SUBSCRIPTION}/get", "Read the subscription"),
        ("PatchSubscription", f"{_SUBSCRIPTION}/patch", "Change the subscription"),
        ("DeleteSubscription", f"{_SUBSCRIPTION}/delete", "Delete the subscription"),
        ("RotateSecret", f"{_SUBSCRIPTION}~1rotate-secret/post", "Rotate its webhook secret"),
        ("ListAlerts", f"{_SUBSCRIPTION}~1alerts/get", "Its alert history"),
    )
}


def public_view(subscription: Subscription) -> dict[str, Any]:
    """A subscription as GET shows it: no secrets (they were shown once, at creation)."""
    return subscription.model_dump(mode="json", exclude=set(HIDDEN_FIELDS))


def _field_error(field: str, message: str, status: int = 422) -> HTTPException:
    return HTTPException(status, detail=[{"field": field, "message": message}])


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query_params.get("token")


def parse_since(value: str) -> tuple[str | None, str | None]:
    """``since`` as (alert id, None) or (None, stream id of a time), or raise ValueError.

    Times: ISO 8601 with a zone, or Unix seconds / milliseconds.
    """
    text = value.strip()
    if text.startswith("alt_"):
        return text, None
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not 0 <= number < 2**63:  # also refuses nan and inf
            raise ValueError("a Unix time must be a non-negative number of seconds or ms")
        ms = int(number if number > 10**11 else number * 1000)
        if ms > MAX_STREAM_ID_PART:
            raise ValueError("a Unix time must be a non-negative number of seconds or ms")
        return None, f"{ms}-0"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time needs a zone, e.g. 2026-01-01T12:00:00Z")
    return None, f"{max(int(moment.timestamp() * 1000), 0)}-0"


class History:
    """Reads a subscription's history stream (the source of both history and live stream)."""

    def __init__(self, client: aioredis.Redis, keys: AlertKeys) -> None:
        self.client = client
        self.keys = keys

    async def start_after(self, sid: str, since: str | None) -> str:
        """The stream id to read *after*: since's alert or time, else the newest entry."""
        if since is None:
            newest = await self.client.xrevrange(self.keys.history(sid), "+", "-", count=1)
            return as_text(newest[0][0]) if newest else "0-0"
        alert_id, stream_id = parse_since(since)
        if alert_id is not None:
            pos = await self.client.get(self.keys.position(alert_id, sid))
            # Unknown or trimmed: replay what is kept rather than silently skip alerts.
            return as_text(pos) if pos else "0-0"
        assert stream_id is not None
        ms = int(stream_id.split("-")[0])
        return f"{ms - 1}-18446744073709551615" if ms > 0 else "0-0"

    async def read_after(
        self, sid: str, after: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        entries = await self.client.xrange(self.keys.history(sid), f"({after}", "+", count=count)
        return await self.current(sid, [(as_text(i), _decode(f)) for i, f in entries or []])

    async def latest(self, sid: str, count: int) -> list[tuple[str, dict[str, Any]]]:
        entries = await self.client.xrevrange(self.keys.history(sid), "+", "-", count=count)
        found = [(as_text(i), _decode(f)) for i, f in reversed(entries or [])]
        return await self.current(sid, found)

    async def current(
        self, sid: str, entries: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Each alert as it is now (other outlets may have been listed on it since it was
        created), falling back to the history's copy when the record has expired."""
        if not entries:
            return entries
        keys = [self.keys.alert(str(d.get("id", "")), sid) for _, d in entries]
        raws = await self.client.mget(keys)  # one subscription: one slot
        return [
            (entry_id, json.loads(raw) if raw else data)
            for (entry_id, data), raw in zip(entries, raws, strict=True)
        ]


def _decode(fields: Any) -> dict[str, Any]:
    fields = fields or {}
    raw = fields.get(DATA_FIELD.encode()) or fields.get(DATA_FIELD) or b"{}"
    data: dict[str, Any] = json.loads(raw)
    return data


def build_router(
    settings: Settings,
    store: SubscriptionStore,
    worker: DeliveryWorker,
    *,
    clock: Callable[[], datetime] | None = None,
    sse_ping_seconds: float = 15.0,
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    history = History(worker.client, worker.keys)
    now = clock or utcnow
    allow_private = settings.allow_private_webhooks

    async def check_url(url: str | None) -> None:
        if not url:
            return
        try:
            await check_webhook_url(url, allow_private=allow_private)
        except UnsafeURLError as exc:
            raise _field_error("webhook_url", exc.reason) from None
        except ResolutionError as exc:
            raise _field_error("webhook_url", str(exc)) from None

    async def check_topics(topics: list[str] | None) -> None:
        """Refuse topic ids the classifier does not know (a typo would mean: never alerted).

        Classify announces its taxonomy in Redis; before it has ever run there is nothing to
        check against, and any id is accepted.
        """
        if not topics:
            return
        raw = await worker.client.get(worker.names.taxonomy)
        if not raw:
            return
        known = set(json.loads(raw).get("topics", []))
        unknown = [t for t in topics if t not in known]
        if unknown:
            raise _field_error(
                "topics",
                f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            )

    def check_one_channel(subscription: Subscription) -> None:
        if subscription.webhook_url and subscription.email:
            raise _field_error("email", "give webhook_url or email, not both")

    async def get_or_404(subscription_id: str) -> Subscription:
        subscription = await store.get(subscription_id)
        if subscription is None:
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        return subscription

    async def reader(subscription_id: str, request: Request) -> Subscription:
        """The subscription, if the caller holds its read token or an API key."""
        subscription = await get_or_404(subscription_id)
        token = _bearer(request)
        if token:
            if hmac.compare_digest(token.encode(), subscription.read_token.encode()):
                return subscription
            for key in settings.api_key_values():
                if hmac.compare_digest(token.encode(), key.encode()):
                    return subscription
        raise HTTPException(
            401,
            detail="send the subscription's read token (or an API key) as "
            "'Authorization: Bearer <token>' or ?token=",
            headers={"WWW-Authenticate": "Bearer"},
        )

    api_key = [Depends(require_api_key)]

    @router.post(
        "/subscriptions",
        status_code=201,
        tags=["subscriptions"],
        dependencies=api_key,
        responses={201: {"description": "Created", "links": _CREATED_LINKS}},
    )
    async def create(body: SubscriptionCreate) -> dict[str, Any]:
        """Subscribe. The answer carries the webhook secret and read token, shown this once."""
        await check_url(body.webhook_url)
        await check_topics(body.topics)
        subscription = Subscription.create(body, now=now())
        check_one_channel(subscription)
        await store.put(subscription)
        return subscription.public()

    @router.get("/subscriptions", tags=["subscriptions"], dependencies=api_key)
    async def list_(
        offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(50, ge=1, le=500)
    ) -> dict[str, Any]:
        subscriptions, total = await store.page(offset, limit)
        return {
            "subscriptions": [public_view(s) for s in subscriptions],
            "total": total,
            "offset": offset,
            "limit": limit,
        }

    @router.get(
        "/subscriptions/{subscription_id}",
        tags=["subscriptions"],
        dependencies=api_key,
        responses=errors(404),
    )
    async def get(subscription_id: str) -> dict[str, Any]:
        return public_view(await get_or_404(subscription_id))

    @router.patch(
        "/subscriptions/{subscription_id}",
        tags=["subscriptions"],
        dependencies=api_key,
        responses=errors(404),
    )
    async def patch(subscription_id: str, body: SubscriptionPatch) -> dict[str, Any]:
        """Change only the fields sent (``null`` clears); the result is validated as a whole.

        The fields sent are applied to the subscription as stored at the moment of writing
        (``store.update``), so a concurrent change to other fields (say, the delivery worker
        disabling it after a 410) is kept, not overwritten by a stale copy.
        """
        await get_or_404(subscription_id)
        if "webhook_url" in body.model_fields_set:
            await check_url(body.webhook_url)
        if "topics" in body.model_fields_set:
            await check_topics(body.topics)
        had_secret: dict[str, bool] = {}

        def change(current: Subscription) -> Subscription:
            try:
                changed = current.apply(body, now=now())
            except ValidationError as exc:  # the merged whole is invalid (digest, no interval)
                detail = [e.model_dump() for e in field_errors(exc)]
                raise HTTPException(422, detail=detail) from None
            check_one_channel(changed)
            had_secret["before"] = bool(current.webhook_secret)
            return changed

        changed = await store.update(subscription_id, change)
        if changed is None:  # deleted meanwhile
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        view = public_view(changed)
        if changed.webhook_secret and not had_secret["before"]:
            view["webhook_secret"] = changed.webhook_secret  # a new secret is shown once
        return view

    @router.delete(
        "/subscriptions/{subscription_id}",
        status_code=204,
        tags=["subscriptions"],
        dependencies=api_key,
        responses=errors(404),
    )
    async def delete(subscription_id: str) -> Response:
        if not await store.delete(subscription_id):
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        return Response(status_code=204)

    @router.post(
        "/subscriptions/{subscription_id}/rotate-secret",
        tags=["subscriptions"],
        dependencies=api_key,
        responses=errors(404, 409),
    )
    async def rotate(
        subscription_id: str, grace_hours: float = Query(24.0, ge=0, le=24 * 30)
    ) -> dict[str, Any]:
        """New webhook secret; the old one keeps signing (a second signature) for the grace."""
        await get_or_404(subscription_id)
        secret = generate_secret()
        moment = now()

        def change(current: Subscription) -> Subscription:
            if not current.webhook_url or not current.webhook_secret:
                raise _field_error("webhook_url", "the subscription has no webhook", 409)
            keep = [s for s in current.previous_webhook_secrets if s.expires_at > moment]
            if grace_hours > 0:
                expires = moment + timedelta(hours=grace_hours)
                keep.append(RetiringSecret(secret=current.webhook_secret, expires_at=expires))
            return current.model_copy(
                update={
                    "webhook_secret": secret,
                    "previous_webhook_secrets": keep,
                    "updated_at": moment,
                }
            )

        changed = await store.update(subscription_id, change)
        if changed is None:  # deleted meanwhile
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        keep = changed.previous_webhook_secrets
        return {
            "id": subscription_id,
            "webhook_secret": secret,
            "previous_secrets_valid_until": [s.expires_at.isoformat() for s in keep],
        }

    @router.get(
        "/subscriptions/{subscription_id}/alerts", tags=["alerts"], responses=errors(401, 404)
    )
    async def alerts(
        subscription: Subscription = Depends(reader),  # noqa: B008 - a closure dependency
        since: str | None = Query(None, description="An alert id, or a time (ISO 8601 / Unix)"),
        limit: int = Query(100, ge=1, le=MAX_HISTORY_PAGE),
    ) -> dict[str, Any]:
        """Alert history, oldest first: after ``since``, or the latest ``limit`` without it."""
        sid = subscription.id
        if since is None:
            entries = await history.latest(sid, limit)
        else:
            try:
                after = await history.start_after(sid, since)
            except ValueError as exc:
                raise _field_error("since", str(exc)) from None
            entries = await history.read_after(sid, after, limit)
        items = [data for _, data in entries]
        return {
            "subscription_id": sid,
            "alerts": items,
            "next_since": items[-1]["id"] if items else since,
        }

    @router.get(
        "/subscriptions/{subscription_id}/stream",
        tags=["alerts"],
        response_class=EventSourceResponse,
        responses=errors(401, 404),
    )
    async def stream(
        request: Request,
        subscription: Subscription = Depends(reader),  # noqa: B008 - a closure dependency
        since: str | None = Query(None),
        last_event_id: str | None = Header(None),
    ) -> EventSourceResponse:
        """Server-Sent Events, one ``alert`` event per alert, its id the alert id.

        ``Last-Event-ID`` (sent by EventSource on reconnect) or ``?since=`` replays what was
        missed from the history, then the stream goes live; comments keep proxies from
        cutting an idle connection.
        """
        sid = subscription.id
        resume = last_event_id or since
        try:
            after = await history.start_after(sid, resume)
        except ValueError as exc:
            raise _field_error("since", str(exc)) from None
        key = worker.keys.history(sid)
        # Short blocking reads: a read must end before the Redis client's socket timeout
        # (5 s by default in redis-py 8), or an idle stream dies. sse-starlette sends the
        # keep-alive comments on its own, so the block length only bounds the disconnect check.
        block_ms = max(min(int(sse_ping_seconds * 1000), 1000), 10)

        async def events() -> AsyncIterator[ServerSentEvent]:
            cursor = after
            while True:
                if await request.is_disconnected():
                    return
                try:
                    reply = await worker.client.xread({key: cursor}, count=100, block=block_ms)
                except RedisTimeoutError:  # a client with a shorter socket timeout: idle
                    continue
                batch = cast(list[tuple[Any, list[tuple[Any, Any]]]], reply or [])
                for _stream, entries in batch:
                    # As history shows them: a replayed alert lists the outlets found since.
                    found = [(as_text(i), _decode(f)) for i, f in entries]
                    for entry_id, data in await history.current(sid, found):
                        cursor = entry_id
                        yield ServerSentEvent(
                            data=json.dumps(data), id=str(data.get("id", "")), event="alert"
                        )

        return EventSourceResponse(events(), ping=sse_ping_seconds)

    @router.get("/alerts/{alert_id}", tags=["alerts"], dependencies=api_key, responses=errors(404))
    async def alert(alert_id: str) -> dict[str, Any]:
        """An alert with its delivery attempts (when it was sent alone) and dead-letter state."""
        found = await worker.alert(alert_id)
        if found is None:
            raise HTTPException(404, detail=f"no alert {alert_id}")
        sid = found.subscription_id
        dead = await worker.client.get(worker.keys.dead_entry(alert_id, sid))
        return {
            "alert": found.model_dump(mode="json"),
            "attempts": await worker.attempts(alert_id, sid),
            "dead_letter_entry": as_text(dead) if dead else None,
        }

    @router.post(
        "/alerts/{alert_id}/redeliver",
        status_code=202,
        tags=["alerts"],
        dependencies=api_key,
        responses=errors(404, 409),
    )
    async def redeliver(alert_id: str) -> dict[str, Any]:
        """Queue an alert again (e.g. after a dead letter), with a fresh retry budget."""
        try:
            if not await deadletters.redeliver(worker, alert_id):
                raise HTTPException(404, detail=f"no alert {alert_id}")
        except deadletters.NotRedeliverable as exc:
            detail = f"{alert_id} cannot be delivered: {exc.reason}"
            raise HTTPException(409, detail=detail) from None
        return {"id": alert_id, "status": "queued"}

    return router
