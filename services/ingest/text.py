"""Unicode and whitespace normalisation of article text.

Scrapers hand us text with non-breaking spaces, curly quotes, zero-width joiners, Windows line
ends and fullwidth letters.  Left alone, "S‑400" (non-breaking hyphen) and "S-400" are different
strings to every matcher downstream, and the same story re-scraped with different quote
characters would get a different content hash and slip past de-duplication.  NFKC folds the
compatibility characters; the rest is done explicitly here.
"""

from __future__ import annotations

import re
import unicodedata

_SURROGATES = re.compile("[\ud800-\udfff]")
# Characters that carry no text: zero-width space/joiners, word joiner, BOM, soft hyphen.
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e]")
# C0/C1 controls except tab and newline (kept for structure) — they break JSON consumers.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2011": "-",  # non-breaking hyphen
        "\u2010": "-",
    }
)
_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029\x0b\x0c]")
_NOT_ALNUM = re.compile(r"[\W_]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
#: Every character the removal steps of ``clean_text`` act on (tab included): text without
#: any of them passes those steps unchanged, which one scan can tell.
_RARE = re.compile(
    "[\ud800-\udfff\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e]"
)
_RARE_ASCII = bytes([*range(0x0A), *range(0x0B, 0x20), 0x7F])  # all but "\n"
_QUOTE_PAIRS = tuple((chr(code), replacement) for code, replacement in _QUOTES.items())


def _has_rare(text: str) -> bool:
    if text.isascii():  # bytes.translate is many times faster than a regex scan
        data = text.encode("ascii")
        return len(data.translate(None, _RARE_ASCII)) != len(data)
    return _RARE.search(text) is not None


def clean_text(text: str) -> str:
    """Normalise Unicode and whitespace, keeping paragraph structure.

    NFKC; curly quotes and primes to ASCII quotes; invisible characters and control
    characters dropped; every kind of line break to ``\\n``; runs of spaces/tabs to one space;
    lines stripped; at most one blank line between paragraphs.  Lone surrogates (from input
    decoded with ``surrogateescape``) become U+FFFD so the result always encodes as UTF-8.

    Each step is skipped when a cheap test shows it would change nothing (ingest runs this on
    every body and title, so the common case, clean text, should cost one pass or two).
    """
    # Removals first, NFKC after: removing a character between a letter and a combining mark
    # after composing would leave text that a second pass composes differently.
    if _has_rare(text):
        text = _SURROGATES.sub("\ufffd", text)
        text = _LINE_BREAKS.sub("\n", text)
        text = _INVISIBLE.sub("", text)
        text = _CONTROLS.sub("", text.replace("\t", " "))
    if not text.isascii():  # ASCII is NFKC already and holds no curly quotes
        text = unicodedata.normalize("NFKC", text)
        for character, replacement in _QUOTE_PAIRS:
            if character in text:  # str.translate with a table is slow on non-ASCII text
                text = text.replace(character, replacement)
    # Runs of spaces/tabs to one space, lines stripped: str.split() splits on exactly the
    # characters \s matches (str.isspace), and is several times faster than the regex.
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def clean_line(text: str) -> str:
    """``clean_text`` for one-line fields (title, source, author): all whitespace to one space."""
    return " ".join(clean_text(text).split())


def fold(text: str) -> str:
    """A comparison key: case-folded letters and digits only ("S-400 – Ankara" ~ "s400ankara")."""
    # [\W_] is exactly "not str.isalnum()": \w is isalnum() plus "_".
    return _NOT_ALNUM.sub("", clean_text(text).casefold())
