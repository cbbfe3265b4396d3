"""POST /v1/articles, the ingest stream, rejections and retry — real uvicorn, real Redis."""

from __future__ import annotations

import json

import httpx

from services.common.models import Article, Rejection
from services.common.redis_server import RedisServer

from .conftest import SEED_TEXT
from .ingest_server import names, running_ingest, stream_events
from .procs import ServiceProcess
from .servers import wait_for


def accepted(client, settings) -> list[Article]:
    return [Article.model_validate(e) for e in stream_events(client, names(settings).accepted)]


def rejections(client, settings) -> list[Rejection]:
    return [Rejection.model_validate(e) for e in stream_events(client, names(settings).rejected)]


def test_seed_article_accepted_once_then_duplicate(settings, redis_client, seed_article):
    with running_ingest(settings) as url:
        first = httpx.post(f"{url}/v1/articles", json=seed_article)
        again = httpx.post(f"{url}/v1/articles", json=seed_article)
    assert first.status_code == 202
    [result] = first.json()["articles"]
    assert result["status"] == "accepted" and result["id"].startswith("art_")
    assert again.status_code == 202
    assert again.json()["articles"][0] == {"id": result["id"], "status": "duplicate"}
    [article] = accepted(redis_client, settings)
    assert article.id == result["id"]
    assert article.dateline is not None and article.dateline.place == "Moscow"
    assert "APPLY TODAY" in article.removed[0]
    assert article.received_via == "api"


def test_duplicate_by_canonical_url_or_by_content(settings, redis_client, seed_article):
    with running_ingest(settings) as url:
        httpx.post(f"{url}/v1/articles", json=seed_article)
        same_url = {
            **seed_article,
            "body": "A different text entirely, updated later by the site.",
            "url": seed_article["url"].replace("https://www.", "HTTPS://WWW.") + "?utm_source=x",
        }
        same_text = {**seed_article, "url": "https://mirror.example/s400-story"}
        response = httpx.post(f"{url}/v1/articles", json=[same_url, same_text])
    statuses = [r["status"] for r in response.json()["articles"]]
    assert statuses == ["duplicate", "duplicate"]
    assert len(accepted(redis_client, settings)) == 1


def test_raw_page_text_and_metadata_are_kept_through_the_pipe(settings, redis_client, seed_article):
    body = {
        "title": seed_article["title"],
        "body": SEED_TEXT,
        "metadata": {"scraper": "gs-2", "priority": 3, "verified": False, "note": None},
    }
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json=body)
    assert response.status_code == 202
    [article] = accepted(redis_client, settings)
    assert article.metadata == body["metadata"]
    assert article.source == "Black Sea Wire"
    assert article.published_at is not None
    assert article.published_at.isoformat() == "2021-09-14T08:20:00+00:00"  # 11:20 in Moscow
    assert "Sign up for the morning briefing" in article.removed


def test_html_field(settings, redis_client):
    html = (
        "<html><head><title>Patriots for Poland</title>"
        '<meta name="author" content="Jan Kowalski"></head><body>'
        "<nav>Home | World | Defence | Markets</nav><article><h1>Patriots for Poland</h1>"
        "<p>WARSAW, Sept 19 (Defence Wire) - Poland signed agreements with the United States "
        "on Tuesday for the second phase of its Wisla air and missile defence programme, "
        "adding 48 Patriot launchers and more than 600 interceptors.</p>"
        "<p>Deliveries are expected to begin in 2027, the defence ministry said.</p>"
        "</article><footer>(c) 2023 Defence Wire</footer></body></html>"
    )
    with running_ingest(settings) as url:
        response = httpx.post(
            f"{url}/v1/articles",
            json={"title": "Patriots for Poland", "html": html, "url": "https://dw.example/p"},
        )
    assert response.json()["articles"][0]["status"] == "accepted"
    [article] = accepted(redis_client, settings)
    assert article.body.startswith("WARSAW, Sept 19 (Defence Wire) - Poland signed")
    assert "Home | World" not in article.body
    assert article.author == "Jan Kowalski"


