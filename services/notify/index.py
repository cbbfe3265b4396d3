"""The percolator over every stored subscription, kept in step with the store."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

from services.notify.percolator import Percolator
from services.notify.store import SubscriptionStore, load_document

#: Subscriptions read per ``MGET`` during a rebuild: one reply of this many documents is
#: parsed (by hiredis, on the event loop) in a few milliseconds, and the loop runs between
#: chunks.
REBUILD_CHUNK = 1_000


def add_documents(percolator: Percolator, documents: Sequence[bytes | str]) -> None:
    """Validate stored documents and add them to ``percolator``: the CPU-heavy part of a
    rebuild (pydantic validation, query compilation, indexing), run in a worker thread."""
    percolator.add_all(s for raw in documents if (s := load_document(raw)) is not None)


class SubscriptionIndex:
    """The percolator over every stored subscription, kept in step with the store.

    One cheap ``GET`` per batch tells whether any process changed a subscription. If so, the
    changes since the last look are applied one by one (re-reading each changed
    subscription), which keeps a change cheap with 100,000 subscriptions; only when the
    change log no longer holds every change since then (it is capped) is the index rebuilt.

    A rebuild must not stall the event loop (the HTTP API and the probes share it): 100,000
    subscriptions take seconds of CPU to validate and index. So the fresh index is built
    aside, read in chunks and filled in a worker thread (pure Python and pydantic, which
    give the GIL back to the loop every few milliseconds), and swapped in at once; until
    then the articles wait for it and everything else keeps being answered. The garbage
    collector is kept from walking the index (see ``_refresh``).
    """

    def __init__(self, store: SubscriptionStore, percolator: Percolator) -> None:
        self.store = store
        self.percolator = percolator
        self.version = -1
        self.position = "0-0"
        self.rebuilds = 0
        self._lock = asyncio.Lock()  # one refresh at a time (a rebuild spans many awaits)

    async def current(self) -> Percolator:
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> Percolator:
        version = await self.store.version()
        if version == self.version:
            return self.percolator
        if self.version >= 0:
            changes = await self.store.changes_since(self.position)
            # Every change bumps the version once, in the same transaction as its log entry;
            # the log may have grown since `version` was read, never shrunk below it.
            if len(changes) >= version - self.version:
                for _change_id, sid, _op in changes:
                    subscription = await self.store.get(sid)
                    if subscription is None:
                        self.percolator.remove(sid)
                    else:
                        self.percolator.add(subscription)
                self.version += len(changes)
                if changes:
                    self.position = changes[-1][0]
                return self.percolator
        # First look, or fell behind the capped log: start again from a consistent point.
        # Changes made while the chunks are read come after `position` and are applied
        # (again: applying a change is idempotent) on the next look.
        version, position = await self.store.position()
        fresh = Percolator()
        # The cyclic collector is paused for the whole rebuild, and what is alive once the
        # index is swapped in is frozen (moved out of its sight): a full collection walks
        # every tracked object while holding the GIL, which with the index growing meant
        # loop stalls of 0.3-1.6 s during a 20,000-subscription rebuild (measured), and with
        # 100,000 subscriptions alive, a stall at every full collection afterwards.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            ids = await self.store.ids()
            for start in range(0, len(ids), REBUILD_CHUNK):
                documents = await self.store.documents(ids[start : start + REBUILD_CHUNK])
                await asyncio.to_thread(add_documents, fresh, documents)
            self.percolator.replace_with(fresh)
        finally:
            if was_enabled:
                gc.enable()
        gc.freeze()
        self.version, self.position = version, position
        self.rebuilds += 1
        return self.percolator
