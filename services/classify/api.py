"""Classify's HTTP API: the taxonomy in use, and a dry run of one article."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from services.classify.handlers import DryRunError, dry_run
from services.classify.reload import ClassifierHolder
from services.common.models import ArticleSubmission


def build_router(holder: ClassifierHolder) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/topics", tags=["topics"])
    async def topics() -> dict[str, Any]:
        """The taxonomy in use: its version and every topic."""
        clf = holder.current
        return {"taxonomy_version": clf.version, "topics": clf.topics_summary()}

    @router.post("/classify", tags=["topics"])
    async def classify(submission: ArticleSubmission, explain: bool = False) -> dict[str, Any]:
        """Dry run: the topics and entities one article would get; nothing is published.

        ``?explain=true`` adds ``details``: every topic a rule fired for (tagged or not),
        its score and threshold, each rule's contribution with its evidence, and dampers.
        """
        try:
            return await dry_run(holder, submission, explain=explain)
        except DryRunError as exc:
            raise HTTPException(422, detail=[e.model_dump() for e in exc.errors]) from None

    return router
