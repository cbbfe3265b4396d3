"""Taxonomy files: validation errors name the file, topic/entry and field; reload is safe."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import services.classify.reload as reload_module
from services.classify.classifier import load_classifier
from services.classify.loader import DEFAULT_TAXONOMY, load_taxonomy, source_paths
from services.classify.reload import ClassifierHolder
from services.classify.spec import TaxonomyError
from services.common.models import DEFAULT_TOPIC_IDS

GOOD_GAZ = """
kind: organisation
entries:
  - {id: nato, name: NATO, aliases: [NATO], tags: [alliance]}
"""

GOOD = """
version: "1"
gazetteers: [orgs.yaml]
lexicons:
  talk: [summit, talks]
topics:
  - id: alliance
    name: Alliance
    rules:
      - id: r1
        weight: 0.6
        all: [["@organisation/alliance"], [$talk]]
"""


def write(tmp_path: Path, taxonomy: str, gazetteer: str = GOOD_GAZ) -> Path:
    (tmp_path / "orgs.yaml").write_text(textwrap.dedent(gazetteer))
    path = tmp_path / "taxonomy.yaml"
    path.write_text(textwrap.dedent(taxonomy))
    return path


def error_for(tmp_path: Path, taxonomy: str, gazetteer: str = GOOD_GAZ) -> TaxonomyError:
    path = write(tmp_path, taxonomy, gazetteer)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    return info.value


def test_good_file_loads(tmp_path: Path) -> None:
    tax = load_taxonomy(write(tmp_path, GOOD))
    assert tax.topic_ids() == ["alliance"]
    assert tax.declared_version == "1"


def test_bad_weight_names_file_topic_and_field(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("weight: 0.6", "weight: 7"))
    assert err.file.endswith("taxonomy.yaml")
    assert err.topic == "alliance"
    assert err.field == "rules[0].weight"
    assert "taxonomy.yaml: topic 'alliance': field 'rules[0].weight'" in str(err)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("weight: 0.6", "weight: 0.6\n        wieght: 1"))
    assert err.topic == "alliance" and err.field == "rules[0].wieght"


def test_rule_needs_one_form(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, GOOD.replace('all: [["@organisation/alliance"], [$talk]]', "within: 3")
    )
    assert err.topic == "alliance" and "exactly one of 'any' or 'all'" in err.message


@pytest.mark.parametrize("within", ["paragraph", "1.5", "[3]", "true"])
def test_a_wrong_window_is_one_error_naming_the_field(tmp_path: Path, within: str) -> None:
    rule = 'all: [["@organisation/alliance"], [$talk]]'
    err = error_for(tmp_path, GOOD.replace(rule, f"{rule}\n        within: {within}"))
    assert (err.topic, err.field) == ("alliance", "rules[0].within")
    assert "must be 'sentence', 'article' or a number of words" in err.message
    assert "also:" not in err.message


@pytest.mark.parametrize(
    ("within", "window"), [("12", 12), ("'12'", 12), ("article", 0), ("sentence", None)]
)
def test_windows_as_written_load(tmp_path: Path, within: str, window: int | None) -> None:
    """Each way of writing a window compiles to its meaning: N words, the whole article (0),
    or the same sentence (None)."""
    rule = 'all: [["@organisation/alliance"], [$talk]]'
    tax = load_taxonomy(write(tmp_path, GOOD.replace(rule, f"{rule}\n        within: {within}")))
    [compiled] = tax.rules
    assert (compiled.id, compiled.within) == ("r1", window)


def test_unknown_lexicon_and_selector(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("[$talk]", "[$tlak]"))
    assert (err.topic, err.field) == ("alliance", "rules[0].all[1]")
    assert "$tlak" in err.message
    err = error_for(tmp_path, GOOD.replace("@organisation/alliance", "@organisation/allaince"))
    assert (err.topic, err.field) == ("alliance", "rules[0].all[0]")
    assert "selects no gazetteer entries" in err.message


def test_duplicate_topic(tmp_path: Path) -> None:
    doubled = GOOD + "  - {id: alliance, name: Again, rules: [{id: r, weight: 0.5, any: [NATO]}]}\n"
    err = error_for(tmp_path, doubled)
    assert err.topic == "alliance" and "duplicate topic id" in err.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("name: Alliance", "name: [Alliance"))
    assert err.file.endswith("taxonomy.yaml")
    assert "line" in err.message


def test_gazetteer_errors_name_the_gazetteer_and_entry(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD, GOOD_GAZ.replace("aliases: [NATO]", "aliases: []"))
    assert err.file.endswith("orgs.yaml")
    assert err.topic == "entry 'nato'" and err.field == "aliases"
    bad_amb = GOOD_GAZ.replace("tags: [alliance]", "tags: [alliance], ambiguous: [OTAN]")
    err = error_for(tmp_path, GOOD, bad_amb)
    assert err.field == "ambiguous" and "OTAN" in err.message


def test_missing_gazetteer_file(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("orgs.yaml", "nowhere.yaml"))
    assert err.field == "gazetteers[0]" and "nowhere.yaml" in err.message


def test_lexicon_cycle(tmp_path: Path) -> None:
    cyclic = GOOD.replace("talk: [summit, talks]", "talk: [summit, $other]\n  other: [$talk]")
    err = error_for(tmp_path, cyclic)
    assert "cycle" in err.message


def test_default_taxonomy_has_the_eleven_topics() -> None:
    clf = load_classifier()
    assert [t["id"] for t in clf.topics_summary()] == [
        "air-defence-procurement",
        "arms-trade",
        "missile-test",
        "sanctions",
        "nuclear",
        "military-exercise",
        "cyber",
        "alliance-relations",
        "chemical-biological",
        "space-security",
        "terrorism",
    ]
    assert all(t["description"] for t in clf.topics_summary())
    assert tuple(t["id"] for t in clf.topics_summary()) == DEFAULT_TOPIC_IDS
    assert len(source_paths(DEFAULT_TAXONOMY)) == 5


async def test_holder_reloads_on_change_and_refuses_a_bad_file(tmp_path: Path) -> None:
    """reload.py's watch loop, as the service runs it: an edit is picked up, a broken file is
    refused once (not on every poll) while the last good classifier keeps serving, and a
    gazetteer edit counts as a taxonomy change."""
    path = write(tmp_path, GOOD)
    registry = CollectorRegistry()
    holder = ClassifierHolder(path, registry=registry, interval=0.02)
    first = holder.current.version

    def reloads(outcome: str) -> float:
        value = registry.get_sample_value("topicwatch_taxonomy_reloads_total", {"outcome": outcome})
        return value or 0.0

    async def until(predicate: Callable[[], bool], what: str) -> None:
        for _ in range(250):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    watcher = asyncio.create_task(holder.watch())
    try:
        await asyncio.sleep(0.1)
        assert reloads("loaded") == 0 and holder.current.version == first  # nothing changed

        path.write_text(textwrap.dedent(GOOD.replace('version: "1"', 'version: "2"')))
        os.utime(path, ns=(1, 10**18))  # mtime resolution must not hide the edit
        await until(lambda: holder.current.version.startswith("2+"), "the edit to load")
        assert reloads("loaded") == 1

        path.write_text("version: [broken")
        os.utime(path, ns=(1, 2 * 10**18))
        await until(lambda: reloads("refused") == 1, "the broken file to be refused")
        assert holder.current.version.startswith("2+")  # the last good taxonomy keeps serving
        assert holder.last_error and "taxonomy.yaml" in holder.last_error
        await asyncio.sleep(0.2)
        assert reloads("refused") == 1  # reported once, not on every poll

        # A gazetteer edit is a taxonomy change too.
        path.write_text(textwrap.dedent(GOOD))
        os.utime(path, ns=(1, 3 * 10**18))
        await until(lambda: reloads("loaded") == 2, "the repaired file to load")
        before = holder.current
        assert before.classify("OTAN summit", "OTAN summit talks").topic_ids() == []
        (tmp_path / "orgs.yaml").write_text(GOOD_GAZ.replace("[NATO]", "[NATO, OTAN]"))
        os.utime(tmp_path / "orgs.yaml", ns=(1, 4 * 10**18))
        await until(lambda: reloads("loaded") == 3, "the gazetteer edit to load")
        assert holder.current is not before
        # The new alias is in use.
        assert holder.current.classify("OTAN summit", "OTAN summit talks").topic_ids() == [
            "alliance"
        ]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_a_reload_is_loaded_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a taxonomy is hundreds of ms of CPU; the watcher loads in a worker thread
    while the loop keeps running (counted in ticks of a concurrent task, not timed), and
    the classifier in use changes only once the new one is complete."""
    path = write(tmp_path, GOOD)
    holder = ClassifierHolder(path, registry=CollectorRegistry())
    old = holder.current
    loaded_in: list[int] = []
    seen_meanwhile: list[object] = []

    collector: list[bool] = []

    def recording(at: Path | None) -> object:
        loaded_in.append(threading.get_ident())
        collector.append(gc.isenabled())
        seen_meanwhile.append(holder.current)
        return load_classifier(at)

    monkeypatch.setattr(reload_module, "load_classifier", recording)
    path.write_text(textwrap.dedent(GOOD.replace('version: "1"', 'version: "2"')))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    assert await holder.reload_off_loop() is True
    done.set()
    await task
    assert loaded_in and threading.get_ident() not in loaded_in
    assert seen_meanwhile == [old]  # the old classifier served until the swap
    assert holder.current.version.startswith("2+") and ticks >= 1
    # Full collections (which hold the GIL) were not triggered by the load's allocations.
    assert collector == [False] and gc.isenabled()


