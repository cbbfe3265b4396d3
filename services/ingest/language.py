"""Language of an article: the producer's word when given, py3langid's guess otherwise.

Subscriptions and the classifier's rules are language-specific, so an article without a
language would match rules written for the wrong one.  py3langid is a small, dependency-light
n-gram model (langid.py's) that needs no download; it is loaded once per process, lazily,
because loading costs about a second.

Detection was most of ingest's CPU per text article (0.4 ms of 0.8), so :class:`FastLangid`
asks py3langid's model the same question faster, with the same answer:

* the byte n-gram walk.  py3langid walks its tokenizer automaton (an Aho-Corasick DFA over
  n-grams of up to six bytes) one byte at a time in Python.  The state after each byte is the
  longest suffix of the text so far that is a node of the n-gram trie, so it can be found for
  all positions at once: windows of length L that are trie nodes are those of length L-1
  that were, extended by a goto edge (a transition that goes one level deeper), six numpy
  steps in all.  The feature counts come out in the order py3langid's ``Counter`` has them.
* the score.  py3langid multiplies the counts with the rows of its float16 table, which numpy
  first converts element by element (most of the cost); the conversion here goes through a
  65,536-entry table of every float16's float32 value, which gives the same numbers.

The result is bit-identical to py3langid's ``classify`` (tests/test_ingest_fastpaths.py checks
it on every corpus the project has and on generated text); when loading, the walk is checked
against py3langid's own on a sample, and a model for which it would differ (a future
py3langid) is run the library's way.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

#: Below this many letters a guess is noise ("OK", a headline of acronyms).
MIN_LETTERS = 20
#: Below this normalised probability we prefer "unknown" to a wrong language.
MIN_CONFIDENCE = 0.5
#: Enough text for a stable guess; more only costs time.
SAMPLE_CHARS = 1_000

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_lock = threading.Lock()
_identifier: FastLangid | None = None

#: Checked against py3langid's own walk when the model loads (several scripts, odd bytes).
_SELF_CHECK = (
    "The ministry said on Tuesday that the S-400 batteries had arrived. "
    "Россия и Турция подписали контракт. Die Regierung erklärte am Montag, "
    "l'armée française a reçu 12 canons — 中文 日本語 \t\u00a0 ÉTÉ!"
)


class InvalidLanguage(ValueError):
    """The given language is not a BCP 47-style tag."""


def normalize_language_tag(tag: str) -> str:
    """``"EN"`` -> ``"en"``, ``"en_gb"`` -> ``"en-GB"``; raises ``InvalidLanguage`` for junk."""
    text = tag.strip().replace("_", "-")
    if not _TAG.match(text):
        raise InvalidLanguage(f"{tag!r} is not a language tag such as 'en' or 'pt-BR'")
    primary, *rest = text.split("-")
    parts = [primary.lower()]
    for part in rest:
        parts.append(part.upper() if len(part) == 2 else part.lower())
    return "-".join(parts)


class FastLangid:
    """py3langid's ``LanguageIdentifier.classify`` (normalised probabilities), for many texts
    at once: numpy's per-call cost is paid once per batch rather than once per article."""

    def __init__(self, identifier: Any) -> None:
        self.identifier = identifier
        self.classes: list[str] = list(identifier.nb_classes)
        self.alias_pairs: list[tuple[int, int]] = list(identifier._alias_pairs)
        self.table_bits = np.asarray(identifier.nb_ptc).view(np.uint16)
        self.prior = np.asarray(identifier.nb_pc, dtype=np.float32)
        # float16 bit pattern -> its float32 value (exact: every float16 is a float32)
        self.half_to_single = (
            np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        )
        self.nextmove = np.frombuffer(identifier.tk_nextmove, dtype=_uint(identifier.tk_nextmove))
        self.rowbase = np.asarray(identifier._rowbase, dtype=np.int64)
        self.output = np.asarray(identifier.tk_output, dtype=np.int64)
        self.depth = self._depths()
        self.max_depth = int(self.depth.max())
        self.vectorised = self._walk_matches_library()
        if not self.vectorised:
            log.warning("py3langid's model does not match the vectorised walk; using its own")

    def _depths(self) -> npt.NDArray[np.int8]:
        """Each DFA state's trie depth (its n-gram's length), by breadth-first search."""
        depth = np.full(len(self.rowbase), -1, dtype=np.int8)
        depth[0] = 0
        frontier = np.zeros(1, dtype=np.int64)
        columns = np.arange(256, dtype=np.int64)
        level = 0
        while len(frontier):
            reached = self.nextmove[(self.rowbase[frontier][:, None] + columns).ravel()]
            level += 1
            depth[reached[depth[reached] < 0]] = level
            frontier = np.flatnonzero(depth == level)
        return depth

    def _walk_matches_library(self) -> bool:
        """Does the vectorised walk count what py3langid's own does, on a mixed sample?"""
        from py3langid.langid import visit_counts

        ident = self.identifier
        samples = [ident._encode(_SELF_CHECK), b"", ident._encode(_SELF_CHECK[::-1])]
        wanted = [
            list(
                (visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, d) or {}).items()
            )
            for d in samples
        ]
        _, starts, features, counts = self._counts(samples)
        got = [
            list(zip(features[a:b].tolist(), counts[a:b].tolist(), strict=True))
            for a, b in itertools.pairwise(starts.tolist())
        ]
        return got == wanted

    def _features(
        self, samples: list[bytes]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The feature seen after each byte of each sample (py3langid's walk), and the sample
        it belongs to, for all positions at once."""
        lengths = np.fromiter(map(len, samples), dtype=np.int64, count=len(samples))
        text = np.frombuffer(b"".join(samples), dtype=np.uint8).astype(np.int64)
        owner = np.repeat(np.arange(len(samples), dtype=np.int64), lengths)
        state = self.nextmove[self.rowbase[0] + text].astype(np.int64)  # one-byte n-grams
        longest = state.copy()
        at = np.arange(len(text), dtype=np.int64)
        for level in range(2, self.max_depth + 1):
            following = at + 1
            inside = following < len(text)
            inside[inside] &= owner[following[inside]] == owner[at[inside]]  # same sample
            state, at = state[inside], following[inside]
            step = self.nextmove[self.rowbase[state] + text[at]].astype(np.int64)
            deeper = self.depth[step] == level  # a goto edge: the n-gram grew by this byte
            state, at = step[deeper], at[deeper]
            if not len(state):
                break
            longest[at] = state
        features = self.output[longest]
        found = features >= 0
        return features[found], owner[found]

    def _counts(
        self, samples: list[bytes]
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
    ]:
        """Per sample, its distinct features and their counts in order of first sight (as
        py3langid's ``Counter`` has them): sample ids, where each sample's run starts (one
        more than there are samples), features, counts."""
        features, owner = self._features(samples)
        if not len(features):
            none = np.zeros(0, dtype=np.int64)
            return none, np.zeros(len(samples) + 1, dtype=np.int64), none, none
        # One sort of (sample, feature, position) packed in an int64 groups each sample's
        # features with their positions ascending: a group's first entry is its first sight.
        shift = max(len(features), 1).bit_length()
        keys = ((owner * len(self.output) + features) << shift) | np.arange(len(features))
        keys.sort()
        group = keys >> shift
        starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        counts = np.diff(np.append(starts, len(keys)))
        first = keys[starts] & ((1 << shift) - 1)
        # Samples in turn, features by first sight: order by first position, which are
        # distinct positions, so placing each at its position sorts them without a sort.
        at_position = np.full(len(keys), -1, dtype=np.int64)
        at_position[first] = np.arange(len(first))
        order = at_position[at_position >= 0]
        distinct, counts = group[starts][order], counts[order]
        sample = distinct // len(self.output)
        bounds = np.searchsorted(sample, np.arange(len(samples) + 1))
        return sample, bounds, distinct % len(self.output), counts

    def classify_many(self, texts: list[str]) -> list[tuple[str, float]]:
        """(language, normalised probability) of each text, as py3langid's ``classify``."""
        if len(texts) < 2:
            return [self.classify(text) for text in texts]
        if not self.vectorised:
            return [
                (str(language), float(confidence))
                for language, confidence in map(self.identifier.classify, texts)
            ]
        samples = [self.identifier._encode(text) for text in texts]
        _, starts, features, counts = self._counts(samples)
        weights = np.log1p(counts.astype(np.float32))
        # Each distinct feature's float32 row once for the whole batch (marked, not sorted).
        used = np.zeros(len(self.table_bits), dtype=np.bool_)
        used[features] = True
        needed = np.flatnonzero(used)
        where = (np.cumsum(used) - 1)[features]
        rows = self.half_to_single[self.table_bits[needed]]
        scores = np.zeros((len(samples), len(self.classes)), dtype=np.float32)
        bounds = starts.tolist()
        for i in range(len(samples)):
            a, b = bounds[i], bounds[i + 1]
            if b > a:  # a product per sample, in py3langid's order: the same rounding
                scores[i] = weights[a:b] @ rows[where[a:b]] + self.prior
        lengths = np.fromiter(map(len, samples), dtype=np.float64, count=len(samples))
        for i, length in enumerate(lengths.tolist()):
            scores[i] *= 1.0 / math.sqrt(length or 1)
        np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        for i, j in self.alias_pairs:
            scores[:, i] += scores[:, j]
            scores[:, j] = 0.0
        best = scores.argmax(axis=1)
        confidence = scores[np.arange(len(samples)), best]
        return [
            (self.classes[b], c) for b, c in zip(best.tolist(), confidence.tolist(), strict=True)
        ]

    def classify(self, text: str) -> tuple[str, float]:
        """(language, normalised probability), exactly as py3langid's ``classify`` answers.

        For one text numpy's per-call cost outweighs the vectorised walk, so this walks the
        way py3langid does and only scores through the lookup table.
        """
        if not self.vectorised:
            language, confidence = self.identifier.classify(text)
            return str(language), float(confidence)
        from py3langid.langid import visit_counts

        ident = self.identifier
        data = ident._encode(text)
        visits = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, data) or {}
        features = np.fromiter(visits.keys(), dtype=np.int64, count=len(visits))
        counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
        if len(features):
            rows = self.half_to_single[self.table_bits[features]]
            scores = np.log1p(counts) @ rows + self.prior
        else:
            scores = np.zeros(len(self.classes), dtype=np.float32)
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for i, j in self.alias_pairs:
            scores[i] += scores[j]
            scores[j] = 0.0
        best = int(scores.argmax())
        return self.classes[best], float(scores[best])


def _uint(values: Any) -> np.dtype[Any]:
    """The numpy type of a stdlib ``array`` of unsigned integers (py3langid's DFA table)."""
    return np.dtype(f"u{values.itemsize}")


def get_identifier() -> FastLangid:
    """The process's identifier, loaded on first use (about a second)."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                _identifier = FastLangid(model)
    return _identifier


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``'s language, or ``None`` when too short or too unsure."""
    return detect_languages([text])[0]


def detect_languages(texts: list[str]) -> list[str | None]:
    """``detect_language`` of each text, the model run once over all of them (cheaper)."""
    samples = [text[:SAMPLE_CHARS] for text in texts]
    asked = [i for i, sample in enumerate(samples) if _enough_letters(sample)]
    found: list[str | None] = [None] * len(texts)
    answers = get_identifier().classify_many([samples[i] for i in asked]) if asked else []
    for i, (language, confidence) in zip(asked, answers, strict=True):
        if confidence >= MIN_CONFIDENCE:
            found[i] = language
    return found


def _enough_letters(sample: str) -> bool:
    letters = islice(filter(str.isalpha, sample), MIN_LETTERS)  # stops once there are enough
    return sum(1 for _ in letters) >= MIN_LETTERS
