"""Notify's HTTP API: subscriptions and alert redelivery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.common.http import require_api_key
from services.common.models import utcnow
from services.notify.delivery import DeliveryWorker
from services.notify.signing import generate_secret
from services.notify.ssrf import ResolutionError, UnsafeURLError, check_webhook_url
from services.notify.store import SubscriptionStore, new_subscription_id

SECRET_FIELDS = ("webhook_secret", "previous_secrets", "read_token")


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    topics: list[str] = Field(min_length=1, max_length=100)
    webhook_url: str | None = Field(default=None, max_length=2048)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: secrets are returned once, at creation, only."""
    return {k: v for k, v in doc.items() if k not in SECRET_FIELDS}


def build_router(
    store: SubscriptionStore, worker: DeliveryWorker, *, allow_private: bool
) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post(
        "/subscriptions",
        status_code=201,
        tags=["subscriptions"],
        dependencies=[Depends(require_api_key)],
    )
    async def create(body: SubscriptionCreate) -> dict[str, Any]:
        """Subscribe; the answer carries the webhook secret, shown this one time."""
        if body.webhook_url:
            try:
                await check_webhook_url(body.webhook_url, allow_private=allow_private)
            except UnsafeURLError as exc:
                raise HTTPException(
                    422, detail=[{"field": "webhook_url", "message": exc.reason}]
                ) from None
            except ResolutionError as exc:
                raise HTTPException(
                    422, detail=[{"field": "webhook_url", "message": str(exc)}]
                ) from None
        now = utcnow().isoformat()
        doc = {
            "id": new_subscription_id(),
            **body.model_dump(),
            "webhook_secret": generate_secret(),
            "created_at": now,
            "updated_at": now,
            "disabled": False,
        }
        await store.put(doc)
        return {**public_view(doc), "webhook_secret": doc["webhook_secret"]}

    @router.get("/subscriptions/{subscription_id}", tags=["subscriptions"])
    async def get(subscription_id: str) -> dict[str, Any]:
        doc = await store.get(subscription_id)
        if doc is None:
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        return public_view(doc)

    @router.get("/subscriptions", tags=["subscriptions"])
    async def list_(
        offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)
    ) -> dict[str, Any]:
        docs, total = await store.page(offset, limit)
        return {"subscriptions": [public_view(d) for d in docs], "total": total,
                "offset": offset, "limit": limit}

    @router.delete(
        "/subscriptions/{subscription_id}",
        status_code=204,
        tags=["subscriptions"],
        dependencies=[Depends(require_api_key)],
    )
    async def delete(subscription_id: str) -> Response:
        if not await store.delete(subscription_id):
            raise HTTPException(404, detail=f"no subscription {subscription_id}")
        return Response(status_code=204)

    @router.post(
        "/alerts/{alert_id}/redeliver",
        status_code=202,
        tags=["alerts"],
        dependencies=[Depends(require_api_key)],
    )
    async def redeliver(alert_id: str) -> dict[str, Any]:
        if not await worker.redeliver(alert_id):
            raise HTTPException(404, detail=f"no alert {alert_id}")
        return {"id": alert_id, "status": "queued"}

    return router
