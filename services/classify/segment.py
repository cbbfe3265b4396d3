"""Sentence boundaries and page-chrome detection for the classifier.

Why: rules that need two things "in the same sentence" need sentences, and an article's
tags must not move because of the site chrome around it (banners such as "The Largest
Security-Cleared Career Network for Defense and Intelligence Jobs - JOIN NOW", "Subscribe
to our newsletter", "Related: ..." link rows, adverts, a repeated headline).  The ingest
service strips chrome, but ``topicwatch classify`` reads raw bodies, so the classifier
itself only counts evidence found in *prose*: body lines that read like sentences.

A body line is prose when it is long (>= 20 words), or it ends like a sentence (``.``,
``!``, ``?``, a closing quote, an ellipsis) and has at least 4 words, and it is not a
recognisable chrome line (navigation rows joined by ``|``, "Related:", "Advertisement",
copyright lines...).  The title is always prose.  If no body line qualifies (a feed summary
without punctuation), the whole body is treated as prose rather than dropped.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_TERMINAL = (".", "!", "?", '"', "”", "’", "'", "…", "]")
_CHROME_RE = re.compile(
    r"^\W*(related|read more|see also|more from|recommended|subscribe|sign up|sign in|log in|"
    r"join (now|us|the|our)|follow us|share (this|on)|advertisement|advert|sponsored|"
    r"copyright|all rights reserved|click here|download (our|the) app|"
    r"cookie|privacy policy|terms of (use|service)|newsletter)\b|^\W*(\(c\)|©)",
    re.IGNORECASE,
)
# Sentence ends. A line break always ends a sentence (the next one starts at the next
# non-blank character). Terminal punctuation (+ closing quotes/brackets) ends one when a
# line break follows, or spaces and then a capital, digit or opening quote (group 1: that
# character; "[^\W_a-z]" also admits lower-case non-ASCII letters, checked in Python).
# One pattern per mark, each starting with its literal, so that Python's re finds
# candidates with a fast literal search instead of testing a character class at every
# position (the scan was the larger half of sentence splitting).
_AFTER_MARK = r"[\"'”’)\]]*(?:[ \t\r]*\n[ \t\r\n]*|[ \t\r]+(?=([^\W_a-z]|[\"'“‘(\[])))"
_MARK_RES = tuple((mark, re.compile(re.escape(mark) + _AFTER_MARK)) for mark in ".!?…")
_NEWLINE_RE = re.compile(r"\n[ \t\r\n]*")
_OPENERS = frozenset("\"'“‘([")
# "WARSAW, Sept 19 (Defence Wire Service) - ", "MOSCOW (Sputnik) - ": the place names in a
# dateline say where the story was filed, not what it is about (a Swiss dateline must not
# make a football club's "sanctions" an act of state).
_DATELINE_DASH_RE = re.compile(r"\s[-–—]{1,2}\s")
_DATELINE_HEAD_RE = re.compile(r"^\W*[A-Z][A-Z'’.-]{2,}\b")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof gen lt col maj capt sgt adm cmdr gov sen rep rev st no vs "
    "jan feb mar apr jun jul aug sep sept oct nov dec inc corp co ltd jr sr u.s u.k "
    "e.g i.e etc approx dept est fig".split()
)


@dataclass(slots=True)
class Layout:
    """Where sentences end, and which sentences are page chrome rather than prose.

    Not frozen: a frozen dataclass pays for ``object.__setattr__`` per field, and one is
    built per classified article. Nothing changes it after :func:`layout` returns.
    """

    sentence_ends: list[int]  # offsets where a new sentence starts, ascending
    chrome: list[tuple[int, int]]  # (start, end) ranges of non-prose text
    chrome_sentences: set[int]

    def sentence_of(self, pos: int) -> int:
        return bisect.bisect_right(self.sentence_ends, pos)


def is_prose_line(line: str) -> bool:
    """Does this body line read like article text rather than page furniture?"""
    stripped = line.strip()
    if not stripped:
        return False
    # Cheap tests first: this runs for every line of every article.
    words = stripped.count(" ") + 1
    if words < 4 or (words < 20 and not stripped.endswith(_TERMINAL)):
        return False
    if stripped.count("|") >= 3 or stripped.count(" | ") >= 2:
        return False
    return _CHROME_RE.match(stripped) is None


def dateline_length(line: str) -> int:
    """Length of a leading wire-style dateline in ``line`` (0 if there is none)."""
    m = _DATELINE_DASH_RE.search(line, 0, 140)
    if m is None:
        return 0
    head = line[: m.start()]
    if ("(" in head and head.rstrip().endswith(")")) or _DATELINE_HEAD_RE.match(head):
        return m.end()
    return 0


def _sentence_ends(text: str) -> list[int]:
    ends = [m.end() for m in _NEWLINE_RE.finditer(text)]
    for mark, pattern in _MARK_RES:
        if mark in text:
            ends += [m.end() for m in pattern.finditer(text) if _ends_sentence(m, text)]
    return sorted(set(ends))


def _ends_sentence(m: re.Match[str], text: str) -> bool:
    """Does the punctuation matched by ``m`` end a sentence? (What the regex cannot tell.)"""
    nxt = m.group(1)
    if nxt is None:  # a line break follows
        return True
    if nxt > "\x7f" and not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
        return False  # a lower-case non-ASCII letter
    if text[m.start()] == ".":
        # "Gen. Smith", "Sept. 1", "U.S. officials": not the end of a sentence.
        j = m.start()
        i = max(text.rfind(" ", max(0, j - 12), j), text.rfind("\n", max(0, j - 12), j))
        if i < 0 and j > 12:
            # No word start within reach: a token of 12 characters or more (a URL, a run of
            # dots) is no abbreviation. (Slicing from 0 here lower-cased the whole text
            # before it for each such mark: quadratic in a long article.)
            return True
        word = text[i + 1 : j]
        if len(word) == 1 and word.isupper():
            return False
        if word.lower().lstrip("(\"'“‘") in _ABBREVIATIONS:
            return False
    return True


def layout(text: str, body_start: int) -> Layout:
    """Lay out ``text`` (title, newline, body): sentences everywhere, chrome in the body only."""
    chrome: list[tuple[int, int]] = []
    extra_ends: list[int] = []
    prose_lines = 0
    pos = body_start
    for line in text[body_start:].split("\n"):
        start = pos
        pos += len(line) + 1
        if not line or line.isspace():
            continue
        if is_prose_line(line):
            prose_lines += 1
            # Datelines open a story (or a second story pasted after it): first lines only.
            if prose_lines <= 2:
                cut = dateline_length(line)
                if cut:
                    chrome.append((start, start + cut))
                    extra_ends.append(start + cut)
        else:
            chrome.append((start, pos - 1))
    ends = _sentence_ends(text)
    chrome_sentences: set[int] = set()
    if not prose_lines:
        return Layout(ends, [], chrome_sentences)
    for cut in extra_ends:
        i = bisect.bisect_left(ends, cut)
        if i == len(ends) or ends[i] != cut:
            ends.insert(i, cut)
    for start, end in chrome:
        first = bisect.bisect_right(ends, start)
        last = bisect.bisect_right(ends, max(start, end - 1))
        chrome_sentences.update(range(first, last + 1))
    return Layout(ends, chrome, chrome_sentences)
