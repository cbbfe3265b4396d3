"""Canonical URLs and publication dates: the two fields de-duplication and timelines rest on."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from services.common.urls import InvalidURL, canonical_url, canonical_url_or_none
from services.ingest.dates import (
    DateParseError,
    looks_like_date_line,
    parse_published_at,
    zone_for_place,
)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "HTTPS://Example.COM:443/a/b/?utm_source=x&b=2&a=1&fbclid=zz#frag",
            "https://example.com/a/b?a=1&b=2",
        ),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com/path/", "http://example.com/path"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://user:secret@example.com/x", "https://example.com/x"),
        ("https://ex.com/a/./b/../c?x=2&x=1&gclid=9&mc_eid=1&_ga=2", "https://ex.com/a/c?x=1&x=2"),
        # content-selecting parameters survive, blank values too
        (
            "https://ex.com/news.php?cid=5&id=7&page=2&q=",
            "https://ex.com/news.php?cid=5&id=7&page=2&q=",
        ),
        ("https://bücher.de/ä", "https://xn--bcher-kva.de/%C3%A4"),
        ("https://ex.com/a%7eb", "https://ex.com/a~b"),
        ("http://[::1]:80/a", "http://[::1]/a"),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "javascript:alert(1)",
        "ftp://ex.com/a",
        "//ex.com/a",
        "http://",
        "https://ex.com:99999/",
        "http://[::1",
    ],
)
def test_invalid_urls_say_why(url):
    with pytest.raises(InvalidURL):
        canonical_url(url)


def test_no_url_is_no_canonical_url():
    assert canonical_url_or_none(None) is None
    assert canonical_url_or_none("  ") is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(urls(), st.text(max_size=100)))
def test_canonical_url_is_idempotent_or_refuses(url):
    try:
        once = canonical_url(url)
    except InvalidURL:
        return
    assert canonical_url(once) == once
    # No fragment and no tracking parameter; "utm_" may still stand in a path ("/UTM_").
    parts = urlsplit(once)
    assert "#" not in once and parts.fragment == ""
    assert not any(key.lower().startswith("utm_") for key, _ in parse_qsl(parts.query))


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-11-27T16:02:00+03:00", datetime(2019, 11, 27, 13, 2, tzinfo=UTC)),
        ("2019-11-27T13:02:00Z", datetime(2019, 11, 27, 13, 2, tzinfo=UTC)),
        ("2019-11-27", datetime(2019, 11, 27, tzinfo=UTC)),
        ("16:02 27.11.2019", datetime(2019, 11, 27, 16, 2, tzinfo=UTC)),
        ("Nov 27, 2019 4:02 PM", datetime(2019, 11, 27, 16, 2, tzinfo=UTC)),
        ("Wed, 27 Nov 2019 16:02:00 +0300", datetime(2019, 11, 27, 13, 2, tzinfo=UTC)),
        ("27 Nov 2019 16:02:00 GMT", datetime(2019, 11, 27, 16, 2, tzinfo=UTC)),
        ("Updated: Nov 27, 2019", datetime(2019, 11, 27, tzinfo=UTC)),
        ("Nov. 27, 2019, 4:02 p.m. ET", datetime(2019, 11, 27, 21, 2, tzinfo=UTC)),
        ("27 ноября 2019", datetime(2019, 11, 27, tzinfo=UTC)),
        ("2023-09-19T14:20:00+0200", datetime(2023, 9, 19, 12, 20, tzinfo=UTC)),
    ],
)
def test_parse_published_at(text, expected):
    result = parse_published_at(text)
    assert result == expected
    assert result.tzinfo is UTC


def test_naive_values_use_the_given_zone_and_numbers_are_epoch_seconds():
    moscow = zone_for_place("Moscow")
    assert parse_published_at("16:02 27.11.2019", default_tz=moscow) == datetime(
        2019, 11, 27, 13, 2, tzinfo=UTC
    )
    assert parse_published_at(1574859720) == datetime(2019, 11, 27, 13, 2, tzinfo=UTC)
    assert parse_published_at(datetime(2019, 11, 27, 16, 2)) == datetime(
        2019, 11, 27, 16, 2, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text", ["whenever", "2 hours ago", "yesterday", "2019", "5", "0001-01-01", "x" * 500]
)
def test_unreadable_dates_name_the_field(text):
    with pytest.raises(DateParseError, match="published_at"):
        parse_published_at(text)


def test_not_given_is_none():
    assert parse_published_at(None) is None
    assert parse_published_at("   ") is None


def test_zone_for_place():
    assert str(zone_for_place("Moscow")) == "Europe/Moscow"
    assert str(zone_for_place("Warsaw, Poland")) == "Europe/Warsaw"
    assert zone_for_place("Vandenberg Space Force Base, Calif.") is None
    assert zone_for_place(None) is None


def test_looks_like_date_line():
    assert looks_like_date_line("16:02 27.11.2019")
    assert looks_like_date_line("Published 27 November 2019")
    assert not looks_like_date_line("Sputnik News")
    assert not looks_like_date_line("Russia and Turkey signed a deal in 2017 for S-400 systems")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=70), st.integers(), st.floats(allow_nan=True)))
def test_parse_published_at_never_crashes(value):
    try:
        result = parse_published_at(value)
    except DateParseError:
        return
    assert result is None or (result.tzinfo is UTC and 1900 <= result.year < 2200)
