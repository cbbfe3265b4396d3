"""The counters every service shares, in a real service (uvicorn + Redis, in process)."""

from __future__ import annotations

import httpx
import redis as redis_sync

from services.classify.app import create_app
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, StreamNames
from tests.servers import serving, wait_for

SERIES = 'topicwatch_dead_letters_total{stream="topicwatch:articles:accepted"}'


def test_dead_letters_count_from_zero_when_a_handler_dead_letters_an_entry(
    settings: Settings, redis_client: redis_sync.Redis
) -> None:
    names = StreamNames()
    with serving(create_app(settings)) as url:
        # Before anything happened, the series exists at 0: increase() will see the first.
        assert f"{SERIES} 0.0" in httpx.get(f"{url}/metrics").text
        redis_client.xadd(names.accepted, {DATA_FIELD: '{"not": "an article"}'})
        wait_for(lambda: redis_client.xlen(names.dead_letters) == 1)
        wait_for(lambda: f"{SERIES} 1.0" in httpx.get(f"{url}/metrics").text)
        # Dead-lettered once, and acknowledged: nothing left pending to be retried.
        wait_for(lambda: redis_client.xpending(names.accepted, "classify")["pending"] == 0)
        assert redis_client.xlen(names.dead_letters) == 1
