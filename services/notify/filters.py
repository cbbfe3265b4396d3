"""A subscription's filters compiled for matching, and an article prepared for them.

The subscription model (``subscriptions.py``) is what the API reads and writes; this is what
the percolator checks for every candidate of every article, so it is plain, cached and fast:
:class:`CompiledFilter` (identical filters share one instance), :class:`PreparedArticle` (an
article's keys computed once) and the presearch key namespaces both sides agree on.  It reads
a subscription only through :class:`FilterFields`, so it does not depend on the API models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

from services.common.models import ClassifiedArticle, Entity
from services.notify.query import Document, Query, keyset, parse, tokenize

#: Presearch key namespaces. Query words are used bare: tokens are letters and digits only,
#: so they can never collide with a key containing ":".
TOPIC_KEY = "t:"
ENTITY_KEY = "e:"
SOURCE_KEY = "s:"
LANGUAGE_KEY = "l:"
MIN_SCORE_KEY = "m:"  # + tenth of the article's best topic score; "t<tenth>:<topic>" per topic


# --- normalisation shared by filters and articles ------------------------------------------------


def normalise_name(value: str) -> str:
    """Entity and source names compared as their tokens: "S-400" == "s 400" == "S 400"."""
    return " ".join(tokenize(value))


#: A hyphen or slash inside a word ("S-400", "SAMP/T"): designations are also written solid.
_INNER_JOINER = re.compile(r"(?<=[^\W_])[-/\u2010-\u2014](?=[^\W_])")


def entity_names(entity: Entity) -> frozenset[str]:
    """Every normalised name an article's entity answers to.

    Its name and its id, the id also without the classifier's ``kind:`` prefix (the
    classifier says ``system:s-400`` and ``country:TR``; a subscriber writes ``S-400`` or
    ``{"kind": "country", "id": "TR"}``), each also with hyphenated words written solid, so
    ``S400`` finds "S-400" as the query language does.
    """
    return _entity_names(entity.kind, entity.id, entity.name)


@lru_cache(maxsize=65_536)  # the same entities (countries, NATO, S-400) recur in most articles
def _entity_names(kind: str, ident: str, name: str) -> frozenset[str]:
    values = {ident, name}
    if ident.startswith(f"{kind}:"):
        values.add(ident[len(kind) + 1 :])
    values |= {_INNER_JOINER.sub("", v) for v in values if _INNER_JOINER.search(v)}
    return frozenset(n for v in values if (n := normalise_name(v)))


def language_code(value: str | None) -> str | None:
    """Primary language subtag, lower case: ``en-GB`` -> ``en``."""
    if not value:
        return None
    return re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower() or None


def host_keys(url: str | None) -> list[str]:
    """The URL's host without ``www.`` and each parent domain, so a filter on a domain matches
    its subdomains (``uk.reuters.com`` -> ``uk.reuters.com``, ``reuters.com``)."""
    if not url:
        return []
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return []
    if host.startswith("www."):
        host = host[4:]
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] if len(labels) > 1 else [host]


def source_filter_key(value: str) -> str:
    value = value.strip().lower()
    if "/" in value or ("." in value and " " not in value):  # a domain or URL
        keys = host_keys(value if "//" in value else "http://" + value)
        if keys:
            return keys[0]
    return normalise_name(value)


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


class FilterFields(Protocol):
    """The filter fields of a subscription (or of a create request)."""

    @property
    def topics(self) -> Sequence[str]: ...
    @property
    def min_score(self) -> float | None: ...
    @property
    def languages(self) -> Sequence[str]: ...
    @property
    def sources(self) -> Sequence[str]: ...
    @property
    def entities(self) -> Sequence[_Keyed]: ...
    @property
    def entities_match(self) -> str: ...
    @property
    def query(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A subscription's filters in plain, fast-to-read form (no pydantic attribute machinery).

    Identical filters share one instance (:meth:`of` is cached), and so one percolator group.
    """

    disabled: bool
    topics: frozenset[str]
    min_score: float | None
    languages: frozenset[str]
    source_keys: frozenset[str]
    entity_keys: tuple[str, ...]
    entities_all: bool
    query: Query | None

    def presearch_clauses(self) -> list[frozenset[str]]:
        """Key sets an article must hit (one key of each) to possibly match; see percolator.

        Over-approximates :meth:`matches` and never under-approximates it.
        """
        f = self  # short name: the body reads each filter in turn
        clauses: list[frozenset[str]] = []
        if f.topics and f.min_score is not None:
            bucket = score_bucket(f.min_score)
            clauses.append(keyset(f"t{bucket}:{t}" for t in f.topics))
        elif f.topics:
            clauses.append(keyset(TOPIC_KEY + t for t in f.topics))
        elif f.min_score is not None:
            clauses.append(keyset((f"{MIN_SCORE_KEY}{score_bucket(f.min_score)}",)))
        if f.entity_keys:
            keys = [ENTITY_KEY + k for k in f.entity_keys]
            if f.entities_all:
                clauses.extend(keyset((k,)) for k in keys)
            else:
                clauses.append(keyset(keys))
        if f.source_keys:
            clauses.append(keyset(SOURCE_KEY + k for k in f.source_keys))
        if f.languages:
            clauses.append(keyset(LANGUAGE_KEY + code for code in f.languages))
        if f.query is not None:
            clauses.extend(f.query.clauses)
        return clauses

    def key_form(
        self,
    ) -> tuple[
        tuple[frozenset[str], ...], frozenset[str], Callable[[PreparedArticle], bool] | None
    ]:
        """The filter as ``(clauses, absent, rest)`` over the article's keys.

        It matches exactly when the article holds a key of every clause, none of the
        ``absent`` keys, and ``rest`` (None: nothing more) accepts it. Plain filters and flat
        queries (:func:`services.notify.query.flat_form`) are all clauses and absent keys;
        what keys cannot say exactly goes to ``rest``: score floors (their keys are tenths)
        and queries with nesting or long phrases (their clauses are then only a necessary
        condition, and ``rest`` runs the compiled query).
        """
        clauses = self.presearch_clauses()
        absent: frozenset[str] = keyset()
        rests: list[Callable[[PreparedArticle], bool]] = []
        topics, floor = self.topics, self.min_score
        if floor is not None and topics:
            rests.append(lambda a: any(a.topic_scores.get(t, -1.0) >= floor for t in topics))
        elif floor is not None:
            rests.append(lambda a: bool(a.topic_scores) and a.max_score >= floor)
        if self.query is not None:
            if self.query.flat is not None:
                absent = self.query.flat[1]
            else:
                rests.append(self.query.matcher)
        rest: Callable[[PreparedArticle], bool] | None = None
        if len(rests) == 1:
            rest = rests[0]
        elif rests:
            first, second = rests
            rest = lambda a: first(a) and second(a)  # noqa: E731
        return tuple(clauses), absent, rest

    @property
    def key(self) -> FilterKey:
        """Identity of the filter: subscriptions with equal keys match the same articles."""
        return (
            self.disabled,
            tuple(sorted(self.topics)),
            self.min_score,
            tuple(sorted(self.languages)),
            tuple(sorted(self.source_keys)),
            self.entity_keys,
            self.entities_all,
            self.query.text if self.query else None,
        )

    @classmethod
    def of(cls, sub: FilterFields) -> CompiledFilter:
        """The compiled filter of ``sub``; identical filters share one (cached) instance."""
        return _compile_filter(
            (
                bool(getattr(sub, "disabled", False)),
                tuple(sorted(set(sub.topics))),
                sub.min_score,
                tuple(sorted(set(sub.languages))),
                tuple(sorted({source_filter_key(s) for s in sub.sources})),
                tuple(dict.fromkeys(e.key for e in sub.entities)),
                sub.entities_match == "all",
                sub.query or None,
            )
        )

    def matches(self, article: PreparedArticle) -> bool:
        """Every filter, in order of cost: the reference the percolator's fast path must equal.

        Written directly from the filters' meaning, independently of the key encoding the
        percolator uses, so that comparing the two (a property test) checks something.
        """
        if self.disabled:
            return False
        scores = article.topic_scores
        floor = self.min_score
        if self.topics:
            if floor is None:
                if self.topics.isdisjoint(scores):
                    return False
            elif not any(scores.get(t, -1.0) >= floor for t in self.topics):
                return False
        elif floor is not None and (not scores or article.max_score < floor):
            return False
        if self.languages and article.language not in self.languages:
            return False
        if self.source_keys and self.source_keys.isdisjoint(article.source_keys):
            return False
        if self.entity_keys:
            keys = article.entity_keys
            if self.entities_all:
                if not all(k in keys for k in self.entity_keys):
                    return False
            elif not any(k in keys for k in self.entity_keys):
                return False
        return self.query is None or self.query.matches(article.doc)


