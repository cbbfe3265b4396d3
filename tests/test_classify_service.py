"""The classify service in uvicorn against a real Redis: stream in/out, API, taxonomy reload."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from services.classify.app import create_app
from services.classify.loader import DATA_DIR, DEFAULT_TAXONOMY
from services.classify.reload import _snapshot
from services.common.models import Article, ClassifiedArticle, content_hash_for
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, StreamNames, encode
from tests.procs import ServiceProcess
from tests.servers import serving, wait_for


@pytest.fixture
def taxonomy_dir(tmp_path: Path) -> Path:
    """A private copy of the default taxonomy that tests may edit."""
    target = tmp_path / "taxonomy"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("__init__.py", "*.jsonl"))
    return target


@pytest.fixture
def classify_url(redis_url: str, tmp_path: Path, taxonomy_dir: Path) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        read_block_ms=50,
        taxonomy_path=taxonomy_dir / "taxonomy.yaml",
        taxonomy_reload_interval=0.1,
    )
    with serving(create_app(settings)) as url:
        yield url


def test_classify_announces_its_topics_for_notify(classify_url: str, redis_url: str) -> None:
    client = redis_sync.Redis.from_url(redis_url)
    raw = wait_for(lambda: client.get(StreamNames().taxonomy))
    announced = json.loads(raw)
    listing = httpx.get(f"{classify_url}/v1/topics").json()
    assert announced["version"] == listing["taxonomy_version"]
    assert announced["topics"] == [t["id"] for t in listing["topics"]]


def test_topics_and_dry_run(classify_url: str, seed_article: dict) -> None:
    listing = httpx.get(f"{classify_url}/v1/topics").json()
    ids = [t["id"] for t in listing["topics"]]
    assert len(ids) == 11 and "air-defence-procurement" in ids
    assert listing["taxonomy_version"].startswith("2026.")

    answer = httpx.post(f"{classify_url}/v1/classify", json=seed_article)
    assert answer.status_code == 200, answer.text
    got = {t["id"] for t in answer.json()["topics"]}
    assert {"air-defence-procurement", "arms-trade", "alliance-relations"} <= got
    evidence = answer.json()["topics"][0]["evidence"]
    assert evidence and all(
        seed_article["body" if e["field"] == "body" else "title"][e["start"] : e["end"]]
        == e["text"]
        for e in evidence
    )
    assert any(e["id"] == "system:s-400" for e in answer.json()["entities"])

    explained = httpx.post(f"{classify_url}/v1/classify?explain=true", json=seed_article).json()
    details = {d["id"]: d for d in explained["details"]}
    adp = details["air-defence-procurement"]
    assert adp["tagged"] and adp["score"] >= adp["threshold"]
    assert any(r["rule"] == "system-acquisition" and r["evidence"] for r in adp["rules"])
    assert "details" not in answer.json()

    bad = httpx.post(f"{classify_url}/v1/classify", json={"body": "no title"})
    assert bad.status_code == 422
    assert "title" in bad.text


def test_dry_run_of_a_whole_page(classify_url: str, seed_article: dict) -> None:
    """`html` instead of `body`, as ingest takes it: the page's main text is classified."""
    paragraphs = "".join(f"<p>{p}</p>" for p in seed_article["body"].split("\n\n"))
    page = (
        "<html><head><title>S-400</title></head><body><nav><a href='/'>Home</a> | "
        f"<a href='/w'>World</a></nav><article>{paragraphs}</article></body></html>"
    )
    answer = httpx.post(
        f"{classify_url}/v1/classify", json={"title": seed_article["title"], "html": page}
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert {"air-defence-procurement", "arms-trade", "alliance-relations"} <= {
        t["id"] for t in data["topics"]
    }
    spans = [e for t in data["topics"] for e in t["evidence"] if e["field"] == "body"]
    assert spans and all(data["body"][e["start"] : e["end"]] == e["text"] for e in spans)

    empty = httpx.post(
        f"{classify_url}/v1/classify", json={"title": "t", "html": "<html><body></body></html>"}
    )
    assert empty.status_code == 422 and "html" in empty.text


def test_accepted_articles_are_classified_onto_the_stream(
    classify_url: str, redis_url: str, seed_article: dict
) -> None:
    names = StreamNames()
    article = Article(
        id="art_seed",
        title=seed_article["title"],
        body=seed_article["body"],
        content_hash=content_hash_for(seed_article["title"], seed_article["body"]),
    )
    client = redis_sync.Redis.from_url(redis_url)
    try:
        client.xadd(names.accepted, encode(article))
        entries = wait_for(lambda: client.xrange(names.classified))
        assert isinstance(entries, list)
        classified = ClassifiedArticle.model_validate_json(entries[0][1][DATA_FIELD.encode()])
        assert classified.article.id == "art_seed"
        assert {"air-defence-procurement", "arms-trade", "alliance-relations"} <= set(
            classified.topic_ids()
        )
        version = httpx.get(f"{classify_url}/v1/topics").json()["taxonomy_version"]
        assert classified.taxonomy_version == version
    finally:
        client.close()


def test_taxonomy_reloads_on_change_and_keeps_running_on_a_bad_file(
    classify_url: str, taxonomy_dir: Path
) -> None:
    path = taxonomy_dir / "taxonomy.yaml"

    def version() -> str:
        return str(httpx.get(f"{classify_url}/v1/topics").json()["taxonomy_version"])

    path.write_text(path.read_text().replace('version: "2026.11.1"', 'version: "2026.11.2"'))
    wait_for(lambda: version().startswith("2026.11.2+"))
    edited = version()

    # An edit to a gazetteer is a new taxonomy version as well.
    gaz = taxonomy_dir / "gazetteers" / "systems.yaml"
    gaz.write_text(gaz.read_text().replace("aliases: [S-400,", "aliases: [S-400, Triumph,"))
    wait_for(lambda: version() != edited)
    current = version()

    path.write_text("version: 2026.11.3\ntopics: [{id: Bad Id}]\n")
    metrics = wait_for(
        lambda: (
            'topicwatch_taxonomy_reloads_total{outcome="refused"} 1.0'
            in (text := httpx.get(f"{classify_url}/metrics").text)
            and text
        )
    )
    assert isinstance(metrics, str)
    still = httpx.get(f"{classify_url}/v1/topics").json()
    assert still["taxonomy_version"] == current and len(still["topics"]) == 11
    # Only the version in use has a series: the two replaced versions are gone, not at 0.
    info = [line for line in metrics.splitlines() if line.startswith("topicwatch_taxonomy_info")]
    assert info == [f'topicwatch_taxonomy_info{{version="{current}"}} 1.0']
    dry = httpx.post(
        f"{classify_url}/v1/classify",
        json={"title": "Turkey buys S-400", "body": "Turkey bought more S-400 batteries."},
    )
    assert dry.status_code == 200
    assert "air-defence-procurement" in {t["id"] for t in dry.json()["topics"]}


def test_sighup_reloads_the_taxonomy_of_a_running_service(
    redis_url: str, tmp_path: Path, taxonomy_dir: Path
) -> None:
    """A real `topicwatch serve classify` process; the file poll is off, so only SIGHUP counts."""
    path = taxonomy_dir / "taxonomy.yaml"
    proc = ServiceProcess(
        "classify",
        {
            "TOPICWATCH_REDIS_URL": redis_url,
            "TOPICWATCH_TAXONOMY_PATH": str(path),
            "TOPICWATCH_TAXONOMY_RELOAD_INTERVAL": "3600",
        },
        tmp_path / "classify.log",
    ).start()
    try:
        proc.wait_healthy()
        assert proc.process is not None

        def version() -> str:
            return str(httpx.get(f"{proc.url}/v1/topics").json()["taxonomy_version"])

        def reloads(outcome: str) -> float:
            text = httpx.get(f"{proc.url}/metrics").text
            prefix = f'topicwatch_taxonomy_reloads_total{{outcome="{outcome}"}} '
            return next(
                float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
            )

        assert version().startswith("2026.11.1+")
        path.write_text(path.read_text().replace('version: "2026.11.1"', 'version: "2026.11.2"'))
        proc.process.send_signal(signal.SIGHUP)
        wait_for(lambda: version().startswith("2026.11.2+"))

        path.write_text("version: 2026.11.3\ntopics: [{id: Bad Id}]\n")
        proc.process.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads("refused") == 1.0)
        assert version().startswith("2026.11.2+") and proc.process.poll() is None
        assert "Bad Id" in proc.output()  # the refusal is logged with what was wrong
    finally:
        proc.stop()


def test_the_packaged_default_taxonomy_is_watched_too() -> None:
    """No TOPICWATCH_TAXONOMY_PATH: edits to the packaged files (`make up`) still reload."""
    watched = set(_snapshot(None))
    assert str(DEFAULT_TAXONOMY) in watched
    assert str(DATA_DIR / "gazetteers" / "systems.yaml") in watched
