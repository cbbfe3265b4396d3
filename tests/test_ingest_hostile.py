"""Hostile input at both entrances — POST /v1/articles and the public ingest stream.

Hypothesis throws wrong types, huge fields, broken UTF-8, random bytes and deeply nested JSON
at a real ingest (uvicorn on loopback, real Redis).  Nothing may produce a 5xx or crash the
service, and nothing may be lost: every input ends accepted, duplicate, or rejected with a
reason — checked per request, and in total against the streams and the metrics.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from .ingest_server import names, running_ingest

ARTICLE_LIMIT = 16 * 1024
FIELDS = ("id", "title", "body", "html", "url", "source", "published_at", "language", "metadata")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
plausible = {
    "title": st.text(min_size=1, max_size=80),
    "body": st.text(max_size=400),
    "html": st.sampled_from(["<p>Short</p>", "<html><body><nav>x</nav></body></html>", "<"]),
    "url": st.sampled_from(
        ["https://ex.org/a?utm_source=1", "ftp://x", "not a url", "http://[::1"]
    ),
    "published_at": st.sampled_from(["16:02 27.11.2019", "2019-11-27T16:02:00+03:00", "soon", "0"]),
    "language": st.sampled_from(["en", "EN-gb", "english!!", ""]),
    "metadata": st.dictionaries(st.text(max_size=10), scalars | json_values, max_size=3),
}
huge = st.sampled_from(["x" * 2_001, "y" * 12_000, "\udcff" * 50, "\x00" * 100])


@st.composite
def articles(draw: Any) -> dict[str, Any]:
    """An article-shaped object whose fields are plausible, wrong-typed, huge or missing."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        kind = draw(st.sampled_from(["plausible", "plausible", "missing", "wrong", "huge"]))
        if kind == "missing":
            continue
        if kind == "plausible" and name in plausible:
            out[name] = draw(plausible[name])
        elif kind == "huge":
            out[name] = draw(huge)
        else:
            out[name] = draw(json_values)
    return out


def deep(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"title": "deep", "body": "b", "metadata": ' + inner + b"}"


@st.composite
def requests(draw: Any) -> tuple[bytes, str, int | None]:
    """(body, content type, expected item count or None when it cannot be known)."""
    shape = draw(st.sampled_from(["object", "array", "ndjson", "bytes", "deep", "scalar"]))
    if shape == "object":
        return _dump(draw(articles())), "application/json", 1
    if shape == "array":
        items = draw(st.lists(articles(), min_size=1, max_size=5))
        return _dump(items), "application/json", len(items)
    if shape == "ndjson":
        lines = draw(
            st.lists(
                st.one_of(articles().map(_dump), st.binary(min_size=1, max_size=40)),
                min_size=1,
                max_size=5,
            )
        )
        lines = [line.replace(b"\n", b" ") for line in lines if line.strip()]
        if not lines:
            lines = [b"{}"]
        return b"\n".join(lines), "application/x-ndjson", len(lines)
    if shape == "deep":
        depth = draw(st.sampled_from([50, 5_000, 100_000]))
        return deep(depth, draw(st.sampled_from(["array", "object"]))), "application/json", None
    if shape == "scalar":
        return _dump(draw(scalars)), "application/json", 1
    return draw(st.binary(max_size=300)), draw(st.sampled_from(["application/json", ""])), None


def _dump(value: Any) -> bytes:
    # surrogates cannot be encoded by a real client either: they go out as escapes
    return json.dumps(value).encode()


def _metric(text: str, via: str) -> float:
    total = 0.0
    pattern = rf'topicwatch_ingest_articles_total{{status="(\w+)",via="{via}"}} ([0-9.e+]+)'
    for _status, value in re.findall(pattern, text):
        total += float(value)
    return total


def test_post_articles_survives_hostile_input(settings, redis_client):
    seen = {"accepted": 0, "duplicate": 0, "rejected": 0}
    with running_ingest(settings, ingest_max_article_bytes=ARTICLE_LIMIT) as url:
        client = httpx.Client(base_url=url, timeout=30)

        @hsettings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def check(request: tuple[bytes, str, int | None]) -> None:
            body, content_type, expected = request
            headers = {"Content-Type": content_type} if content_type else {}
            response = client.post("/v1/articles", content=body, headers=headers)
            assert response.status_code in (202, 413, 422), (response.status_code, response.text)
            data = response.json()
            if response.status_code == 413:
                assert "limit" in data["detail"]
                return
            results = data["articles"]
            if expected is not None:
                assert len(results) == expected
            for result in results:
                assert result["status"] in seen
                if result["status"] == "rejected":
                    assert result["reason"] and result["errors"]
                else:
                    assert result["id"].startswith("art_")
                seen[result["status"]] += 1

        check()
        healthy = client.get("/healthz")
        metrics = client.get("/metrics").text
        client.close()

    assert healthy.status_code == 200
    stream = names(settings)
    # nothing lost: every outcome reported is on a stream or counted as a duplicate
    assert redis_client.xlen(stream.accepted) == seen["accepted"]
    assert redis_client.xlen(stream.rejected) == seen["rejected"]
    assert _metric(metrics, "api") == sum(seen.values())
    assert seen["rejected"] > 0 and seen["accepted"] > 0


@st.composite
def entries(draw: Any) -> dict[bytes, bytes]:
    kind = draw(st.sampled_from(["article", "json", "bytes", "deep", "no-data", "huge"]))
    if kind == "article":
        return {b"__data__": _dump(draw(articles()))}
    if kind == "json":
        return {b"__data__": _dump(draw(json_values))}
    if kind == "deep":
        return {b"__data__": deep(draw(st.sampled_from([50, 100_000])), "array")}
    if kind == "huge":
        return {b"__data__": b'{"title": "big", "body": "' + b"z" * (ARTICLE_LIMIT + 1) + b'"}'}
    if kind == "no-data":
        name = draw(st.binary(min_size=1, max_size=10).filter(lambda b: b != b"__data__"))
        return {name: draw(st.binary(max_size=50))}
    return {b"__data__": draw(st.binary(max_size=200))}


def test_stream_entry_survives_hostile_input(settings, redis_client, redis_url):
    import redis as redis_sync

    raw = redis_sync.Redis.from_url(redis_url)  # bytes in, bytes out
    stream = names(settings)
    published: list[str] = []

    @hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(entries())
    def publish(fields: dict[bytes, bytes]) -> None:
        published.append(raw.xadd(stream.ingest, fields).decode())

    publish()
    with running_ingest(settings, ingest_max_article_bytes=ARTICLE_LIMIT, read_batch=50) as url:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            if _metric(metrics, "stream") >= len(published):
                break
            time.sleep(0.1)
        healthy = httpx.get(f"{url}/healthz").status_code
    raw.close()

    assert healthy == 200
    assert _metric(metrics, "stream") == len(published)
    rejected_ids = {
        json.loads(fields[b"__data__"])["source_entry_id"]
        for _, fields in redis_sync.Redis.from_url(redis_url).xrange(stream.rejected)
    }
    accepted = redis_client.xlen(stream.accepted)
    duplicates = _metric_status(metrics, "duplicate")
    assert len(rejected_ids) + accepted + duplicates == len(published)
    assert rejected_ids <= set(published)
    assert redis_client.xpending(stream.ingest, "ingest")["pending"] == 0
    assert redis_client.xlen(stream.dead_letters) == 0


def _metric_status(text: str, status: str) -> float:
    pattern = rf'topicwatch_ingest_articles_total{{status="{status}",via="stream"}} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0