def test_ndjson_with_a_bad_line_and_broken_utf8(settings, redis_client, dev_articles):
    lines = [json.dumps(a).encode() for a in dev_articles[:3]]
    body = b"\n".join([lines[0], b"{not json", lines[1], b"\xff\xfe\xfa", lines[2], b""])
    with running_ingest(settings) as url:
        response = httpx.post(
            f"{url}/v1/articles", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert response.status_code == 202
    results = response.json()["articles"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "accepted",
    ]
    assert "line 2 is not valid JSON" in results[1]["reason"]
    assert "line 4 is not valid UTF-8" in results[3]["reason"]
    assert len(accepted(redis_client, settings)) == 3
    stored = rejections(redis_client, settings)
    assert [r.payload for r in stored] == ["{not json", "\ufffd\ufffd\ufffd"]
    assert all(r.received_via == "api" for r in stored)


def test_all_invalid_is_422_naming_fields_and_recorded(settings, redis_client):
    batch = [
        {"title": 5, "body": "x"},
        {"body": "no title"},
        {"title": "t", "body": "b", "url": "ftp://x"},
    ]
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json=batch)
    assert response.status_code == 422
    fields = [d["field"] for d in response.json()["detail"]]
    # Every problem, not just the first: the body "x" of [0] is no article either (a lone
    # character is cut as page chrome), which the producer used to learn only after fixing
    # the title.
    assert fields == ["[0].title", "[0].body", "[1].title", "[2].url"]
    with running_ingest(settings) as url:
        lines = httpx.post(
            f"{url}/v1/articles",
            content=b'{"title": "t"}\nnot json\n[1]\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert lines.status_code == 422
    assert [d["field"] for d in lines.json()["detail"]] == ["[0].body", "[1]", "[2]"]
    assert len(rejections(redis_client, settings)) == 6
    assert accepted(redis_client, settings) == []


def test_nested_metadata_is_one_error_naming_the_key(settings, redis_client):
    article = {"title": "t", "body": "Text.", "metadata": {"ok": 1, "tags": ["a"], "n": {"x": 1}}}
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json=article)
    assert response.status_code == 422
    scalar = "must be a string, number, boolean or null"
    assert response.json()["detail"] == [
        {"field": "metadata.tags", "message": f"{scalar}, not an array"},
        {"field": "metadata.n", "message": f"{scalar}, not an object"},
    ]


def test_a_published_at_of_the_wrong_type_is_one_error(settings, redis_client):
    batch = [
        {"title": "t", "body": "Text one.", "published_at": [2019]},
        {"title": "t", "body": "Text two.", "published_at": 1e300},
        {"title": "t", "body": "Text three.", "published_at": 1574859720},
    ]
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json=batch)
    assert response.status_code == 202
    first, second, third = response.json()["articles"]
    assert [e["field"] for e in first["errors"] + second["errors"]] == ["published_at"] * 2
    assert "or a Unix timestamp, not an array" in first["errors"][0]["message"]
    assert "timestamp 1e+300 is out of range" in second["errors"][0]["message"]
    assert third["status"] == "accepted"
    [article] = accepted(redis_client, settings)
    assert article.published_at is not None and article.published_at.isoformat().startswith(
        "2019-11-27T13:02"
    )


