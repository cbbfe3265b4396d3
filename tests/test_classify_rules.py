"""The rule language, on small taxonomies written for each test.

Each test builds a taxonomy (and gazetteer) from YAML text in a temp folder, so the
behaviour under test is visible next to the assertion.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from services.classify.classifier import Classifier, load_classifier

GAZETTEER = """
kind: system
context: [missile*, battery, batteries, launcher*, air defence]
context_window: 4
entries:
  - id: patriot
    name: Patriot
    tags: [air-defence]
    aliases: [Patriot, PAC-3]
    ambiguous: [Patriot]
    exclude: [Patriot Act]
  - id: s-400
    name: S-400
    tags: [air-defence]
    aliases: [S-400, SA-21]
  - id: sam
    name: SAM (generic)
    tags: [air-defence]
    aliases: [SAM]
    exact: [SAM]
"""


def make(tmp_path: Path, topics: str, extra: str = "") -> Classifier:
    (tmp_path / "systems.yaml").write_text(textwrap.dedent(GAZETTEER))
    header = textwrap.dedent(
        """
        version: "t1"
        gazetteers: [systems.yaml]
        lexicons:
          buy: [buy, bought, order*, deliver*]
        """
    )
    body = (
        header
        + textwrap.dedent(extra)
        + "topics:\n"
        + textwrap.indent(textwrap.dedent(topics), "  ")
    )
    (tmp_path / "taxonomy.yaml").write_text(body)
    return load_classifier(tmp_path / "taxonomy.yaml")


AD_DEAL = """
- id: deal
  name: Air-defence deal
  rules:
    - id: system-buy
      weight: 0.6
      all: [["@system/air-defence"], [$buy]]
