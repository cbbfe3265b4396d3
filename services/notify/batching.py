"""One Redis round trip for the commands of many concurrent deliveries.

The delivery worker drains hundreds of subscriptions at once, one task each, and each step
of a task is a few Redis commands (load the queue head, store what is in flight, record the
attempt and complete it). Sent one by one, each command paid a full round trip of redis-py's
client machinery (take a connection, write, wait, parse, give it back): ~15 % of notify's CPU
at fan-out load, and the reason one process topped out at ~250 webhooks/s.

``CommandBatcher`` collects the command groups that tasks queue during one turn of the event
loop and sends them as one pipeline (``transaction=False``) on the next turn. Each group is
still its own unit: its commands run in order, one after another on the server, and its
caller gets exactly its own results (or the first error among them). Groups of different
tasks share nothing but the connection, so a group touches the keys of one subscription
(plus the shared schedule key), which keeps every group valid on Redis Cluster, where a
non-transactional pipeline is split by slot.

Scripts go as ``EVAL`` with their source: the server caches them by hash, and unlike
``EVALSHA`` a restarted server (empty script cache) cannot answer ``NOSCRIPT`` halfway
through a group whose first commands already ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

#: Groups in one pipeline at most; more wait for the next one (bounds one reply's size).
MAX_GROUPS = 512

#: A single node's or a cluster's non-transactional pipeline.
PipelineLike = Pipeline | ClusterPipeline
Fill = Callable[[PipelineLike], None]


class CommandBatcher:
    """Queue a group with ``await batcher.run(fill)``; ``fill(pipe)`` adds its commands."""

    def __init__(self, client: aioredis.Redis, max_groups: int = MAX_GROUPS) -> None:
        self.client = client
        self.max_groups = max_groups
        self._pending: list[tuple[Fill, asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()  # referenced until done

    async def run(self, fill: Fill) -> list[Any]:
        """The results of the commands ``fill`` adds, in order; raises the first error."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((fill, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_groups):
            batch = pending[start : start + self.max_groups]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Fill, asyncio.Future[list[Any]]]]) -> None:
        live: list[tuple[int, int, asyncio.Future[list[Any]]]] = []
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for fill, future in batch:
                    if future.done():  # its task was cancelled meanwhile
                        continue
                    first = len(pipe)  # commands queued so far (cluster pipelines too)
                    try:
                        fill(pipe)
                    except Exception as exc:  # a bad argument fails its own group
                        future.set_exception(exc)
                    live.append((first, len(pipe), future))
                results = await pipe.execute(raise_on_error=False) if live else []
        except BaseException as exc:  # the connection failed: every group gets the error
            for _, _, future in live:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for first, end, future in live:
            if future.done():
                continue
            mine = results[first:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)


def eval_script(pipe: PipelineLike, source: str, keys: list[str], args: list[Any]) -> None:
    """Add a script call to ``pipe`` (see the module docstring for why ``EVAL``)."""
    pipe.eval(source, len(keys), *keys, *args)
