"""Ingest's fast paths give the very answers of the slow ones they stand in front of.

The yardstick is ingest's normalisation as it was before them, frozen in
``services/bench/ingest_before`` (also the same-run baseline of ``topicwatch bench ingest``),
and py3langid's own ``classify``: every corpus the project has, and generated text, must come
out identical — articles, rejections with their field errors, languages and confidences.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.bench.ingest_before import dates as before_dates
from services.bench.ingest_before import normalize as before
from services.common.models import ArticleSubmission
from services.ingest.language import SAMPLE_CHARS, detect_language, detect_languages, get_identifier
from services.ingest.normalize import (
    NormalizationError,
    normalize_submission,
    normalize_submissions,
)
from tests.conftest import labelled_articles

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
CORPORA = [
    *sorted((ROOT / "tests" / "data").glob("*.jsonl")),
    ROOT / "services" / "classify" / "data" / "examples.jsonl",
    ROOT / "examples" / "articles" / "briefs.jsonl",
]


def _corpus() -> list[dict[str, Any]]:
    items = [*labelled_articles()]
    for path in CORPORA:
        items += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    items.append(json.loads((ROOT / "examples" / "articles" / "s400-delivery.json").read_text()))
    page = (ROOT / "examples" / "articles" / "s400-delivery.txt").read_text("utf-8")
    items.append({"title": "Turkey takes delivery", "body": page})
    fields = set(ArticleSubmission.model_fields)
    return [{k: v for k, v in item.items() if k in fields} for item in items]


CORPUS = _corpus()


def _outcome(normalize: Any, submission: ArticleSubmission) -> Any:
    try:
        return normalize(submission, received_via="stream", now=NOW)
    except NormalizationError as exc:
        return [(e.field, e.message) for e in exc.errors]
    except Exception as exc:  # the frozen module raises its own NormalizationError class
        errors = getattr(exc, "errors", None)
        if errors is None:
            raise
        return [(e.field, e.message) for e in errors]


def _variants(item: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """The article, and versions of it that take the other paths (page dates, no title...)."""
    body = item.get("body") or ""
    dated = dict(item, published_at=rng.choice(["16:02 27.11.2019", "Nov 27, 2019 4:02 PM"]))
    paged = dict(item, body=f"Home | World | Defence\n\n{item.get('title', '')}\n\n{body}")
    return [item, dated, paged, dict(item, title=""), dict(item, language="EN_gb")]


def test_every_corpus_normalises_exactly_as_before() -> None:
    rng = random.Random(10)
    submissions = []
    for item in CORPUS:
        for variant in _variants(item, rng):
            try:
                submissions.append(ArticleSubmission.model_validate(variant))
            except ValidationError:
                continue
    assert len(submissions) > 3000
    batched = normalize_submissions(submissions, received_via="stream", now=NOW)
    for submission, in_batch in zip(submissions, batched, strict=True):
        old = _outcome(before.normalize_submission, submission)
        new = _outcome(normalize_submission, submission)
        if isinstance(old, list):
            assert new == old
            assert isinstance(in_batch, NormalizationError)
            assert [(e.field, e.message) for e in in_batch.errors] == old
        else:
            assert new.model_dump() == old.model_dump()
            assert not isinstance(in_batch, Exception)
            assert in_batch.model_dump() == old.model_dump()


def _py3langid() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@pytest.fixture(scope="module")
def py3langid() -> Any:
    return _py3langid()


def test_language_answers_are_py3langids_to_the_last_bit(py3langid: Any) -> None:
    fast = get_identifier()
    assert fast.vectorised  # else the test would only compare py3langid with itself
    texts = [f"{item.get('title', '')}\n{item.get('body', '')}" for item in CORPUS]
    long = ["\n\n".join(texts[i : i + 8])[:SAMPLE_CHARS] for i in range(len(texts))]
    odd = ["", "A", "OK OK", "ALL CAPS HEADLINE TEXT HERE", "\x00\x01\x02", "ÉTÉ " * 10]
    samples = [t[:SAMPLE_CHARS] for t in texts] + long + odd
    expected = [py3langid.classify(t) for t in samples]
    for start in range(0, len(samples), 50):
        assert fast.classify_many(samples[start : start + 50]) == expected[start : start + 50]
    assert [fast.classify(t) for t in odd] == expected[-len(odd) :]
    assert detect_languages(samples[:40]) == [detect_language(t) for t in samples[:40]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=6))
def test_language_answers_on_any_text(texts: list[str]) -> None:
    reference = _LIB[0] if _LIB else _LIB.append(_py3langid()) or _LIB[0]
    assert get_identifier().classify_many(texts) == [reference.classify(t) for t in texts]


_LIB: list[Any] = []


_AWKWARD = list(
    "ab \n\r\t\x0b\x0c\x85\u2028\u2029\xa0\u2000\u3000\u00ad\u200b\ufeff\x00\x1f\x7f\x9f"
    "\u2019\u201c\u2011\ufb01\u0301e\ud800\udcff\x1c\u1680\u202f"
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(st.sampled_from(_AWKWARD), max_size=40), st.text(max_size=60)))
def test_text_cleaning_is_as_before(text: str) -> None:
    from services.bench.ingest_before import text as old
    from services.ingest.text import clean_line, clean_text, fold

    assert clean_text(text) == old.clean_text(text)
    assert clean_line(text) == old.clean_line(text)
    assert fold(text) == old.fold(text)


# --- written-out dates: the fast path reads them as dateparser does -------------------------

_ZONES_FOR_NAIVE = ["UTC", "Europe/Moscow", "America/New_York", "Europe/London", "Asia/Tokyo"]


@st.composite
def _written_dates(draw: st.DrawFn) -> str:
    from services.ingest.dates import ZONE_OFFSETS

    moment = draw(st.datetimes(datetime(1950, 1, 1), datetime(2100, 1, 1)))
    months = [
        ("January", "Jan"),
        ("February", "Feb"),
        ("March", "Mar"),
        ("April", "Apr"),
        ("May", "May"),
        ("June", "Jun"),
        ("July", "Jul"),
        ("August", "Aug"),
        ("September", "Sept", "Sep"),
        ("October", "Oct"),
        ("November", "Nov"),
        ("December", "Dec"),
    ][moment.month - 1]
    month = draw(st.sampled_from(months)) + draw(st.sampled_from(["", "."]))
    month = draw(st.sampled_from([month, month.lower(), month.upper()]))
    day = draw(st.integers(1, 31)) if draw(st.booleans()) else moment.day
    if draw(st.booleans()):
        date = f"{day} {month} {moment.year}"
    else:
        date = f"{month} {day}{draw(st.sampled_from(['', ',']))} {moment.year}"
    if draw(st.booleans()):
        names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
        weekday = names[draw(st.sampled_from([moment.weekday(), (moment.weekday() + 1) % 7]))]
        weekday = draw(st.sampled_from([weekday, weekday[:3], weekday[:3] + "."]))
        date = f"{weekday}{draw(st.sampled_from(['', ',']))} {date}"
    if draw(st.booleans()):
        if draw(st.booleans()):
            hour = draw(st.integers(0, 13))
            half = draw(st.sampled_from(["am", "pm", "a.m.", "p.m.", "AM", "PM", " pm", " a.m."]))
            clock = f"{hour}:{moment.minute:02d}{half}"
        else:
            clock = f"{moment.hour}:{moment.minute:02d}"
            if draw(st.booleans()):
                clock += f":{moment.second:02d}"
        date += draw(st.sampled_from([" ", ", ", " at "])) + clock
    if draw(st.booleans()):
        date += " " + draw(st.sampled_from([*ZONE_OFFSETS, "msk", "CT", "XYZ"]))
    return date


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_written_dates(), st.sampled_from(_ZONES_FOR_NAIVE))
def test_written_dates_read_as_dateparser_reads_them(text: str, zone: str) -> None:
    from zoneinfo import ZoneInfo

    from services.ingest import dates

    local = ZoneInfo(zone)
    fast = dates._written(text, local)
    if fast is None:
        return
    formats = dates._formats(text)  # asked after the fast path now: must agree where both read
    if formats is not None:
        assert dates._aware_utc(fast, local) == dates._aware_utc(formats, local), text
    slow = dates._dateparser(text, local)
    assert slow is not None, text
    assert dates._aware_utc(fast, local) == dates._aware_utc(slow, local), text


def test_written_dates_take_the_fast_path() -> None:
    from services.ingest import dates

    for text in ("27 November 2019 16:02 MSK", "Nov. 27, 2019, 4:02 p.m. ET"):
        assert dates._written(text, UTC) is not None
        assert dates.parse_published_at(text) == before_dates.parse_published_at(text)