"""


def score(clf: Classifier, body: str, title: str = "Untitled report") -> dict[str, float]:
    return {t.id: t.score for t in clf.classify(title, body).topics}


def test_groups_must_co_occur_in_one_sentence(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    assert score(clf, "Turkey bought four S-400 batteries.") == {"deal": 0.6}
    assert score(clf, "Turkey has the S-400. It also bought tractors.") == {}


def test_repeated_firings_add_up_with_decay(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    two = score(clf, "Turkey bought the S-400. India ordered the S-400 too.")["deal"]
    assert two == pytest.approx(1 - (1 - 0.6) * (1 - 0.3))


def test_title_firings_are_boosted(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    assert score(clf, "Nothing here.", title="India orders S-400")["deal"] == pytest.approx(0.78)


def test_word_window(tmp_path: Path) -> None:
    clf = make(
        tmp_path,
        """
        - id: near
          name: Near
          rules:
            - id: r
              weight: 0.6
              within: 3
              all: [["@system:s-400"], [$buy]]
        """,
    )
    assert score(clf, "They bought the S-400 system.") == {"near": 0.6}
    assert score(clf, "They bought, after years of talks and delays, the S-400.") == {}


def test_article_wide_co_occurrence(tmp_path: Path) -> None:
    clf = make(
        tmp_path,
        """
        - id: anywhere
          name: Anywhere
          rules:
            - id: r
              weight: 0.6
              within: article
              all: [["@system:s-400"], [$buy]]
        """,
    )
    assert score(clf, "Turkey has the S-400. It also bought tractors.") == {"anywhere": 0.6}


def test_not_near_cancels_a_firing(tmp_path: Path) -> None:
    clf = make(
        tmp_path,
        """
        - id: deal
          name: Deal
          rules:
            - id: r
              weight: 0.6
              all: [["@system/air-defence"], [$buy]]
              not_near: [rumour*]
        """,
    )
    assert score(clf, "Rumours say Turkey bought the S-400.") == {}
    assert score(clf, "Turkey bought the S-400. Rumours abound.") == {"deal": 0.6}


def test_ambiguous_alias_needs_context(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    assert score(clf, "Patriot Memory said buyers can order the new drives.") == {}
    assert score(clf, "Poland will buy more Patriot missile batteries.") == {"deal": 0.6}
    entities = clf.classify("t", "Poland will buy more Patriot missile batteries.").entities
    assert [(e.id, e.kind, e.mentions) for e in entities] == [("system:patriot", "system", 1)]


def test_entity_exclusion_phrase(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    text = "Congress ordered a review of the Patriot Act, and missile defence was not discussed."
    assert score(clf, text) == {}


def test_exact_case_alias(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    assert score(clf, "Sam ordered a pizza.") == {}
    assert score(clf, "Kenya ordered a SAM system.") == {"deal": 0.6}


def test_topic_and_global_exclusions(tmp_path: Path) -> None:
    clf = make(
        tmp_path,
        """
        - id: cyber
          name: Cyber
          exclude: [life hack*]
          rules:
            - id: r
              weight: 0.6
              any: [cyber, hack*]
        """,
        extra="exclude: [Cyber Monday]\n",
    )
    assert score(clf, "Cyber Monday sales rose. A life hack for shoppers.") == {}
    assert score(clf, "Hackers hit the ministry.") == {"cyber": 0.6}


def test_min_count_field_and_negative_rules(tmp_path: Path) -> None:
    clf = make(
        tmp_path,
        """
        - id: t
          name: T
          threshold: 0.4
          rules:
            - id: repeated
              weight: 0.3
              min_count: 2
              any: [sanction*]
            - id: headline
              weight: 0.5
              field: title
              any: [embargo]
            - id: sport
              weight: -0.5
              any: [football]
        """,
    )
    assert score(clf, "One mention of sanctions.") == {}
    assert score(clf, "Sanctions first. Sanctions again.") == {"t": pytest.approx(1 - 0.7 * 0.85)}
    assert score(clf, "An embargo in the body.") == {}
    assert score(clf, "Body.", title="Arms embargo") == {"t": pytest.approx(0.65)}
    assert score(clf, "Football.", title="Arms embargo") == {}


def test_dampers_and_thresholds(tmp_path: Path) -> None:
    topics = """
    - id: strict
      name: Strict
      threshold: 0.7
      rules:
        - id: r
          weight: 0.6
          any: [missile]
    - id: loose
      name: Loose
      threshold: 0.3
      rules:
        - id: r
          weight: 0.6
          any: [missile]
    """
    extra = """
    dampers:
      - id: sport
        any: [goal, coach, season]
        min_count: 2
        factor: 0.25
        topics: [loose]
    """
    clf = make(tmp_path, topics, extra)
    assert score(clf, "A missile was seen.") == {"loose": 0.6}
    assert score(clf, "A missile of a shot. The coach was happy. Best goal of the season.") == {}
    details = {d.id: d for d in clf.classify("t", "A missile. The coach. A goal.").details}
    assert details["loose"].dampers == [("sport", 0.25)]
    assert details["strict"].tagged is False


def test_brief_body_weighs_like_a_headline(tmp_path: Path) -> None:
    topics = """
    - id: t
      name: T
      rules:
        - id: r
          weight: 0.45
          any: [missile]
    """
    clf = make(tmp_path, topics, "title_boost: 1.3\nbrief_sentences: 2\n")
    # One or two story sentences: the mention is the story (0.45 x 1.3).
    assert score(clf, "A missile was seen.") == {"t": 0.585}
    assert score(clf, "A missile was seen. Officials said so.") == {"t": 0.585}
    # A longer article: one body sentence is a passing mention, below even odds.
    assert score(clf, "A missile was seen. Officials said so. Nothing else happened.") == {}
    # Off by default.
    (tmp_path / "plain").mkdir()
    plain = make(tmp_path / "plain", topics)
    assert score(plain, "A missile was seen.") == {}


def test_evidence_spans_point_at_the_text(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    title = "Ankara: deliveries of the S-400 begin"
    body = "MOSCOW (Wire) - Russia delivered the SA-21 batteries.\nSee also: nothing"
    [tag] = clf.classify(title, body).topics
    assert tag.evidence
    for ev in tag.evidence:
        source = title if ev.field == "title" else body
        assert source[ev.start : ev.end] == ev.text
        assert ev.rule == "system-buy"
    assert {ev.text for ev in tag.evidence} >= {"S-400", "deliveries", "SA-21", "delivered"}


def test_topics_summary_and_version(tmp_path: Path) -> None:
    clf = make(tmp_path, AD_DEAL)
    [summary] = clf.topics_summary()
    assert summary["id"] == "deal" and summary["name"] == "Air-defence deal"
    assert summary["threshold"] == 0.5
    assert clf.version.startswith("t1+")
    again = load_classifier(tmp_path / "taxonomy.yaml")
    assert again.version == clf.version  # a pure function of the file contents
    (tmp_path / "systems.yaml").write_text(GAZETTEER.replace("SA-21", "SA-21 Growler"))
    assert load_classifier(tmp_path / "taxonomy.yaml").version != clf.version
