"""Text normalisation and one Aho-Corasick automaton for every pattern of every topic.

Why this shape: matching cost must not grow with the number of topics, so every phrase of
every topic, lexicon and gazetteer is compiled once into a single Aho-Corasick automaton
(``ahocorasick_rs``: one call returns every overlapping match as a list, without a Python
step per match) and the text is scanned once.  Tolerance (case, hyphens, spacing, possessives,
British/American spelling, ``S-400``/``S400``/``S 400``) is achieved by normalising the text
and the patterns with the *same* function, plus a few generated spelling variants of each
pattern, so that the scan itself stays a plain exact multi-pattern search.

Normalisation of a text is *length preserving* (every character becomes one character),
so an offset in the normalised text is an offset in the original, and the whole step stays
in C-speed string operations (no Python loop per character or token).

Word boundaries come for free: the normalised text is space-separated tokens wrapped in
spaces, and every key is `` token token `` with a space on both sides, so
``arrow`` cannot match inside ``arrowhead`` and ``tor`` not inside ``torpedo``.  A pattern
ending in ``*`` is a token *prefix* (``procur*`` matches procure, procured, procurement).
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

import ahocorasick_rs

# Boundary between letters and digits inside a token: "s400" / "pac3" / "hq9b".
_ALNUM_SPLIT_RE = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")

#: Spelling variants that are the same word to an analyst.  Each set is closed: any member
#: in a pattern also generates all the others.  Deliberately explicit (no blanket -our/-or
#: rule, which would turn "four" into "for").
SPELLING_CLASSES: tuple[frozenset[str], ...] = tuple(
    frozenset(group)
    for group in (
        ("defence", "defense"),
        ("defences", "defenses"),
        ("offence", "offense"),
        ("offensive", "offensive"),
        ("licence", "license"),
        ("licences", "licenses"),
        ("licensing", "licencing"),
        ("manoeuvre", "maneuver"),
        ("manoeuvres", "maneuvers"),
        ("manoeuvring", "maneuvering"),
        ("programme", "program"),
        ("programmes", "programs"),
        ("armour", "armor"),
        ("armoured", "armored"),
        ("centre", "center"),
        ("metre", "meter"),
        ("kilometre", "kilometer"),
        ("kilometres", "kilometers"),
        ("sulphur", "sulfur"),
        ("harbour", "harbor"),
        ("harbouring", "harboring"),
        ("catalogue", "catalog"),
        ("cheque", "check"),
        ("judgement", "judgment"),
        ("travelled", "traveled"),
        ("labelled", "labeled"),
        ("fuelled", "fueled"),
        ("cancelled", "canceled"),
        ("modelling", "modeling"),
        ("dialogue", "dialog"),
        ("counterterrorism", "counter terrorism"),
        ("cyberattack", "cyber attack"),
        ("cyberattacks", "cyber attacks"),
        ("wargame", "war game"),
        ("wargames", "war games"),
        ("wargaming", "war gaming"),
        ("antiaircraft", "anti aircraft"),
        ("antimissile", "anti missile"),
        ("antisatellite", "anti satellite"),
    )
)
_SPELLING_MAP: dict[str, frozenset[str]] = {
    member: group for group in SPELLING_CLASSES for member in group
}
_COMPOUND_CLASSES: tuple[frozenset[str], ...] = tuple(
    group for group in SPELLING_CLASSES if any(" " in member for member in group)
)
# -ise/-ize, -isation/-ization, -ised/-ized, -ising/-izing: one rule covers hundreds of words.
_ISE_RE = re.compile(r"^(\w{3,})i([sz])(e|es|ed|ing|ation|ations)$")
_ISE_EXCEPTIONS = frozenset({"prec", "conc", "exerc", "adv", "surpr", "compr", "rev"})


# Length-preserving replacements applied before anything else, so that typical news text
# (curly quotes, dashes, no-break spaces) becomes ASCII and takes the fast bytes path.
_COMMON_UNICODE = (
    ("’", "'"),
    ("‘", "'"),
    ("“", '"'),
    ("”", '"'),
    ("–", "-"),
    ("—", "-"),
    ("…", "."),
    ("\u00a0", " "),
    ("\u2009", " "),
    ("\u202f", " "),
)
# One byte table does lower-casing and punctuation-to-space for ASCII text in one C call.
_ASCII_TABLE = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(128)) + bytes(
    32 for _ in range(128)
)
# Possessive 's at the end of a word: "Turkey's" -> "Turkey". Without this the stray "s"
# token would make "Turkey's 400 troops" look like "S 400".
# (A literal first character lets Python's re skip ahead fast; a look-behind would not.)
_POSSESSIVE_ASCII_RE = re.compile(r"'s\b")
_EXOTIC_RE = re.compile(r"[^\w ]|_")


def fold(text: str) -> str:
    """Lower-case, drop possessive 's and turn every non-alphanumeric character into a space.

    The result has exactly the length of ``text`` so positions map one to one.
    """
    for old, new in _COMMON_UNICODE:
        if old in text:
            text = text.replace(old, new)
    if "'" in text:
        text = _POSSESSIVE_ASCII_RE.sub("  ", text)
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE).decode("ascii")
    low = text.lower()
    if len(low) != len(text):
        # A handful of characters (e.g. "İ") lower-case to two code points; keep one.
        low = "".join(ch.lower()[:1] or " " for ch in text)
    return _EXOTIC_RE.sub(" ", low.translate(_SPACE_TABLE))


_SPACE_TABLE = {ord(c): " " for c in "\t\n\r\x0b\x0c"}


class NormalisedText:
    """The folded text, wrapped in spaces, and lookups from its offsets to the original.

    Folding is length preserving, so an offset in :attr:`text` is the original offset plus
    one (the leading space). Runs of spaces (", " becomes two) are *not* collapsed: a
    key is a whole-word phrase with spaces on both sides, and it matches whatever number
    of spaces surrounds it. Patterns with punctuation inside ("David's Sling") also get a
    key folded the same way as text.
    """

    __slots__ = ("_lookups", "_starts", "_words", "text")

    def __init__(self, text: str) -> None:
        self.text = text  # " tok tok  tok " (leading and trailing space)
        self._words: bytes | None = None
        self._starts: list[int] | None = None
        self._lookups = 0

    @staticmethod
    def original_offset(pos: int) -> int:
        """Offset in the original text of the character at ``pos`` of :attr:`text`."""
        return pos - 1

    @staticmethod
    def normalised_offset(orig: int) -> int:
        """Offset in :attr:`text` of the original offset ``orig``."""
        return orig + 1

    def word_index(self, pos: int) -> int:
        """How many words start before ``pos``: word distances ignore punctuation runs.

        The first few lookups count the words before ``pos`` (cheapest for a short article,
        which asks a handful); after that the word starts are listed once and bisected.
        Counting every time made a long article quadratic: a 315 KB one asks thousands of
        times, each a scan of up to the whole text (0.4 s of a 1 s classification).
        """
        words = self._words
        if words is None:
            # Every non-space becomes "a": a word start is then the two bytes " a".
            words = self._words = self.text.encode("ascii", "replace").translate(_WORD_TABLE)
        starts = self._starts
        if starts is None:
            self._lookups += 1
            if self._lookups <= _COUNTED_LOOKUPS:
                return words.count(b" a", 0, pos)
            starts = self._starts = [m.start() for m in _WORD_START.finditer(words)]
        # Occurrences of " a" wholly before pos start at pos - 2 or earlier.
        return bisect.bisect_right(starts, pos - 2)


_WORD_TABLE = bytes(32 if i == 32 else 97 for i in range(256))
_WORD_START = re.compile(b" a")
#: Word lookups answered by counting before the word starts are listed (see word_index).
_COUNTED_LOOKUPS = 8


def normalise(text: str) -> NormalisedText:
    """Fold ``text`` for matching (see :func:`fold`)."""
    return NormalisedText(" " + fold(text) + " ")


def pattern_tokens(pattern: str) -> tuple[list[str], bool]:
    """Tokens of a pattern as they appear in normalised text, and whether it is a prefix."""
    prefix = pattern.rstrip().endswith("*")
    core = pattern.rstrip().rstrip("*")
    tokens = fold(core).split()
    return tokens, prefix


def _canonical_token(token: str) -> str:
    """One spelling per variant class, so "defence" and "defense" are the same atom."""
    group = _SPELLING_MAP.get(token)
    if group is not None:
        return min(group)
    m = _ISE_RE.match(token)
    if m and m.group(1) not in _ISE_EXCEPTIONS:
        return f"{m.group(1)}is{m.group(3)}"
    return token


def _token_variants(token: str) -> set[str]:
    out = {token}
    if token in _SPELLING_MAP:
        out |= _SPELLING_MAP[token]
    m = _ISE_RE.match(token)
    if m and m.group(1) not in _ISE_EXCEPTIONS:
        stem, _, tail = m.groups()
        out |= {f"{stem}is{tail}", f"{stem}iz{tail}"}
    # Letter/digit boundaries: "s400" and "s 400" are the same designation.
    split = _ALNUM_SPLIT_RE.sub(" ", token)
    if split != token:
        out.add(split)
    return out


def pattern_keys(pattern: str) -> list[str]:
    """All automaton keys for ``pattern``: spelling, joining and splitting variants.

    A key is the normalised token string with a leading space and, unless the pattern is a
    prefix (``word*``), a trailing space, so that it only matches whole tokens.
    """
    tokens, prefix = pattern_tokens(pattern)
    if not tokens:
        return []
    per_token = [sorted(_token_variants(t)) for t in tokens]
    phrases: set[str] = set()
    for combo in itertools.product(*per_token):
        phrases.add(" ".join(combo))
    # Closed compounds written as one word or two: "counter terrorism" / "counterterrorism".
    for phrase in list(phrases):
        padded = f" {phrase} "
        for group in _COMPOUND_CLASSES:
            for member in group:
                if f" {member} " in padded:
                    for other in group - {member}:
                        phrases.add(padded.replace(f" {member} ", f" {other} ").strip())
    # Adjacent letter+digit tokens may be written joined: "s 400" -> "s400", "pac 3" -> "pac3".
    for phrase in list(phrases):
        parts = phrase.split(" ")
        joins = [
            i
            for i in range(len(parts) - 1)
            if parts[i]
            and parts[i + 1]
            and (parts[i][-1].isdigit() != parts[i + 1][0].isdigit())
            and len(parts[i]) <= 4
            and len(parts[i + 1]) <= 4
        ]
        for r in range(1, len(joins) + 1):
            for chosen in itertools.combinations(joins, r):
                buf = parts[0]
                for i in range(1, len(parts)):
                    buf += ("" if (i - 1) in chosen else " ") + parts[i]
                phrases.add(buf)
    # A designation's plural is its designation: "S-400s", "F-35s", "PAC-3s" (text folds
    # "S-400s" to "s 400s", whose last token no designation key would otherwise match).
    if not prefix:
        phrases |= {phrase + "s" for phrase in phrases if phrase[-1].isdigit()}
    # Punctuation inside the pattern ("David's Sling", "Workers' Party") folds to runs of
    # spaces in text just as in the pattern itself: match that spelling too.
    raw = fold(pattern.rstrip().rstrip("*")).strip()
    if "  " in raw:
        phrases.add(raw)
    return [" " + p + ("" if prefix else " ") for p in sorted(phrases)]


@dataclass(frozen=True, slots=True)
class Hit:
    """One occurrence of an atom: normalised and original spans, word index."""

    atom: int
    start: int  # original text offsets, end exclusive
    end: int
    word: int  # index of the first token


class PatternMatcher:
    """Compiles atoms (distinct normalised patterns) into one automaton and scans texts."""

    def __init__(self) -> None:
        self._atoms: dict[tuple[str, bool], int] = {}
        self.atom_labels: list[str] = []
        self._keys: dict[str, set[int]] = {}
        self._automaton: ahocorasick_rs.AhoCorasick | None = None
        #: Per key index of the automaton: (whole-word key?, atoms it stands for).
        self.values: list[tuple[bool, tuple[int, ...]]] = []

    def add(self, pattern: str) -> int:
        """Register ``pattern`` and return its atom id (the same id for equivalent patterns)."""
        tokens, prefix = pattern_tokens(pattern)
        if not tokens:
            raise ValueError(f"pattern {pattern!r} has no letters or digits")
        canon = (" ".join(_canonical_token(t) for t in tokens), prefix)
        atom = self._atoms.get(canon)
        if atom is not None:
            return atom
        atom = len(self.atom_labels)
        self._atoms[canon] = atom
        self.atom_labels.append(canon[0] + ("*" if prefix else ""))
        for key in pattern_keys(pattern):
            self._keys.setdefault(key, set()).add(atom)
        self._automaton = None
        return atom

    @property
    def size(self) -> int:
        return len(self._keys)

    def compile(self) -> None:
        keys = list(self._keys)
        self.values = [(key.endswith(" "), tuple(sorted(self._keys[key]))) for key in keys]
        # The contiguous NFA, not the DFA: in a tight loop the DFA scans faster, but inside
        # a classifier that does other work between scans its much larger tables fall out
        # of the CPU cache, and it came out slower (15-26 vs 14-17 us per article).
        self._automaton = ahocorasick_rs.AhoCorasick(
            keys, implementation=ahocorasick_rs.Implementation.ContiguousNFA
        )

    def find(self, ntext: str) -> list[tuple[int, int, int]]:
        """Every match in normalised text, overlaps included: (key index, start, end).

        ``start`` is the key's leading space, ``end`` is exclusive (after the trailing
        space of a whole-word key); :attr:`values` tells what each key index stands for.
        """
        if self._automaton is None:
            self.compile()
        assert self._automaton is not None
        if not self._keys:
            return []
        return self._automaton.find_matches_as_indexes(ntext, overlapping=True)

    def scan(self, text: str) -> tuple[NormalisedText, list[Hit]]:
        """All atom hits in ``text``, in order of their end position."""
        norm = normalise(text)
        ntext = norm.text
        hits: list[Hit] = []
        found = self.find(ntext)
        values = self.values
        for idx, kstart, kend in found:
            whole, atoms = values[idx]
            nstart = kstart + 1  # first character of the first token
            nend = kend - 1 if whole else ntext.find(" ", kend)  # exclusive
            start = norm.original_offset(nstart)
            end = norm.original_offset(nend - 1) + 1
            word = norm.word_index(nstart)
            for atom in atoms:
                hits.append(Hit(atom, start, end, word))
        return norm, hits
