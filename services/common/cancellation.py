"""Cancelling a task must stop it: Python 3.11's ``asyncio.wait_for`` can lose the cancel.

On Python < 3.12, ``asyncio.wait_for`` returns normally when the task awaiting it is
cancelled just as the awaited operation completes (CPython gh-86296; 3.12 rebuilt it on
``asyncio.timeout``). redis-py's asyncio connection wraps every socket write in it whenever a
socket timeout is set, which redis-py 8 does by default (5 s). So a task cancelled while it
sends a command can carry on as if nothing had happened: measured here, about one cancel in
seven of a task looping on GET against a real server was lost. A service stopping its loops
(SIGTERM) or a test's teardown then waits for them forever: this is what hung ``make test``'s
rerun on Redis 7 (the reclaim loop went on after its cancel).

:func:`patch_redis` gives redis-py's connection module :func:`wait_for`, with Python 3.12's
semantics, which let a cancel through. Nothing else changes, and nothing at all on 3.12+.
It runs when ``services.common`` is imported, so every service, CLI command, harness and
test process has it before it opens a connection.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 (its signature)
    """``asyncio.wait_for`` as Python 3.12 has it: a timeout scope around the await.

    A cancel of the caller always ends in ``CancelledError``; the timeout still raises
    ``TimeoutError`` (which is ``asyncio.TimeoutError``, what redis-py catches).
    """
    if timeout is None:
        return await aw
    async with asyncio.timeout(timeout):
        return await aw


class _AsyncioWithSafeWaitFor(types.ModuleType):
    """The ``asyncio`` module as one library sees it: all of it, but :func:`wait_for`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def patch_redis() -> bool:
    """Make redis-py's asyncio connections use :func:`wait_for` (Python < 3.12 only).

    Returns whether the patch is (now) in place. Idempotent.
    """
    if sys.version_info >= (3, 12):
        return False
    import redis.asyncio.connection as connection

    if isinstance(connection.asyncio, _AsyncioWithSafeWaitFor):
        return True
    proxy = _AsyncioWithSafeWaitFor("asyncio")
    proxy.wait_for = wait_for  # type: ignore[attr-defined]
    connection.asyncio = proxy
    return True
