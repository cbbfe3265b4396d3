"""Short wire items (a headline and one or two sentences): issue 13's recall target.

``wire_blind_a.jsonl`` was written by someone who never read the rules (266 items, 2004-era
and current, many outlets; 135 positives and 131 negatives: sports, business, general).
Its first run, before any rule was changed for it, is recorded in docs/classifier.md
(micro P 0.966 / R 0.906 / F1 0.935, no false alarm); it is a regression set now, so
its current figures are optimistic. ``wire_own.jsonl`` holds our own briefs for the
misses the issue lists and hard negatives aimed at the rules written for them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.classify.classifier import Classifier, load_classifier
from services.classify.evaluate import EvalReport, evaluate, labelled_from_dict

DATA = Path(__file__).resolve().parent / "data"

#: Issue 13: recall >= 0.85 on briefs with precision >= 0.90; sports and business false
#: alarms <= 0.5 % (on sets this size: none).
MIN_RECALL = 0.85
MIN_PRECISION = 0.90
MAX_NEGATIVE_ALARM_RATE = 0.005

#: False alarms of our own set that are known and documented in docs/classifier.md
#: ("what still misses"); any other is a regression.
KNOWN_OWN_FALSE_ALARMS = {
    "own-069": ["nuclear"],  # a striker's shot called a "nuclear strike", no sport-only word
    "own-118": ["nuclear"],  # "raises $200m for nuclear work": fusion is six words away
    "own-125": ["sanctions"],  # a retailer lifting "the embargo" on its own results
}


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return load_classifier()


def run(clf: Classifier, name: str) -> EvalReport:
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return evaluate(clf, [labelled_from_dict(r, r["id"]) for r in rows])


def test_blind_wire_set_a_meets_the_issue_13_target(clf: Classifier) -> None:
    report = run(clf, "wire_blind_a.jsonl")
    assert len(report.articles) == 266
    brief = report.buckets["brief"]
    assert brief.articles == 266  # all of it is wire briefs
    assert brief.micro.recall >= MIN_RECALL, report.to_dict()["errors"]
    assert brief.micro.precision >= MIN_PRECISION, report.to_dict()["errors"]
    kinds = report.kinds
    assert kinds["sports"].negatives == 55 and kinds["business"].negatives == 45
    for kind in ("sports", "business", "general"):
        assert kinds[kind].false_alarm_rate <= MAX_NEGATIVE_ALARM_RATE, (
            kind,
            report.false_alarms,
        )
    # Every topic the issue named as missed is found at least as often as the target.
    for topic in ("nuclear", "cyber", "terrorism"):
        assert report.topics[topic].recall >= MIN_RECALL, topic


def test_held_out_wire_set_b_meets_the_issue_13_target(clf: Classifier) -> None:
    """Set B: written blind by a second writer and never read while the rules were tuned.

    Its first run (after the issue-13 rules, before anything was changed for it) is in
    docs/classifier.md: P 0.941 / R 0.919, one sports false alarm (a Counter-Strike report),
    since damped. Recall is the honest measure of how the rules generalise.
    """
    report = run(clf, "wire_blind_b.jsonl")
    assert len(report.articles) == 273
    brief = report.buckets["brief"]
    assert brief.micro.recall >= MIN_RECALL, report.to_dict()["errors"]
    assert brief.micro.precision >= MIN_PRECISION, report.to_dict()["errors"]
    for kind in ("sports", "business", "general"):
        assert report.kinds[kind].false_alarm_rate <= MAX_NEGATIVE_ALARM_RATE, (
            kind,
            report.false_alarms,
        )


def test_own_wire_briefs_meet_the_target_and_known_alarms_only(clf: Classifier) -> None:
    report = run(clf, "wire_own.jsonl")
    micro = report.buckets["brief"].micro
    assert micro.recall >= MIN_RECALL, report.to_dict()["errors"]
    assert micro.precision >= MIN_PRECISION, report.to_dict()["errors"]
    assert dict(report.false_alarms) == KNOWN_OWN_FALSE_ALARMS


@pytest.mark.parametrize(
    ("title", "body", "topic"),
    [
        # One strong, unambiguous signal in one sentence is a hit ...
        ("Talks on Pyongyang's nukes resume", "Envoys met in Beijing on Monday.", "nuclear"),
        (
            "Inspectors head back to Natanz",
            "UN inspectors will return to the enrichment plant next week, Iran said.",
            "nuclear",
        ),
        (
            "Worm knocks out ministry computers",
            "A computer worm shut down PCs at the interior ministry on Tuesday.",
            "cyber",
        ),
        (
            "Suicide attacker strikes police post",
            "A man blew himself up at a police checkpoint in Kirkuk, killing six.",
            "terrorism",
        ),
        (
            "Fighter jets shadow hijacked airliner",
            "Two jets escorted the hijacked plane until it landed in Rome.",
            "terrorism",
        ),
        (
            "Gunmen kill 12 at Paris magazine",
            "Masked gunmen stormed the offices of a satirical weekly, killing 12 people.",
            "terrorism",
        ),
        (
            "IAEA chief heads to Tehran",
            "Rafael Grossi will discuss access for inspectors with Iranian officials.",
            "nuclear",
        ),
        (
            "Spending spree on weapons",
            "The government has spent $3 billion on tanks and artillery since 2020.",
            "arms-trade",
        ),
    ],
)
def test_one_strong_signal_in_a_brief_is_a_hit(
    clf: Classifier, title: str, body: str, topic: str
) -> None:
    assert topic in {t.id for t in clf.classify(title, body).topics}


@pytest.mark.parametrize(
    ("title", "body"),
    [
        # ... ambiguous single words still need company.
        ("Flu virus closes schools", "The flu virus has closed 40 schools, the ministry said."),
        ("Antivirus review", "The suite caught every virus and worm we tried on our test PCs."),
        ("Volcano's ash cloud", "Etna sent a mushroom cloud of ash over Catania."),
        ("Uranium price rises", "Spot uranium prices rose as utilities bought more fuel."),
        ("Power talks", "EDF and the government opened talks on new nuclear power stations."),
        ("Team bus attacked", "Rival fans threw bottles at the team bus, injuring a driver."),
        ("Gas blast", "A gas cylinder exploded in a market, killing nine."),
        ("Debate hijacked", "Protesters hijacked the debate with chants."),
        ("Staff enrichment", "The bank's staff enrichment programme won an HR award."),
        (
            "Spirit take the Major on Nuke",
            "A near-perfect counter-terrorist half on Nuke gave Spirit the Counter-Strike 2 title.",
        ),
        ("Shooting not terror", "Police said there was no link to terrorism in the shooting."),
        # A state's bombs are war reports, a robbery's gunmen are crime.
        ("Bomb hits market", "A Russian bomb struck a market in Kharkiv, killing three people."),
        ("Glide bomb", "A glide bomb hit a school in Zaporizhzhia, killing two, officials said."),
        ("Robbery", "Police said gunmen killed a shopkeeper in a robbery in Lagos."),
        ("Food inspectors", "Food safety inspectors in Iran seized tonnes of fake honey."),
    ],
)
def test_ambiguous_single_words_stay_untagged(clf: Classifier, title: str, body: str) -> None:
    assert clf.classify(title, body).topics == []
