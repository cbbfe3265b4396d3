"""``published_at`` as found in the wild -> a timezone-aware UTC datetime.

Producers send ISO-8601 (APIs), RFC 2822 (feeds, e-mail) and whatever a news page prints
("16:02 27.11.2019", "Nov 27, 2019 4:02 PM").  The cheap, exact parsers run first; dateparser,
which understands the long tail but costs milliseconds per call (and far more on long junk),
runs last and only on short strings that look like a date.  A value none of them understands is
an error that names ``published_at``: guessing a date would put the article in the wrong place
on every analyst's timeline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

#: Longest string handed to dateparser (real dates are short; junk is slow).
MAX_DATEPARSER_CHARS = 64

#: Languages dateparser may try; restricting them keeps it fast and predictable.
DATEPARSER_LANGUAGES = ["en", "fr", "de", "es", "it", "pt", "ru", "uk", "pl", "tr"]

#: Dates outside this range are almost certainly parsing accidents (or epoch-zero defaults).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# Day-first numeric formats are what European and Russian news pages print (the seed's
# "16:02 27.11.2019"); US month-first formats are spelled out with a month name.
_FORMATS = (
    "%H:%M %d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y, %H:%M",
    "%d.%m.%Y",
    "%H:%M, %d.%m.%Y",
    "%b %d, %Y %I:%M %p",
    "%B %d, %Y %I:%M %p",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%d %B %Y %H:%M",
    "%d %b %Y %H:%M",
)

_DIGIT = re.compile(r"\d")
_RFC2822_SHAPE = re.compile(r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}")
#: "Published: ...", "Updated on ...": labels pages print before the date itself.
_DATE_LABEL = re.compile(
    r"^(?:first\s+)?(?:published|updated|last\s+updated|posted|modified|date)"
    r"(?:\s+(?:on|at))?\s*[:\-\u2013]?\s*",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


class DateParseError(ValueError):
    """``published_at`` could not be understood; the message is meant for the producer."""

    field = "published_at"


def _aware_utc(value: datetime, default_tz: tzinfo) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=default_tz)
    try:
        result = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise DateParseError(f"published_at {value!r} is out of range") from exc
    if not EARLIEST <= result < LATEST:
        raise DateParseError(
            f"published_at {result.isoformat()} is outside {EARLIEST.year}..{LATEST.year}"
        )
    return result


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _rfc2822(text: str) -> datetime | None:
    if not _RFC2822_SHAPE.match(text):
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _formats(text: str) -> datetime | None:
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (
            ("monday", "mon"),
            ("tuesday", "tue", "tues"),
            ("wednesday", "wed"),
            ("thursday", "thu", "thur", "thurs"),
            ("friday", "fri"),
            ("saturday", "sat"),
            ("sunday", "sun"),
        )
    )
    for name in names
}
#: Zone abbreviations news pages print, with the fixed offset (hours) dateparser gives each
#: (it reads "ET" as EST all year); tests/test_ingest_fastpaths.py checks them against it.
ZONE_OFFSETS = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "CET": 1, "WEST": 1, "CEST": 2, "EET": 2,
    "EEST": 3, "MSK": 3, "ET": -5, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7,
    "MDT": -6, "PT": -8, "PST": -8, "PDT": -7, "SGT": 8, "HKT": 8, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11,
}  # fmt: skip
_MONTH_NAME = "|".join(sorted(_MONTHS, key=len, reverse=True))
# "27 November 2019 16:02 MSK", "Nov. 27, 2019, 4:02 p.m. ET", "Wednesday, November 27, 2019"
_WRITTEN = re.compile(
    rf"^(?:(?P<weekday>[a-z]+)\.?,?\s+)?"
    rf"(?:(?P<day1>\d{{1,2}})\s+(?P<month1>{_MONTH_NAME})\.?"
    rf"|(?P<month2>{_MONTH_NAME})\.?\s+(?P<day2>\d{{1,2}}),?)\s+(?P<year>\d{{4}})"
    r"(?:(?:\s*,\s*|\s+at\s+|\s+)(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"(?:\s*(?P<half>[ap])\.?m\.?)?)?"
    r"(?:\s+(?P<zone>[A-Za-z]{1,4}))?$",
    re.IGNORECASE,
)


def _written(text: str, default_tz: tzinfo) -> datetime | None:
    """The written-out English dates pages print, read as dateparser reads them, or ``None``
    (then dateparser decides): it costs microseconds where dateparser costs milliseconds."""
    match = _WRITTEN.match(text)
    if match is None:
        return None
    parts = match.groupdict()
    month = _MONTHS[(parts["month1"] or parts["month2"]).lower()]
    day = int(parts["day1"] or parts["day2"])
    hour, minute = int(parts["hour"] or 0), int(parts["minute"] or 0)
    if parts["half"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if parts["half"].lower() == "p" else 0)
    zone = parts["zone"]
    if zone is not None and zone not in ZONE_OFFSETS:
        return None  # an abbreviation not in the table (or in lower case): dateparser's call
    try:
        value = datetime(int(parts["year"]), month, day, hour, minute, int(parts["second"] or 0))
    except ValueError:
        return None
    weekday = parts["weekday"]
    if weekday is not None and _WEEKDAYS.get(weekday.lower()) != value.weekday():
        return None  # not a weekday, or the wrong one: leave the oddity to dateparser
    if zone is not None:
        return value.replace(tzinfo=timezone(timedelta(hours=ZONE_OFFSETS[zone])))
    if value.year >= 2038:
        return None  # dateparser's zone data (pytz) stops summer time there; zoneinfo does not
    if (
        value.replace(tzinfo=default_tz).utcoffset()
        != value.replace(tzinfo=default_tz, fold=1).utcoffset()
    ):
        return None  # a local time that is ambiguous or skipped (DST): dateparser's call
    return value


def _dateparser(text: str, default_tz: tzinfo) -> datetime | None:
    if len(text) > MAX_DATEPARSER_CHARS or not _DIGIT.search(text):
        # Also keeps relative phrases without numbers ("yesterday") out: they depend on when
        # the article was read, not when it was published.
        return None
    import dateparser  # imported lazily: it loads its language data on first import

    settings: Any = {
        "RETURN_AS_TIMEZONE_AWARE": True,
        "TIMEZONE": str(getattr(default_tz, "key", "UTC")),
        "TO_TIMEZONE": "UTC",
        "DATE_ORDER": "DMY",
        "PREFER_DAY_OF_MONTH": "first",
        "REQUIRE_PARTS": ["day", "month", "year"],
        "PARSERS": ["timestamp", "custom-formats", "absolute-time"],
    }
    try:
        return dateparser.parse(text, languages=DATEPARSER_LANGUAGES, settings=settings)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError):
        return None


def parse_published_at(
    value: datetime | str | int | float | None, *, default_tz: tzinfo = UTC
) -> datetime | None:
    """Parse a publication time; naive values are taken to be in ``default_tz``.

    ``None`` / empty means "not given" and stays ``None``; anything else either parses to an
    aware UTC datetime or raises ``DateParseError``.  Numbers are Unix timestamps (seconds).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise DateParseError("published_at must be a date string, not a boolean")
    if isinstance(value, datetime):
        return _aware_utc(value, default_tz)
    if isinstance(value, int | float):
        try:
            return _aware_utc(datetime.fromtimestamp(value, UTC), default_tz)
        except (OverflowError, OSError, ValueError) as exc:
            raise DateParseError(f"published_at timestamp {value!r} is out of range") from exc
    text = _SPACES.sub(" ", str(value)).strip()
    if not text:
        return None
    text = _DATE_LABEL.sub("", text) or text
    parsed = (
        _iso(text)
        or _rfc2822(text)
        or _written(text, default_tz)  # before the strptime formats: one regex, not 13 tries
        or _formats(text)
        or _dateparser(text, default_tz)
    )
    if parsed is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise DateParseError(
            f"published_at {shown!r} is not a date topicwatch understands "
            "(use ISO-8601, e.g. 2019-11-27T16:02:00+03:00)"
        )
    return _aware_utc(parsed, default_tz)


def looks_like_date_line(line: str) -> bool:
    """Whether a short line of page text is only a date/time (a page's "16:02 27.11.2019").

    Used to spot the date printed above an article, which is page furniture in the body but
    the article's publication time when the producer did not send one.
    """
    text = line.strip()
    if not text or len(text) > 48 or not _DIGIT.search(text):
        return False
    if len(text.split()) > 7:
        return False
    try:
        return parse_published_at(text) is not None
    except DateParseError:
        return False


@lru_cache(maxsize=1)
def _city_zones() -> dict[str, str]:
    zones: dict[str, str] = {}
    for name in available_timezones():
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "US/")):
            continue
        city = name.rsplit("/", 1)[1].replace("_", " ").casefold()
        zones.setdefault(city, name)
    return zones


def zone_for_place(place: str | None) -> tzinfo | None:
    """The IANA time zone named after a dateline's city ("Moscow" -> Europe/Moscow), if any.

    A page prints local time without an offset; when the dateline names a city that has its
    own tz database entry, that is the best evidence of which local time was meant.
    """
    if not place:
        return None
    city = place.split(",", 1)[0].strip().casefold()
    name = _city_zones().get(city)
    return ZoneInfo(name) if name else None
