"""Language of an article: the producer's word when given, py3langid's guess otherwise.

Subscriptions and the classifier's rules are language-specific, so an article without a
language would match rules written for the wrong one.  py3langid is a small, dependency-light
n-gram model (langid.py's) that needs no download; it is loaded once per process, lazily,
because loading costs about a second.
"""

from __future__ import annotations

import re
import threading
from itertools import islice
from typing import Any

#: Below this many letters a guess is noise ("OK", a headline of acronyms).
MIN_LETTERS = 20
#: Below this normalised probability we prefer "unknown" to a wrong language.
MIN_CONFIDENCE = 0.5
#: Enough text for a stable guess; more only costs time.
SAMPLE_CHARS = 1_000

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_lock = threading.Lock()
_identifier: Any = None


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


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``'s language, or ``None`` when too short or too unsure."""
    sample = text[:SAMPLE_CHARS]
    letters = islice(filter(str.isalpha, sample), MIN_LETTERS)  # stops once there are enough
    if sum(1 for _ in letters) < MIN_LETTERS:
        return None
    language, confidence = _get_identifier().classify(sample)
    if float(confidence) < MIN_CONFIDENCE:
        return None
    return str(language)