#: (disabled, topics, min_score, languages, source keys, entity keys, all entities?, query)
FilterKey = tuple[
    bool,
    tuple[str, ...],
    float | None,
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    bool,
    str | None,
]


@lru_cache(maxsize=200_000)
def _compile_filter(key: FilterKey) -> CompiledFilter:
    disabled, topics, min_score, languages, sources, entities, entities_all, query = key
    compiled = CompiledFilter(
        disabled=disabled,
        topics=keyset(topics),
        min_score=min_score,
        languages=keyset(languages),
        source_keys=keyset(sources),
        entity_keys=entities,
        entities_all=entities_all,
        query=parse(query) if query else None,
    )
    return compiled


def score_bucket(score: float) -> int:
    """Tenths of a score, 0..10: presearch keys for ``min_score`` (monotonic in the score)."""
    return min(10, max(0, int(score * 10)))


@dataclass(frozen=True, slots=True)
class PreparedArticle:
    """A classified article in the shape filters need, computed once per article.

    ``keys`` is every presearch key the article offers: its tokens and adjacent token pairs
    (bare), and its namespaced topics (also per score tenth, for ``min_score``), entities,
    sources and language.
    """

    article: ClassifiedArticle
    doc: Document
    terms: frozenset[str]
    joined: str
    topic_scores: dict[str, float]
    max_score: float
    entity_keys: frozenset[str]
    source_keys: frozenset[str]
    language: str | None
    keys: frozenset[str]

    @classmethod
    def from_classified(cls, classified: ClassifiedArticle) -> PreparedArticle:
        art = classified.article
        scores: dict[str, float] = {}
        for tag in classified.topics:
            scores[tag.id] = max(tag.score, scores.get(tag.id, 0.0))
        entity_keys: set[str] = set()
        for entity in classified.entities:
            for name in entity_names(entity):
                entity_keys.add(name)
                entity_keys.add(f"{entity.kind}:{name}")
        source_keys = set(host_keys(art.canonical_url or art.url))
        if art.url and art.canonical_url and art.url != art.canonical_url:
            source_keys.update(host_keys(art.url))
        if art.source:
            source_keys.add(source_filter_key(art.source))
            source_keys.add(normalise_name(art.source))
        source_keys.discard("")
        language = language_code(art.language)
        extra = [TOPIC_KEY + t for t in scores]
        for topic, score in scores.items():
            extra += [f"t{b}:{topic}" for b in range(score_bucket(score) + 1)]
        top = score_bucket(max(scores.values(), default=0.0))
        extra += [f"{MIN_SCORE_KEY}{b}" for b in range(top + 1)] if scores else []
        extra += [ENTITY_KEY + k for k in entity_keys]
        extra += [SOURCE_KEY + k for k in source_keys]
        if language:
            extra.append(LANGUAGE_KEY + language)
        # One set for the query words and the presearch keys (namespaced keys hold ":",
        # which no token does, so queries cannot see them): built once, never copied.
        doc = Document.from_text(art.title, art.body, extra)
        return cls(
            article=classified,
            doc=doc,
            terms=doc.terms,
            joined=doc.joined,
            topic_scores=scores,
            max_score=max(scores.values(), default=0.0),
            entity_keys=frozenset(entity_keys),
            source_keys=frozenset(source_keys),
            language=language,
            keys=doc.terms,
        )
