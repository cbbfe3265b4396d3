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
_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise Unicode and whitespace, keeping paragraph structure.

    NFKC; curly quotes and primes to ASCII quotes; invisible characters and control
    characters dropped; every kind of line break to ``\\n``; runs of spaces/tabs to one space;
    lines stripped; at most one blank line between paragraphs.  Lone surrogates (from input
    decoded with ``surrogateescape``) become U+FFFD so the result always encodes as UTF-8.
    """
    # Removals first, NFKC after: removing a character between a letter and a combining mark
    # after composing would leave text that a second pass composes differently.
    text = _SURROGATES.sub("\ufffd", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROLS.sub("", text.replace("\t", " "))
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_QUOTES)
    text = _HSPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def clean_line(text: str) -> str:
    """``clean_text`` for one-line fields (title, source, author): all whitespace to one space."""
    return " ".join(clean_text(text).split())


def fold(text: str) -> str:
    """A comparison key: case-folded letters and digits only ("S-400 – Ankara" ~ "s400ankara")."""
    return "".join(ch for ch in clean_text(text).casefold() if ch.isalnum())
