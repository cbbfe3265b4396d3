"""The percolator over every stored subscription, kept in step with the store."""

from __future__ import annotations

from services.notify.percolator import Percolator
from services.notify.store import SubscriptionStore


class SubscriptionIndex:
    """The percolator over every stored subscription, kept in step with the store.

    One cheap ``GET`` per batch tells whether any process changed a subscription. If so, the
    changes since the last look are applied one by one (re-reading each changed
    subscription), which keeps a change cheap with 100,000 subscriptions; only when the
    change log no longer holds every change since then (it is capped) is the index rebuilt.
    """

    def __init__(self, store: SubscriptionStore, percolator: Percolator) -> None:
        self.store = store
        self.percolator = percolator
        self.version = -1
        self.position = "0-0"
        self.rebuilds = 0

    async def current(self) -> Percolator:
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
        self.version, self.position = await self.store.position()
        self.percolator.rebuild(await self.store.all())
        self.rebuilds += 1
        return self.percolator
