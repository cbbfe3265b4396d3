"""What the ingest service does with a direct publisher's stream entries, dependencies passed in.

``create_app`` (app.py) wires these to the public ingest stream; tests call them directly
against a real Redis.  The HTTP routes are ``api.py`` and the feed poller ``feed_poller.py``;
all three hand what they receive to the same :class:`~services.ingest.pipeline.IngestPipeline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from datetime import UTC

from redis.exceptions import RedisError

from services.common.consumer import Entry
from services.common.models import ArticleSubmission
from services.ingest.dates import DateParseError, parse_published_at
from services.ingest.normalize import normalize_submission, normalize_submissions
from services.ingest.pipeline import IngestPipeline, Input, Outcome, rejected

log = logging.getLogger(__name__)


class IngestEntries:
    """The batch handler of the public ingest stream (``XADD ... __data__ <JSON>``)."""

    def __init__(self, pipeline: IngestPipeline) -> None:
        self.pipeline = pipeline

    async def __call__(self, entries: Sequence[Entry]) -> list[str]:
        """Each entry ends accepted, duplicate or on the rejected stream; then it may be acked.

        The batch is normalised together and recorded in one Redis pipeline
        (:meth:`IngestPipeline.submit_many`). When Redis fails, nothing is acked and the
        entries stay pending, to be re-claimed later; an entry whose own record Redis refused
        stays pending alone: nothing is acked before its outcome is stored.
        """
        inputs = [decode_entry(self.pipeline, entry) for entry in entries]
        try:
            outcomes = await self.pipeline.submit_many(inputs, "stream")
        except RedisError as exc:
            log.warning(
                "ingest stream: Redis failed on a batch of %d, will retry: %s", len(entries), exc
            )
            return []
        recorded = zip(entries, outcomes, strict=True)
        return [entry.id for entry, outcome in recorded if outcome is not None]


async def warm_up() -> None:
    """Before taking traffic, load what every article needs: the language model.

    It loads lazily (about a second); without this the first articles after a start waited
    for it, against a promise of an alert within a second. What only some inputs need (the
    HTML extractor, dateparser's languages) is loaded in a background thread started here
    (:func:`warm_up_rest`), so a start is not held up by it (it was a quarter of the start's
    CPU, and a start on a loaded machine took 15 s).
    """
    sample = ArticleSubmission(
        title="Warm-up",
        body="MOSCOW (Agency) - A sentence in English, published 16:02 27.11.2019.",
        published_at="16:02 27.11.2019",
    )
    await asyncio.to_thread(normalize_submissions, [sample], received_via="api")
    threading.Thread(target=warm_up_rest, name="ingest-warm-up", daemon=True).start()


def warm_up_rest() -> None:
    """Load what only some inputs need; an input that needs it meanwhile is handled the same,
    waiting for the import in progress instead of starting it."""
    try:
        # A page (its title and metadata are read even beside a body): loads the extractor.
        page = "<html><head><title>Warm-up</title></head><body><p>A sentence.</p></body></html>"
        normalize_submission(ArticleSubmission(title="Warm-up", html=page), received_via="api")
        # A date no fast parser reads makes dateparser load its languages (0.8 s the first
        # time); the first odd date a producer sends should not pay for that.
        with contextlib.suppress(DateParseError):
            parse_published_at("0", default_tz=UTC)
    except Exception:  # only a warm-up: the first input that needs it loads it anyway
        log.exception("ingest: warming up the HTML extractor and dateparser failed")


async def submit_entry(pipeline: IngestPipeline, entry: Entry) -> Outcome:
    """One direct publisher's entry on its own (the batch handler does many at once)."""
    item = decode_entry(pipeline, entry)
    if item.outcome is not None:
        return await pipeline.reject(item.outcome, item.raw, "stream", entry.id)
    return await pipeline.submit(item.payload, "stream", raw=item.raw, entry_id=entry.id)


def decode_entry(pipeline: IngestPipeline, entry: Entry) -> Input:
    """A direct publisher's entry decoded leniently: its JSON payload, or why it is rejected."""
    if entry.data is None:
        outcome = rejected("entry has no __data__ field", "__data__", "missing")
        return Input(None, entry.text(), entry.id, outcome)
    oversized = pipeline.oversized(len(entry.data))
    if oversized is not None:
        return Input(None, entry.text(), entry.id, oversized)
    try:
        text = entry.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        outcome = rejected(f"__data__ is not valid UTF-8: {exc}", "__data__", "not valid UTF-8")
        return Input(None, entry.text(), entry.id, outcome)
    try:
        payload = json.loads(text)
    except RecursionError:
        outcome = rejected("__data__ is nested too deeply", "__data__", "nested too deeply")
        return Input(None, text, entry.id, outcome)
    except ValueError as exc:
        outcome = rejected(f"__data__ is not valid JSON: {exc}", "__data__", "not valid JSON")
        return Input(None, text, entry.id, outcome)
    return Input(payload, text, entry.id)
