"""``topicwatch publish | rejected | feeds | asyncapi`` against a real ingest (uvicorn + Redis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from services.cli import main

from .conftest import EXAMPLES
from .feed_server import RSS, running_feed_server
from .ingest_server import names, running_ingest, stream_events


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("TOPICWATCH_API_KEYS", "TOPICWATCH_REDIS_URL", "TOPICWATCH_INGEST_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_publish_folder_summary_and_exit_status(settings, redis_client, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"title": "Talks", "body": "Talks resumed.", "published_at": "whenever"}\n{oops\n'
    )
    with running_ingest(settings) as url:
        clean = main(["publish", "--url", url, "--batch", "7", str(EXAMPLES)])
        out_clean = capsys.readouterr().out
        again = main(["publish", "--url", url, str(EXAMPLES / "s400-delivery.json")])
        out_again = capsys.readouterr().out
        failed = main(["publish", "--url", url, str(bad), str(tmp_path / "missing.json")])
        out_failed = capsys.readouterr().out
    assert clean == 0
    assert "accepted 6, duplicate 0, rejected 0" in out_clean  # the S-400 story + 5 briefs
    assert again == 0 and "accepted 0, duplicate 1, rejected 0" in out_again
    assert failed == 1
    assert "accepted 0, duplicate 0, rejected 3" in out_failed
    assert "bad.jsonl:1" in out_failed and "whenever" in out_failed
    assert "bad.jsonl:2" in out_failed and "not valid JSON" in out_failed
    assert "missing.json" in out_failed and "no such file" in out_failed
    articles = stream_events(redis_client, names(settings).accepted)
    assert len(articles) == 6 and {a["received_via"] for a in articles} == {"file"}
    rejected = stream_events(redis_client, names(settings).rejected)
    assert [r["received_via"] for r in rejected] == ["file"]  # the one that reached ingest


def test_publish_splits_batches_over_the_services_limits(settings, redis_client, tmp_path, capsys):
    """The service's request and batch limits are its own: publish halves what it refuses."""
    lines = [
        {"title": f"Report {i}", "body": f"Report {i} on air defence. " + "Text. " * 400}
        for i in range(9)
    ]
    lines.append({"title": "Too big", "body": "word " * 2_000})
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with running_ingest(settings, max_request_bytes=8_000, ingest_max_batch=4) as url:
        status = main(["publish", "--url", url, str(path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "accepted 9, duplicate 0, rejected 1" in out
    assert "many.jsonl:10" in out and "8000 bytes" in out
    assert len(stream_events(redis_client, names(settings).accepted)) == 9


def test_publish_with_api_key_and_unreachable_service(settings, monkeypatch, capsys):
    monkeypatch.setenv("TOPICWATCH_API_KEYS", "secret-1")
    with running_ingest(settings, api_keys="secret-1") as url:
        assert main(["publish", "--url", url, str(EXAMPLES / "s400-delivery.json")]) == 0
    assert "accepted 1" in capsys.readouterr().out
    assert main(["publish", "--url", url, str(EXAMPLES / "s400-delivery.json")]) == 2
    assert f"cannot reach {url}/v1/articles" in capsys.readouterr().err


def test_rejected_list_and_retry(settings, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"title": "Talks", "body": "Talks resumed.", "published_at": "?"}))
    fixed = tmp_path / "fixed.json"
    fixed.write_text(
        json.dumps({"title": "Talks", "body": "Talks resumed.", "published_at": "2024-05-01"})
    )
    with running_ingest(settings) as url:
        main(["publish", "--url", url, str(bad)])
        capsys.readouterr()
        assert main(["rejected", "list", "--url", url, "--json"]) == 0
        [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert entry["errors"][0]["field"] == "published_at"
        assert main(["rejected", "list", "--url", url]) == 0
        assert "1 shown of 1 rejected" in capsys.readouterr().out
        assert main(["rejected", "retry", "--url", url]) == 2  # nothing named
        capsys.readouterr()
        code = main(["rejected", "retry", entry["entry_id"], "--payload", str(fixed), "--url", url])
        out = capsys.readouterr().out
        assert main(["rejected", "list", "--url", url]) == 0
        listing = capsys.readouterr().out
    assert code == 0 and f"{entry['entry_id']}: accepted" in out
    assert "0 shown of 0 rejected" in listing


def test_feeds_add_list_poll_remove(settings, capsys):
    with running_feed_server() as feeds, running_ingest(settings, allow_private_feeds=True) as url:
        rss = feeds.serve("/rss.xml", RSS)
        assert main(["feeds", "add", rss, "--url", url]) == 0
        assert f"added {rss}" in capsys.readouterr().out
        assert main(["feeds", "add", "gopher://x", "--url", url]) == 2
        assert "topicwatch: url: must be an absolute http" in capsys.readouterr().err
        assert main(["feeds", "poll", "--url", url]) == 0
        capsys.readouterr()
        assert main(["feeds", "list", "--url", url, "--json"]) == 0
        [status] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert status["url"] == rss and status["items_seen"] == 2
        assert main(["feeds", "remove", rss, "--url", url]) == 0
        assert main(["feeds", "remove", rss, "--url", url]) == 1
        capsys.readouterr()
        assert main(["feeds", "list", "--url", url]) == 0
        assert "no feeds" in capsys.readouterr().out


def test_asyncapi_document(tmp_path, capsys):
    target = tmp_path / "docs" / "asyncapi.yaml"
    assert main(["asyncapi", "-o", str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    document = yaml.safe_load(target.read_text())
    assert document["asyncapi"] == "3.0.0"
    channels = {c["address"]: c for c in document["channels"].values()}
    ingest = channels["topicwatch:articles:ingest"]
    assert "XADD topicwatch:articles:ingest * __data__" in ingest["description"]
    assert "consumerName" not in ingest["bindings"]["redis"]
    [ref] = ingest["messages"].values()
    message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
    assert message["payload"] == {"$ref": "#/components/schemas/ArticleSubmission"}
    submission = document["components"]["schemas"]["ArticleSubmission"]
    assert "required" not in submission  # a page may supply the title: the rules span fields
    assert submission["allOf"] == [
        {"anyOf": [{"required": ["body"]}, {"required": ["html"]}]},
        {"anyOf": [{"required": ["title"]}, {"required": ["html"]}]},
    ]
    assert {"title", "body", "html", "url", "published_at", "metadata"} <= set(
        submission["properties"]
    )
    assert "topicwatch:articles:accepted" in channels and "topicwatch:articles:rejected" in channels
    assert "Article" in document["components"]["schemas"]
    assert main(["asyncapi", "--service", "ingest"]) == 0
    assert json.loads(capsys.readouterr().out)["info"]["title"] == "topicwatch streams"


def test_publish_shows_a_progress_bar_on_a_terminal(settings, monkeypatch, capsys):
    monkeypatch.setenv("TTY_INTERACTIVE", "1")  # rich: behave as on an interactive terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    with running_ingest(settings) as url:
        assert main(["publish", "--url", url, "--batch", "5", str(EXAMPLES)]) == 0
        bar = capsys.readouterr().err
        assert main(["publish", "--url", url, "--quiet", "--batch", "5", str(EXAMPLES)]) == 0
        quiet = capsys.readouterr().err
    assert "publishing" in bar and "6/6" in bar
    assert "publishing" not in quiet


def test_committed_asyncapi_document_is_current(tmp_path):
    """docs/asyncapi.yaml is what the FastStream apps generate today (regenerate if this fails:
    `topicwatch asyncapi -o docs/asyncapi.yaml`)."""
    target = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "-o", str(target)]) == 0
    committed = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
    assert yaml.safe_load(target.read_text()) == yaml.safe_load(committed.read_text())