def test_limits_answer_413_naming_the_limit_and_store_nothing(settings, redis_client):
    with running_ingest(settings, ingest_max_batch=3, ingest_max_article_bytes=2048) as url:
        too_many = httpx.post(
            f"{url}/v1/articles", json=[{"title": f"t{i}", "body": "b"} for i in range(4)]
        )
        too_big = httpx.post(
            f"{url}/v1/articles",
            json=[{"title": "ok", "body": "fine"}, {"title": "big", "body": "x" * 3000}],
        )
        too_big_line = httpx.post(
            f"{url}/v1/articles",
            content=json.dumps({"title": "big", "body": "y" * 3000}).encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert too_many.status_code == 413
    assert "limit of 3 articles per request" in too_many.json()["detail"]
    assert too_big.status_code == 413
    assert "article [1]" in too_big.json()["detail"]
    assert "limit of 2048 bytes per article" in too_big.json()["detail"]
    assert too_big_line.status_code == 413
    assert accepted(redis_client, settings) == [] and rejections(redis_client, settings) == []


def test_api_keys(settings):
    with running_ingest(settings, api_keys="k-one,k-two") as url:
        article = {"title": "Keyed", "body": "Keyed article text."}
        missing = httpx.post(f"{url}/v1/articles", json=article)
        wrong = httpx.post(
            f"{url}/v1/articles", json=article, headers={"Authorization": "Bearer x"}
        )
        right = httpx.post(
            f"{url}/v1/articles", json=article, headers={"Authorization": "Bearer k-two"}
        )
        reading = httpx.get(f"{url}/v1/feeds")
        retry = httpx.post(f"{url}/v1/rejected/retry", json={"all": True})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 202
    assert reading.status_code == 200  # reads stay open
    assert retry.status_code == 401


def test_stream_entries_accepted_or_rejected_with_the_original_payload(
    settings, redis_client, seed_article
):
    stream = names(settings).ingest
    good = redis_client.xadd(stream, {"__data__": json.dumps(seed_article)})
    bad_json = redis_client.xadd(stream, {"__data__": "{oops"})
    bad_field = redis_client.xadd(stream, {"__data__": json.dumps({"title": "x", "body": 7})})
    no_data = redis_client.xadd(stream, {"something": "else"})
    with running_ingest(settings) as url:
        wait_for(lambda: len(rejections(redis_client, settings)) == 3)
        metrics = httpx.get(f"{url}/metrics").text
    [article] = accepted(redis_client, settings)
    assert article.external_id == "example-s400" and article.received_via == "stream"
    by_entry = {r.source_entry_id: r for r in rejections(redis_client, settings)}
    assert set(by_entry) == {bad_json, bad_field, no_data}
    assert by_entry[bad_json].payload == "{oops"
    assert "not valid JSON" in by_entry[bad_json].reason
    assert by_entry[bad_field].errors[0].field == "body"
    assert "no __data__" in by_entry[no_data].reason
    assert good not in by_entry
    assert 'topicwatch_ingest_articles_total{status="accepted",via="stream"} 1.0' in metrics
    assert 'topicwatch_ingest_articles_total{status="rejected",via="stream"} 3.0' in metrics
    # everything acknowledged: nothing left pending for the group
    assert redis_client.xpending(stream, "ingest")["pending"] == 0


def test_rejected_list_and_retry_with_a_corrected_payload(settings, redis_client):
    with running_ingest(settings) as url:
        httpx.post(
            f"{url}/v1/articles",
            json={"title": "Talks resume", "body": "Talks resumed.", "published_at": "whenever"},
        )
        listing = httpx.get(f"{url}/v1/rejected").json()
        [entry] = listing["rejected"]
        assert listing["total"] == 1 and entry["errors"][0]["field"] == "published_at"
        # retried as stored: still rejected, and the new rejection replaces the old one
        again = httpx.post(f"{url}/v1/rejected/retry", json={"ids": [entry["entry_id"]]}).json()
        assert again["results"][0]["status"] == "rejected"
        [entry2] = httpx.get(f"{url}/v1/rejected").json()["rejected"]
        assert entry2["entry_id"] != entry["entry_id"]
        fixed = {"title": "Talks resume", "body": "Talks resumed.", "published_at": "2024-05-01"}
        done = httpx.post(
            f"{url}/v1/rejected/retry",
            json={"ids": [entry2["entry_id"], "1-1"], "payloads": {entry2["entry_id"]: fixed}},
        ).json()["results"]
        left = httpx.get(f"{url}/v1/rejected").json()
    assert [r["status"] for r in done] == ["accepted", "not_found"]
    assert left["total"] == 0
    [article] = accepted(redis_client, settings)
    assert article.published_at is not None and article.published_at.year == 2024


def test_503_when_redis_cannot_take_the_article(tmp_path, seed_article, redis_binary):
    """A real ingest process; its Redis is stopped under it: 503, never 202."""
    server = RedisServer(data_dir=tmp_path / "redis", appendonly=False, binary=redis_binary)
    server.start()
    proc = ServiceProcess(
        "ingest",
        {"TOPICWATCH_REDIS_URL": server.url, "TOPICWATCH_READ_BLOCK_MS": "50"},
        tmp_path / "ingest.log",
    ).start()
    try:
        proc.wait_healthy()
        ok = httpx.post(f"{proc.url}/v1/articles", json=seed_article, timeout=10)
        assert ok.status_code == 202
        server.stop()
        down = httpx.post(f"{proc.url}/v1/articles", json={"title": "t", "body": "b"}, timeout=30)
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "5"
        assert down.json()["articles"] == []
        assert httpx.get(f"{proc.url}/v1/feeds", timeout=30).status_code == 503
    finally:
        proc.stop()
        server.stop()


def test_request_body_over_the_request_limit(settings):
    with running_ingest(settings, max_request_bytes=4096) as url:
        response = httpx.post(f"{url}/v1/articles", content=b"[" + b" " * 5000 + b"]")
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]
