"""Page chrome in plain-text bodies: find it, cut it, keep what was cut.

Scrapers that copy a page's text bring the site around the article with it: a banner
("... Jobs - JOIN NOW"), a section label, the title again, the site name and the printed date
above the story; newsletter prompts, adverts, "Related:" link rows, copyright lines and book
ads below it.  Classifying that noise produces false alerts ("Join the mailing list" is not
news), so it is cut — but never silently: every cut line is returned for the ``removed`` audit
field, so an analyst can see exactly what topicwatch dropped.

The approach is structural and conservative:

* **pattern lines** — lines that are chrome wherever they appear (adverts, newsletter and
  "join" prompts, "Related:"/"Read more:" rows, navigation bars, copyright, share bars).
  Patterns only apply to short lines, so prose that merely mentions a newsletter survives.
* **the head** — lines above the first prose paragraph (the lead).  The repeated title, the
  printed date, a byline and the site name are cut (and kept as metadata); other short label
  lines are cut only when the head demonstrably is page furniture (it held chrome already).
* **the tail** — below the last prose paragraph, everything from the first chrome line on
  (so the book ad after "Join the mailing list" goes with it).

The dateline ("MOSCOW (Sputnik) - ...", "WARSAW, Sept 19 (Reuters) -") is read from the lead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.ingest.dates import looks_like_date_line
from services.ingest.text import fold

#: Longest line (in words) that a chrome pattern may remove; prose is longer than page chrome.
MAX_CHROME_WORDS = 30
#: A head line this short without sentence punctuation is a label (section, kicker, site name).
MAX_LABEL_WORDS = 12
#: A paragraph needs this many words (and a sentence end) to count as article prose.
MIN_PROSE_WORDS = 12
LONG_PROSE_WORDS = 30
#: Lines of hard-wrapped prose average at least this many words; menus and link lists fewer.
MIN_WRAPPED_LINE_WORDS = 8
#: Metadata (title, date, byline, site name) is looked for only this near the top of the head:
#: it is where pages print it, and it bounds the date parser's work on hostile input.
MAX_HEAD_META_LINES = 25

_I = re.IGNORECASE

#: Chrome that opens a page's footer: everything below it is site furniture too.
FOOTER_KINDS = frozenset({"newsletter", "call-to-action", "related", "copyright", "share", "site"})

# Lines that are chrome wherever they stand (each guarded by MAX_CHROME_WORDS).
_CHROME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "advert",
        re.compile(
            r"^(?:advertisement|advertising|advert|sponsored(?:\s+content)?|promoted(?:\s+content)?"
            r"|paid\s+(?:content|post)|partner\s+content|ad"
            # the same label on Russian, German, French, Spanish and Italian pages
            r"|реклама|anzeige|werbung|publicit[ée]|publicidad|pubblicit[àa])"
            r"\s*(?:$|[:\-\u2013\u2014|\u00b7\u2022]\s*)",
            _I,
        ),
    ),
    (
        "related",
        re.compile(
            r"^(?:related(?:\s+(?:articles?|stories|story|news|content|coverage|posts?|links?|"
            r"reading))?|read\s+(?:more|also|next)|also\s+read|see\s+also|more\s+on\s+this"
            r"(?:\s+story)?|more\s+from\s+[\w\s]{1,30}|recommended(?:\s+for\s+you)?"
            r"|you\s+(?:may|might)\s+also\s+(?:like|be\s+interested\s+in)|most\s+(?:read|popular"
            r"|viewed)|trending(?:\s+now)?|don'?t\s+miss|editor'?s\s+picks?|further\s+reading"
            r"|latest\s+(?:news|stories)"
            r"|читайте\s+также|по\s+теме|lesen\s+sie\s+auch|mehr\s+zum\s+thema|lire\s+aussi"
            r"|[àa]\s+lire\s+aussi|lea\s+tambi[ée]n|leer\s+m[áa]s|leggi\s+anche)"
            r"\s*(?:$|[:|\u00bb>\-\u2013\u2014]\s*)",
            _I,
        ),
    ),
    (
        "newsletter",
        re.compile(
            r"^(?:subscribe|sign\s*up|signup|join|get|register|receive)\b.{0,80}?\b(?:newsletters?"
            r"|mailing\s+list|e-?mail\s+(?:list|alerts?|updates)|our\s+list|briefing|inbox"
            r"|daily\s+digest)\b",
            _I,
        ),
    ),
    ("newsletter", re.compile(r"^(?:join|subscribe\s+to)\s+(?:the|our)\s+mailing\s+list\b", _I)),
    (
        "newsletter",
        re.compile(
            r"^(?:подписывайтесь|подпишитесь)\b|^(?:abonnieren\s+sie|abonnez-vous|suscr[íi]bete)\b",
            _I,
        ),
    ),
    (
        "call-to-action",
        re.compile(
            r"(?:^|[\-\u2013\u2014|:\u2022]\s*)(?:join\s+now|join\s+today|sign\s+up(?:\s+(?:now|today"
            r"|free|here))?|subscribe(?:\s+(?:now|today|here))?|register\s+(?:now|today|here)"
            r"|learn\s+more|shop\s+now|buy\s+now|book\s+now|order\s+now|click\s+here"
            r"|download\s+(?:now|the\s+app|our\s+app)|start\s+(?:your\s+)?free\s+trial"
            r"|log\s*in|sign\s+in)\s*[.!\u00bb\u203a>]*$",
            _I,
        ),
    ),
    (
        "copyright",
        re.compile(r"^(?:\(c\)|\u00a9|copyright\b)|\ball\s+rights\s+reserved\b", _I),
    ),
    (
        "share",
        re.compile(
            r"^(?:share(?:\s+(?:this|on|via)\b.*)?|tweet|e-?mail\s+this(?:\s+\w+)?|print(?:\s+this"
            r"(?:\s+\w+)?)?|comments?\s*\(?\d*\)?|follow\s+us(?:\s+on\b.*)?|facebook|twitter|x"
            r"|linkedin|whatsapp|telegram|reddit)(?:\s*[|\u2022/,]\s*(?:share|tweet|e-?mail|print"
            r"|comments?|facebook|twitter|x|linkedin|whatsapp|telegram|reddit|copy\s+link)\b)*\s*$",
            _I,
        ),
    ),
    (
        "site",
        re.compile(
            r"^(?:skip\s+to\s+(?:main\s+)?content|back\s+to\s+top|listen\s+to\s+this\s+article"
            r"|\d+\s+min(?:ute)?s?\s+read|reading\s+time\b.*|(?:tags|topics|filed\s+under"
            r"|categories)\s*:.*|we\s+use\s+cookies\b.*|(?:accept|manage)\s+(?:all\s+)?cookies"
            r"|(?:this\s+)?(?:article|story)\s+continues\s+below.*|continue\s+reading.*"
            r"|download\s+(?:our|the)\s+app\b.*|leave\s+a\s+(?:comment|reply)|\d+\s+comments?)$",
            _I,
        ),
    ),
    (
        "credit",
        re.compile(
            r"^\(?(?:photo|image|picture|file\s+photo|video|credit)s?(?:\s+by)?\s*[:/].{0,80}$"
            r"|^(?:image|media)\s+(?:source|caption)\s*,.{0,200}$",
            _I,
        ),
    ),
)

_NAV_SEPARATOR = re.compile(r"\s+[|\u2022\u00b7\u00bb\u203a>/]\s+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_BYLINE = re.compile(
    r"^[Bb][Yy]:?\s+(?P<author>[A-Z][\w.'\-]*(?:\s+[A-Z][\w.'\-]*){0,3}"
    r"(?:\s*(?:,|and|&)\s*[A-Z][\w.'\-]*(?:\s+[A-Z][\w.'\-]*){0,3})*)"
    r"\s*(?:$|[|\u2022,;\-\u2013\u2014]\s*.{0,60}$)"
)

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_MONTH_RU = r"(?:янв|фев|мар|апр|ма[йя]|июн|июл|авг|сен|окт|ноя|дек)[а-я]*\.?"
_DATE_PART = rf"(?:{_MONTH}\s+\d{{1,2}}|\d{{1,2}}\s+(?:{_MONTH}|{_MONTH_RU}))(?:,?\s+\d{{4}})?"
_UPPER = "A-ZА-ЯЁ"
_REGION = r"[A-Z][A-Za-z.'\-]*(?:\s+[A-Z][A-Za-z.'\-]*){0,3}"
_AGENCY = r"\((?P<agency>[^()\n]{1,60})\)"
_DASH = r"(?:-{1,2}|\u2013|\u2014)"
# "MOSCOW (Sputnik) - ", "WARSAW, Sept 19 (Reuters) - ", "KOBLENZ, Germany, Feb 12 (X) - ",
# "WASHINGTON — ", TASS's "MOSCOW, November 27. /TASS/." and "МОСКВА, 27 ноября. /ТАСС/."
_DATELINE_CAPS = re.compile(
    rf"^(?P<place>[{_UPPER}][{_UPPER}'.\-]*(?:\s+[{_UPPER}][{_UPPER}'.\-]*){{0,4}})"
    rf"(?:,\s*(?P<region>{_REGION}))??"
    rf"(?:,?\s*(?P<date>{_DATE_PART}))?"
    rf"(?:\s*{_AGENCY}\s*{_DASH}\s*|\.?\s*/(?P<agency_slash>[\w\-]{{2,20}})/\.?\s+"
    r"|\s+(?P<bare_dash>--|\u2013|\u2014)\s+)"
)
#: All-caps words that open sentences ("US — China talks") but are not datelines.
_NOT_PLACES = frozenset({"US", "UK", "EU", "UN", "USA", "NATO", "OPEC", "IAEA", "WHO", "AU"})
# Mixed-case places only with an agency in brackets: "Kyiv, Ukraine (AP) — ".
_DATELINE_MIXED = re.compile(
    r"^(?P<place>[A-Z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+){0,3})"
    rf"(?:,\s*(?P<region>{_REGION}))??"
    rf"(?:,?\s*(?P<date>{_DATE_PART}))?"
    rf"\s*{_AGENCY}\s*{_DASH}\s*"
)
_SMALL_WORDS = frozenset({"of", "the", "de", "la", "du", "del", "da", "al", "el", "on", "upon"})


@dataclass(frozen=True, slots=True)
class DatelineMatch:
    place: str
    agency: str | None
    end: int
    """Where the article text proper starts, after the dateline."""


@dataclass(slots=True)
class StrippedBody:
    """The article text with chrome cut, and what the cut revealed."""

    text: str
    removed: list[str] = field(default_factory=list)
    dateline: DatelineMatch | None = None
    page_date: str | None = None
    """A date printed above the article ("16:02 27.11.2019"), unparsed."""
    page_source: str | None = None
    """The site name printed above the article, when it could be told apart."""
    author: str | None = None


def _title_case(place: str) -> str:
    words = []
    for index, word in enumerate(place.split()):
        lowered = word.lower()
        if index and lowered in _SMALL_WORDS:
            words.append(lowered)
        else:
            words.append(re.sub(r"[^\W\d_]+", lambda m: m.group(0).capitalize(), lowered))
    return " ".join(words)


def find_dateline(text: str) -> DatelineMatch | None:
    """The dateline at the start of ``text``: place (title-cased) and agency, if any."""
    head = text[:300]
    match = _DATELINE_CAPS.match(head)
    if match is not None:
        place = _title_case(match.group("place").strip(" .,"))
    else:
        match = _DATELINE_MIXED.match(head)
        if match is None:
            return None
        place = match.group("place").strip()
    agency = match.groupdict().get("agency") or match.groupdict().get("agency_slash")
    if agency is None and match.group("place").strip(" .,").upper() in _NOT_PLACES:
        return None
    region = match.group("region")
    if region:
        place = f"{place}, {region.strip()}"
    if not place or len(place) < 2:
        return None
    return DatelineMatch(place=place, agency=agency.strip() if agency else None, end=match.end())


def _words(line: str) -> int:
    return len(line.split())


def _is_nav_bar(line: str) -> bool:
    parts = _NAV_SEPARATOR.split(line)
    if len(parts) < 3:
        return False
    return all(_words(part) <= 5 and not _SENTENCE_END.search(part) for part in parts[1:])


def chrome_kind(line: str) -> str | None:
    """Why ``line`` is page chrome wherever it stands, or ``None`` when it may be article text."""
    text = line.strip()
    if not text or _words(text) > MAX_CHROME_WORDS:
        return None
    for kind, pattern in _CHROME_PATTERNS:
        if pattern.search(text):
            return kind
    return "navigation" if _is_nav_bar(text) else None


def _is_prose_text(text: str) -> bool:
    words = _words(text)
    if words >= LONG_PROSE_WORDS:
        return True
    return words >= MIN_PROSE_WORDS and bool(_SENTENCE_END.search(text))


def _is_prose(paragraph: str) -> bool:
    """Article text rather than a block of labels.

    A block of short lines (a menu, a list of links) is prose only if one of its lines is;
    lines averaging a sentence's length are hard-wrapped prose and judged as a whole.
    """
    lines = paragraph.split("\n")
    if _words(paragraph) / len(lines) < MIN_WRAPPED_LINE_WORDS:
        prose = any(_is_prose_text(line) for line in lines)
    else:
        prose = _is_prose_text(paragraph)
    # A lead with a dateline is prose however short; asked last, as it is the dearest test.
    return prose or find_dateline(paragraph) is not None


def _is_label(line: str) -> bool:
    return _words(line) <= MAX_LABEL_WORDS and not _SENTENCE_END.search(line)


def _looks_like_source(line: str, source: str | None, agency: str | None) -> bool:
    folded = fold(line)
    if not folded or _words(line) > 6 or _SENTENCE_END.search(line):
        return False
    if source and folded == fold(source):
        return True
    if agency:
        agency_folded = fold(agency)
        return bool(agency_folded) and folded.startswith(agency_folded)
    return False


def strip_chrome(text: str, *, title: str | None = None, source: str | None = None) -> StrippedBody:
    """Cut page chrome from cleaned plain text (see the module docstring for the rules).

    ``text`` should have been through ``clean_text``; paragraphs are separated by blank lines.
    The result keeps the paragraph structure of what is left.
    """
    paragraphs = [[line for line in p.split("\n") if line.strip()] for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    keep = [[True] * len(p) for p in paragraphs]
    result = StrippedBody(text="")

    def cut(pi: int, li: int) -> None:
        keep[pi][li] = False

    # 1. Pattern lines, wherever they are.
    pattern_hits: dict[tuple[int, int], str] = {}
    for pi, lines in enumerate(paragraphs):
        for li, line in enumerate(lines):
            kind = chrome_kind(line)
            if kind is not None:
                pattern_hits[(pi, li)] = kind

    def remaining(pi: int) -> str:
        return "\n".join(
            line for li, line in enumerate(paragraphs[pi]) if (pi, li) not in pattern_hits
        )

    prose = [pi for pi in range(len(paragraphs)) if (rest := remaining(pi)) and _is_prose(rest)]

    # The dateline is in the lead: the first prose paragraph.
    if prose:
        lead_text = remaining(prose[0])
        result.dateline = find_dateline(lead_text)
    agency = result.dateline.agency if result.dateline else None

    # 2. The head, above the lead.
    head_end = prose[0] if prose else 0
    title_key = fold(title) if title else ""
    furniture = False
    head_line = 0
    for pi in range(head_end):
        for li, line in enumerate(paragraphs[pi]):
            head_line += 1
            if (pi, li) in pattern_hits:
                furniture = True
                cut(pi, li)
            elif head_line > MAX_HEAD_META_LINES:
                continue
            elif title_key and fold(line) == title_key:
                furniture = True
                cut(pi, li)
            elif result.page_date is None and looks_like_date_line(line):
                furniture = True
                result.page_date = line
                cut(pi, li)
            elif result.author is None and (byline := _BYLINE.match(line)):
                furniture = True
                result.author = byline.group("author").strip()
                cut(pi, li)
            elif result.page_source is None and _looks_like_source(line, source, agency):
                furniture = True
                result.page_source = line
                cut(pi, li)
    if furniture:
        for pi in range(head_end):
            for li, line in enumerate(paragraphs[pi]):
                if keep[pi][li] and _is_label(line):
                    cut(pi, li)

    # 3. The body: pattern lines only.
    body_end = prose[-1] if prose else len(paragraphs) - 1
    for pi in range(head_end, body_end + 1):
        for li in range(len(paragraphs[pi])):
            if (pi, li) in pattern_hits:
                cut(pi, li)

    # 4. The tail, below the last prose paragraph: from the first line that opens the page's
    #    footer (newsletter, related links, copyright...) to the end.  An advert or a caption
    #    is cut alone: what follows it may still be the article's short last paragraph.
    cutting = False
    for pi in range(body_end + 1, len(paragraphs)):
        for li in range(len(paragraphs[pi])):
            kind = pattern_hits.get((pi, li))
            cutting = cutting or kind in FOOTER_KINDS
            if cutting or kind is not None:
                cut(pi, li)

    result.removed = [
        line
        for pi, lines in enumerate(paragraphs)
        for li, line in enumerate(lines)
        if not keep[pi][li]
    ]
    kept = (
        "\n".join(line for li, line in enumerate(lines) if keep[pi][li])
        for pi, lines in enumerate(paragraphs)
    )
    result.text = "\n\n".join(p for p in kept if p)
    return result
