"""``topicwatch eval``'s breakdowns: per length bucket and per kind of text.

A recall drop on wire briefs (a headline and a sentence or two) is invisible in a micro
figure dominated by full articles; these tests pin the bucket thresholds and check that
every slice is counted from the real classifier's output, through the library and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.classify.classifier import Classifier, load_classifier
from services.classify.evaluate import (
    ARTICLE_MAX_CHARS,
    ARTICLE_MAX_WORDS,
    BRIEF_MAX_CHARS,
    BRIEF_MAX_WORDS,
    LabelError,
    evaluate,
    labelled_from_dict,
    length_bucket,
    render,
)
from services.cli import main


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return load_classifier()


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def test_bucket_thresholds_in_words_and_characters() -> None:
    assert length_bucket("") == "brief"
    assert length_bucket(words(BRIEF_MAX_WORDS)) == "brief"
    assert length_bucket(words(BRIEF_MAX_WORDS + 1)) == "article"
    # Few words but long ones: the character limit moves it out of the brief bucket.
    assert length_bucket(words(50, "x" * 20)) == "article"
    assert len(words(50, "x" * 20)) > BRIEF_MAX_CHARS
    assert length_bucket(words(ARTICLE_MAX_WORDS)) == "article"
    assert length_bucket(words(ARTICLE_MAX_WORDS + 1)) == "long-form"
    assert length_bucket(words(300, "y" * 12)) == "long-form"
    assert len(words(300, "y" * 12)) > ARTICLE_MAX_CHARS


BRIEF_HIT = {
    "id": "brief-hit",
    "title": "North Korea test-fires ICBM",
    "body": "North Korea test-fired a solid-fuel ICBM into the sea on Monday.",
    "labels": {"required": ["missile-test"], "optional": []},
    "kind": "positive",
}
BRIEF_SPORTS = {
    "id": "brief-sports",
    "title": "Patriots beat Jets",
    "body": "The New England Patriots defence held firm in a 24-10 win over the Jets.",
    "labels": {"required": [], "optional": []},
    "kind": "sports",
}
# An article-length story with a required topic that has no evidence in it: a miss.
ARTICLE_MISS = {
    "id": "article-miss",
    "title": "Council approves park budget",
    "body": words(150, "budget"),
    "labels": {"required": ["sanctions"], "optional": []},
    "kind": "positive",
}
# A long-form negative that the classifier does tag: a false alarm in that bucket.
LONG_ALARM = {
    "id": "long-alarm",
    "title": "EU imposes sanctions on Russian officials",
    "body": "The EU imposed sanctions and asset freezes on six Russian officials. "
    + words(420, "filler"),
    "labels": {"required": [], "optional": []},
    "kind": "general",
}


def labelled(*rows: dict) -> list:
    return [labelled_from_dict(r, r["id"]) for r in rows]


def test_report_breaks_down_by_bucket_and_kind(clf: Classifier) -> None:
    report = evaluate(clf, labelled(BRIEF_HIT, BRIEF_SPORTS, ARTICLE_MISS, LONG_ALARM))
    buckets = report.buckets
    assert list(buckets) == ["brief", "article", "long-form"]
    brief, article, long_form = buckets["brief"], buckets["article"], buckets["long-form"]
    assert (brief.articles, brief.micro.tp, brief.micro.fn, brief.micro.fp) == (2, 1, 0, 0)
    assert (brief.negatives, brief.false_alarms) == (1, 0)
    assert (article.articles, article.micro.tp, article.micro.fn) == (1, 0, 1)
    assert article.micro.recall == 0.0
    assert (long_form.negatives, long_form.false_alarms) == (1, 1)
    assert long_form.micro.fp >= 1 and long_form.false_alarm_rate == 1.0
    kinds = report.kinds
    assert set(kinds) == {"positive", "sports", "general"}
    assert (kinds["sports"].negatives, kinds["sports"].false_alarms) == (1, 0)
    assert (kinds["general"].negatives, kinds["general"].false_alarms) == (1, 1)
    assert kinds["positive"].micro.tp == 1 and kinds["positive"].micro.fn == 1
    # The slices add up to the whole.
    assert sum(g.micro.tp for g in buckets.values()) == report.micro.tp
    assert sum(g.micro.fp for g in buckets.values()) == report.micro.fp
    assert sum(g.micro.fn for g in buckets.values()) == report.micro.fn

    data = report.to_dict()
    assert data["buckets"]["brief"]["recall"] == 1.0
    assert data["buckets"]["article"]["recall"] == 0.0
    assert data["buckets"]["long-form"]["false_alarm_rate"] == 1.0
    assert data["kinds"]["sports"]["false_alarms"] == 0

    text = render(report)
    assert "by length" in text and "by kind" in text
    [long_row] = [line for line in text.splitlines() if line.startswith("long-form")]
    assert long_row.endswith("1/1 (100.0%)")


def test_without_kinds_the_kind_table_is_left_out(clf: Classifier) -> None:
    rows = [{k: v for k, v in r.items() if k != "kind"} for r in (BRIEF_HIT, BRIEF_SPORTS)]
    report = evaluate(clf, labelled(*rows))
    assert report.kinds == {}
    assert "by kind" not in render(report)
    assert report.buckets["article"].articles == 0


def test_a_bad_kind_names_the_field() -> None:
    with pytest.raises(LabelError, match="field 'kind'"):
        labelled_from_dict({**BRIEF_HIT, "kind": 3}, "x.jsonl:1")


def test_cli_takes_kinds_from_a_side_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{k: v for k, v in r.items() if k != "kind"} for r in (BRIEF_HIT, BRIEF_SPORTS)]
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = tmp_path / "set.kinds.json"
    kinds.write_text(json.dumps({"brief-hit": "positive", "brief-sports": "sports"}))
    assert main(["eval", str(data), "--kinds", str(kinds), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kinds"]["sports"] == {
        "articles": 1,
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "negatives": 1,
        "false_alarms": 0,
        "false_alarm_rate": 0.0,
    }
    assert report["buckets"]["brief"]["articles"] == 2
    assert main(["eval", str(data), "--kinds", str(kinds)]) == 0
    out = capsys.readouterr().out
    assert "by kind" in out and "brief" in out

    kinds.write_text("[1, 2]")
    assert main(["eval", str(data), "--kinds", str(kinds)]) == 2
    assert "id -> kind" in capsys.readouterr().err
