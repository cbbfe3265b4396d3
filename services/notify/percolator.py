"""Match one article against many stored subscriptions without testing each one.

Elasticsearch's percolator and Lucene Monitor invert the usual search: the queries are stored
and indexed, and each document is a query against them. A *presearcher* picks, from an index
of the stored queries' terms, the few queries a document could possibly match; only those
candidates are evaluated for real. This module does the same for subscriptions:

* Every subscription describes what a matching article must contain as a conjunction of
  clauses (:meth:`Subscription.presearch_clauses`): "one of these topics", "one of these
  entities", "one of these sources", "this language", and the query's required words (a
  phrase requires each of its words, ``a OR b`` requires one of ``a``/``b``, ``NOT`` requires
  nothing).
* Like Lucene Monitor's multipass presearcher, a subscription is indexed under its two most
  selective clauses: the first as the outer key, the second as an inner key. An article
  reaches a subscription only if it offers a key of both clauses, found with two C-speed set
  intersections (the article's keys against the outer keys, then against each hit's inner
  keys). With single-clause subscriptions the inner key is empty; subscriptions with no
  clause at all (e.g. only ``min_score``, or a purely negative query) are always candidates.
* Candidates are then checked with the exact filter, :meth:`Subscription.matches`, so the
  result is identical to testing every subscription (a property test compares them).

Selectivity is guessed per clause (:func:`services.notify.query.clause_probability`: topics
and entities are fairly specific, long words are rarer than short ones, stop words and
one-letter tokens are nearly certain), because the index has to be built before any article
statistics exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import product

from prometheus_client import CollectorRegistry, Counter

from services.common.models import ClassifiedArticle
from services.notify.query import clause_probability
from services.notify.subscriptions import (
    ENTITY_KEY,
    LANGUAGE_KEY,
    SOURCE_KEY,
    TOPIC_KEY,
    PreparedArticle,
    Subscription,
)

#: An inner (second-clause) index is skipped when it would need more than this many
#: (outer, inner) key pairs for one subscription; the first clause alone is still exact.
MAX_KEY_PAIRS = 64

#: Prior chance that an article carries one given key of these namespaces. Topics: a handful
#: per article out of a taxonomy of dozens; languages: most articles share one or two.
_NAMESPACE_PROBABILITY = {TOPIC_KEY: 0.08, ENTITY_KEY: 0.02, SOURCE_KEY: 0.02, LANGUAGE_KEY: 0.6}

_NO_INNER = ""  # inner key of subscriptions indexed by one clause only


def key_probability(clause: frozenset[str]) -> float:
    """Estimated chance that an article offers at least one key of ``clause``."""
    words = [k for k in clause if ":" not in k]
    total = clause_probability(words) if words else 0.0
    for key in clause:
        if ":" in key:
            total += _NAMESPACE_PROBABILITY.get(key[:2], 0.1)
    return min(1.0, total)


@dataclass(slots=True)
class _Placement:
    """Where one subscription sits in the index, so removal touches only its own entries."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    always: bool = False


def placement_for(subscription: Subscription) -> _Placement:
    clauses = sorted(
        subscription.presearch_clauses(), key=lambda c: (key_probability(c), sorted(c))
    )
    if not clauses:
        return _Placement(always=True)
    outer = sorted(clauses[0])
    if len(clauses) > 1 and len(clauses[0]) * len(clauses[1]) <= MAX_KEY_PAIRS:
        return _Placement(pairs=list(product(outer, sorted(clauses[1]))))
    return _Placement(pairs=[(key, _NO_INNER) for key in outer])


class Percolator:
    """An in-memory index of subscriptions; ``match`` equals testing every one of them.

    Not thread-safe: the notify service owns one per process and updates it from its event
    loop (subscription changes from Redis), between articles.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._subs: dict[str, Subscription] = {}
        self._placements: dict[str, _Placement] = {}
        self._index: dict[str, dict[str, set[str]]] = {}
        self._always: set[str] = set()
        self._candidates_total: Counter | None = None
        self._matches_total: Counter | None = None
        if registry is not None:
            self._candidates_total = Counter(
                "topicwatch_notify_percolator_candidates_total",
                "Subscriptions checked in full after the presearch.",
                registry=registry,
            )
            self._matches_total = Counter(
                "topicwatch_notify_percolator_matches_total",
                "Subscriptions that matched an article.",
                registry=registry,
            )

    # -- maintenance -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._subs)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._subs

    def get(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())

    def add(self, subscription: Subscription) -> None:
        """Index a subscription (replacing any with the same id)."""
        if subscription.id in self._subs:
            self.remove(subscription.id)
        placement = placement_for(subscription)
        self._subs[subscription.id] = subscription
        self._placements[subscription.id] = placement
        if placement.always:
            self._always.add(subscription.id)
        for outer, inner in placement.pairs:
            self._index.setdefault(outer, {}).setdefault(inner, set()).add(subscription.id)

    update = add

    def remove(self, subscription_id: str) -> bool:
        """Forget a subscription; False if it was not indexed."""
        if self._subs.pop(subscription_id, None) is None:
            return False
        placement = self._placements.pop(subscription_id)
        self._always.discard(subscription_id)
        for outer, inner in placement.pairs:
            inners = self._index[outer]
            ids = inners[inner]
            ids.discard(subscription_id)
            if not ids:
                del inners[inner]
                if not inners:
                    del self._index[outer]
        return True

    def rebuild(self, subscriptions: Iterable[Subscription]) -> None:
        """Replace the whole index (e.g. after loading every subscription from Redis)."""
        fresh = Percolator()
        for subscription in subscriptions:
            fresh.add(subscription)
        self._subs, self._placements = fresh._subs, fresh._placements
        self._index, self._always = fresh._index, fresh._always

    # -- matching --------------------------------------------------------------------------

    def candidates(self, article: PreparedArticle) -> set[str]:
        """Ids of the subscriptions the presearch cannot rule out (a superset of the matches)."""
        keys = article.keys
        found = set(self._always)
        index = self._index
        for outer in keys & index.keys():
            inners = index[outer]
            alone = inners.get(_NO_INNER)
            if alone:
                found |= alone
            if len(inners) > (1 if alone else 0):
                for inner in inners.keys() & keys:
                    found |= inners[inner]
        return found

    def match(self, article: ClassifiedArticle | PreparedArticle) -> list[Subscription]:
        """Subscriptions whose every filter the article passes, ordered by id."""
        if isinstance(article, ClassifiedArticle):
            article = PreparedArticle.from_classified(article)
        subs = self._subs
        found = self.candidates(article)
        matched = [subs[i] for i in sorted(found) if subs[i].matches(article)]
        if self._candidates_total is not None and self._matches_total is not None:
            self._candidates_total.inc(len(found))
            self._matches_total.inc(len(matched))
        return matched

    def brute_force(self, article: ClassifiedArticle | PreparedArticle) -> list[Subscription]:
        """Every subscription tested in full: the reference ``match`` must equal."""
        if isinstance(article, ClassifiedArticle):
            article = PreparedArticle.from_classified(article)
        return [s for _, s in sorted(self._subs.items()) if s.matches(article)]
