"""A small soak: the pipe with default settings stays bounded (the 100,000 run is in the docs).

``topicwatch soak --articles 100000`` is the full run; this is the same harness at a size the
suite can afford, with the same checks: every key in a known family, every stream within its
retention or window, every per-article key with a TTL, and nothing a consumer group (the
harness's own audit group included) still needed was trimmed.
"""

from __future__ import annotations

import pytest

from services.common.streams import StreamNames
from services.harness import soak

pytestmark = pytest.mark.e2e


def test_default_settings_keep_redis_bounded(tmp_path) -> None:
    # More articles than the default retention (1,000) keeps, so trimming must happen.
    result = soak.run(1500, workdir=tmp_path)
    text = soak.report(result)
    assert result.violations == [], text
    names = StreamNames()
    after = result.after.streams
    # Retention trimmed the consumed streams (every group was done with the rest) ...
    for stream in (names.ingest, names.accepted, names.classified):
        assert after[stream] <= 1000 + 100, text
    assert after[names.ingest] < 1500, text
    # ... and yet every input reached every stage.
    assert result.published == 1500
    assert result.classified == result.accepted > 1200
    assert result.alerts_created == result.alerts_delivered > 0
    families = result.after.families
    assert families["seen:hash|url:*"].keys >= result.accepted  # the dedup window, with TTLs
    assert families["seen:hash|url:*"].without_ttl == 0
    assert families["alert:*"].keys == result.alerts_created
    assert "used_memory: before" in text and "bounded:" in text
