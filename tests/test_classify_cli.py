"""``topicwatch classify``, ``eval`` and ``bench classify`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main
from services.common.models import article_id_for, content_hash_for
from tests.conftest import EXAMPLES, PACKAGED_EXAMPLES, SEED_JSON, SHARED_SAMPLES

SEED = SEED_JSON
#: Labelled articles: the developers' shared set when it is there, else the classifier's own.
DEV = next(p for p in (SHARED_SAMPLES / "dev_articles.jsonl", PACKAGED_EXAMPLES) if p.is_file())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_seed_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "classify", str(SEED))
    assert code == 0
    [line] = out.splitlines()
    record = json.loads(line)
    assert set(record) == {"id", "topics"}
    assert record["id"] == "example-s400"
    got = {t["id"] for t in record["topics"]}
    assert {"air-defence-procurement", "arms-trade", "alliance-relations"} <= got
    for topic in record["topics"]:
        assert 0 <= topic["score"] <= 1
        assert {"text", "field", "start", "end", "rule"} <= set(topic["evidence"][0])


def test_classify_array_jsonl_ids_and_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_id = {"title": "Turkey buys S-400", "body": "Turkey bought S-400 batteries from Russia."}
    with_url = {**no_id, "url": "https://example.com/a?utm_source=x"}
    (tmp_path / "a.json").write_text(json.dumps([no_id, {"id": "given", **no_id}]))
    (tmp_path / "b.jsonl").write_text(
        json.dumps(with_url) + "\n" + json.dumps({"body": "no title"}) + "\nnot json\n"
    )
    code, out, err = run(capsys, "classify", str(tmp_path / "a.json"), str(tmp_path / "b.jsonl"))
    assert code == 1  # something was rejected; the rest was still classified
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records][1] == "given"
    expected = article_id_for(None, content_hash_for(no_id["title"], no_id["body"]))
    assert records[0]["id"] == expected
    assert records[2]["id"].startswith("art_") and records[2]["id"] != expected
    assert all("air-defence-procurement" in {t["id"] for t in r["topics"]} for r in records)
    assert "b.jsonl:2: rejected: field title" in err
    assert "b.jsonl:3: rejected: not valid JSON" in err


def test_classify_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "classify", "--explain", str(SEED))
    assert code == 0
    assert "TAGGED  air-defence-procurement" in out
    assert "rule system-acquisition" in out
    assert "[S-400]" in out  # evidence shown in its context
    assert "entities: Turkey (country" in out


def test_classify_with_a_bad_taxonomy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("version: 1\ntopics: []\n")
    code, _, err = run(capsys, "classify", "--taxonomy", str(bad), str(SEED))
    assert code == 2
    assert "invalid taxonomy" in err and "t.yaml" in err and "topics" in err


def test_serve_classify_with_a_bad_taxonomy_says_why_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "version: 1\ntopics: [{id: x, name: X, rules: [{id: r, weight: 5, any: [a]}]}]\n"
    )
    monkeypatch.setenv("TOPICWATCH_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached
    monkeypatch.setenv("TOPICWATCH_TAXONOMY_PATH", str(bad))
    code, _, err = run(capsys, "serve", "classify")
    assert code == 2
    assert err.startswith("topicwatch: classify cannot start: ")
    assert "t.yaml: topic 'x': field 'rules[0].weight'" in err


def test_eval_on_labelled_samples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", str(DEV), "--min-f1", "0.9")
    assert code == 0
    assert "micro" in out and "air-defence-procurement" in out
    code, out, _ = run(capsys, "eval", str(DEV), "--json")
    report = json.loads(out)
    assert report["micro"]["f1"] >= 0.9
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    assert report["negatives"] == sum(not r["labels"]["required"] for r in rows) > 0
    assert report["false_alarms"] == []


def test_eval_on_the_repository_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """The README walk-through's articles are tagged as labelled, the football story with
    nothing."""
    code, out, _ = run(capsys, "eval", str(EXAMPLES), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["micro"]["f1"] == 1.0
    assert report["negatives"] == 1 and report["false_alarms"] == []


def test_eval_refuses_unlabelled_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"title": "t", "body": "b"}) + "\n")
    code, _, err = run(capsys, "eval", str(path))
    assert code == 2 and "labels" in err