async def test_polling_for_changes_reads_file_times_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher polls every couple of seconds; finding the gazetteers a taxonomy names
    parses the taxonomy (150 ms for the default one), so it is done at (re)load, never per
    poll."""
    path = write(tmp_path, GOOD)
    holder = ClassifierHolder(path, registry=CollectorRegistry(), interval=0.01)
    parsed: list[Path | None] = []
    polls = 0
    real_source_paths, real_snapshot = reload_module.source_paths, reload_module._snapshot

    def counting_source_paths(at: Path | None) -> list[Path]:
        parsed.append(at)
        return real_source_paths(at)

    def counting_snapshot(at: Path | None, files: list[Path] | None = None) -> dict[str, int]:
        nonlocal polls
        polls += 1
        return real_snapshot(at, files)

    monkeypatch.setattr(reload_module, "source_paths", counting_source_paths)
    monkeypatch.setattr(reload_module, "_snapshot", counting_snapshot)
    watcher = asyncio.create_task(holder.watch())
    try:
        for _ in range(500):
            if polls >= 5:
                break
            await asyncio.sleep(0.01)
        assert polls >= 5 and parsed == []
        path.write_text(textwrap.dedent(GOOD.replace('version: "1"', 'version: "2"')))
        os.utime(path, ns=(1, 10**18))
        for _ in range(500):
            if holder.current.version.startswith("2+"):
                break
            await asyncio.sleep(0.01)
        assert holder.current.version.startswith("2+")
        assert parsed == [path]  # once, for the reload
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


_ITEM = st.one_of(
    st.sampled_from(["@", "$", "*", "@system", "@organisation/alliance", "@x:y", "$talk", "NATO"]),
    st.text(max_size=12),
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 600),
    st.floats(allow_nan=True),
    _ITEM,
    st.lists(_ITEM, max_size=3),
    st.lists(st.lists(_ITEM, max_size=3), max_size=3),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "weight",
                "any",
                "all",
                "within",
                "not_near",
                "min_count",
                "field",
                "note",
                "extra",
            ]
        ),
        _VALUE,
        max_size=6,
    )
)
def test_any_rule_is_loaded_or_refused_with_a_taxonomy_error(tmp_path: Path, rule: dict) -> None:
    """Whatever an editor types into a rule, loading either works or names the problem."""
    spec = {
        "version": "1",
        "gazetteers": ["orgs.yaml"],
        "lexicons": {"talk": ["summit"]},
        "topics": [{"id": "t", "name": "T", "rules": [rule]}],
    }
    (tmp_path / "orgs.yaml").write_text(textwrap.dedent(GOOD_GAZ))
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        clf = load_classifier(path)
    except TaxonomyError as exc:
        assert exc.file.endswith(("taxonomy.yaml", "orgs.yaml"))
    else:
        clf.classify("NATO summit", "NATO allies met at the summit.")
