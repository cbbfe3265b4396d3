"""A page without ``title`` takes its own title; a refusal names every problem of an article.

Through each way in: POST /v1/articles (real uvicorn, real Redis), the public ingest stream,
``topicwatch classify`` offline (the real command, as a subprocess) and classify's dry run.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.classify.app import create_app as create_classify_app
from services.common.models import Article, Rejection
from services.common.submission import NO_PAGE_TITLE, TEXT_REQUIRED, TITLE_REQUIRED
from tests.cli_run import run_cli

from .ingest_server import names, running_ingest, stream_events
from .servers import serving, wait_for

LEAD = (
    "The defence ministry said on Tuesday that the last of the air defence batteries ordered "
    "in 2023 would be delivered by the end of the year, completing the country's largest "
    "procurement programme since the end of the Cold War. "
)
ARTICLE = f"<article><p>{LEAD * 2}</p><p>{LEAD}</p></article>"

PAGES = {
    "og:title": (
        '<html><head><meta property="og:title" content="Last Patriot batteries due by December">'
        "<title>Defence | The Daily Wire</title></head>"
        f"<body><h1>A different heading</h1>{ARTICLE}</body></html>",
        "Last Patriot batteries due by December",
    ),
    "<title>": (
        "<html><head><title>Ministry confirms air defence delivery dates</title></head>"
        f"<body>{ARTICLE}</body></html>",
        "Ministry confirms air defence delivery dates",
    ),
    "<h1>": (
        f"<html><head></head><body><h1>Batteries to arrive by year end</h1>{ARTICLE}</body></html>",
        "Batteries to arrive by year end",
    ),
}
UNTITLED = f"<html><head></head><body>{ARTICLE}</body></html>"


def accepted(client, settings) -> list[Article]:
    return [Article.model_validate(e) for e in stream_events(client, names(settings).accepted)]


def rejections(client, settings) -> list[Rejection]:
    return [Rejection.model_validate(e) for e in stream_events(client, names(settings).rejected)]


def fields(detail: list[dict[str, str]]) -> dict[str, str]:
    return {item["field"]: item["message"] for item in detail}


@pytest.mark.parametrize("where", list(PAGES))
def test_a_page_without_title_takes_its_own(settings, redis_client, where: str) -> None:
    html, title = PAGES[where]
    with running_ingest(settings) as url:
        response = httpx.post(
            f"{url}/v1/articles", json={"html": html, "url": f"https://wire.example/{len(where)}"}
        )
    assert response.status_code == 202, response.text
    [article] = accepted(redis_client, settings)
    assert article.title == title
    assert article.body.startswith("The defence ministry said")  # the heading is not body
    assert article.id == response.json()["articles"][0]["id"]


def test_the_producers_title_wins_over_the_page(settings, redis_client) -> None:
    html, _ = PAGES["og:title"]
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json={"title": "Ours", "html": html})
    assert response.status_code == 202
    assert accepted(redis_client, settings)[0].title == "Ours"


def test_only_a_page_with_no_title_at_all_is_rejected_saying_so(settings, redis_client) -> None:
    with running_ingest(settings) as url:
        response = httpx.post(f"{url}/v1/articles", json={"html": UNTITLED})
        body_only = httpx.post(f"{url}/v1/articles", json={"body": LEAD})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"field": "title", "message": NO_PAGE_TITLE}]
    assert body_only.status_code == 422
    assert body_only.json()["detail"] == [{"field": "title", "message": TITLE_REQUIRED}]
    [page, text] = rejections(redis_client, settings)
    assert page.errors[0].field == "title" and UNTITLED[:40] in page.payload
    assert text.errors[0].field == "title"


def test_a_422_names_every_problem(settings) -> None:
    with running_ingest(settings) as url:
        only_title = httpx.post(f"{url}/v1/articles", json={"title": 5})
        empty = httpx.post(f"{url}/v1/articles", json={})
        many = httpx.post(
            f"{url}/v1/articles",
            json={
                "title": ["not", "a", "string"],
                "body": LEAD,
                "url": "ftp://wire.example/x",
                "published_at": "next Flarnday",
                "language": "english!!",
                "metadata": {"desk": {"nested": True}},
            },
        )
        batch = httpx.post(f"{url}/v1/articles", json=[{"title": 5}, {"html": UNTITLED}])
    assert only_title.status_code == 422
    problems = fields(only_title.json()["detail"])
    assert set(problems) == {"title", "body"}
    assert problems["body"] == TEXT_REQUIRED
    assert "valid string" in problems["title"]

    assert fields(empty.json()["detail"]) == {"title": TITLE_REQUIRED, "body": TEXT_REQUIRED}

    # Type errors and what normalising the rest finds, in one answer.
    assert set(fields(many.json()["detail"])) == {
        "title",
        "url",
        "published_at",
        "language",
        "metadata.desk",
    }
    [outcome] = many.json()["articles"]
    assert outcome["status"] == "rejected" and len(outcome["errors"]) == 5

    assert batch.status_code == 422
    assert [d["field"] for d in batch.json()["detail"]] == ["[0].title", "[0].body", "[1].title"]


def test_the_stream_takes_page_titles_and_names_every_problem(settings, redis_client) -> None:
    stream = names(settings).ingest
    html, title = PAGES["<title>"]
    titled = redis_client.xadd(stream, {"__data__": json.dumps({"html": html})})
    bad = redis_client.xadd(stream, {"__data__": json.dumps({"title": 5, "language": "??"})})
    untitled = redis_client.xadd(stream, {"__data__": json.dumps({"html": UNTITLED})})
    with running_ingest(settings):
        wait_for(lambda: len(rejections(redis_client, settings)) == 2)
        wait_for(lambda: len(accepted(redis_client, settings)) == 1)
    [article] = accepted(redis_client, settings)
    assert article.title == title and article.received_via == "stream"
    by_entry = {r.source_entry_id: r for r in rejections(redis_client, settings)}
    assert titled not in by_entry
    assert [e.field for e in by_entry[bad].errors] == ["title", "body", "language"]
    assert "title:" in by_entry[bad].reason and "body:" in by_entry[bad].reason
    assert [(e.field, e.message) for e in by_entry[untitled].errors] == [("title", NO_PAGE_TITLE)]
    assert redis_client.xpending(stream, "ingest")["pending"] == 0


def test_classify_offline_reads_the_page_title(tmp_path: Path) -> None:
    html, title = PAGES["<title>"]
    articles = tmp_path / "pages.jsonl"
    articles.write_text(
        "\n".join(
            json.dumps(item)
            for item in (
                {"id": "page", "html": html},
                {"id": "untitled", "html": UNTITLED},
                {"id": "typed", "title": 5},
            )
        )
        + "\n"
    )
    result = run_cli("classify", str(articles))
    assert result.returncode == 1  # two were refused
    [line] = result.stdout.splitlines()
    tagged = json.loads(line)
    assert tagged["id"] == "page"
    assert "air-defence-procurement" in [t["id"] for t in tagged["topics"]]
    evidence = [e for t in tagged["topics"] for e in t["evidence"] if e["field"] == "title"]
    assert evidence and all(title[e["start"] : e["end"]] == e["text"] for e in evidence)
    errors = result.stderr.splitlines()
    assert errors == [
        f"{articles}:2: rejected: field title: {NO_PAGE_TITLE}",
        f"{articles}:3: rejected: field title: Input should be a valid string; "
        f"field body: {TEXT_REQUIRED}",
    ]
    assert "Traceback" not in result.stderr

    explained = run_cli("classify", "--explain", str(articles))
    assert title in explained.stdout


def test_classify_dry_run_reads_the_page_title(settings) -> None:
    html, title = PAGES["<title>"]
    with serving(create_classify_app(settings)) as url:
        answer = httpx.post(f"{url}/v1/classify", json={"html": html})
        untitled = httpx.post(f"{url}/v1/classify", json={"html": UNTITLED})
        nothing = httpx.post(f"{url}/v1/classify", json={})
    assert answer.status_code == 200, answer.text
    [tag] = [t for t in answer.json()["topics"] if t["id"] == "air-defence-procurement"]
    evidence = [e for e in tag["evidence"] if e["field"] == "title"]
    assert evidence and all(title[e["start"] : e["end"]] == e["text"] for e in evidence)
    assert untitled.status_code == 422
    assert untitled.json()["detail"] == [{"field": "title", "message": NO_PAGE_TITLE}]
    assert fields(nothing.json()["detail"]) == {"title": TITLE_REQUIRED, "body": TEXT_REQUIRED}
