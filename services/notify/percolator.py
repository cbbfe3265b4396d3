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
from sys import intern

from prometheus_client import CollectorRegistry, Counter

from services.common.models import ClassifiedArticle
from services.notify.query import clause_probability
from services.notify.subscriptions import (
    ENTITY_KEY,
    LANGUAGE_KEY,
    MIN_SCORE_KEY,
    SOURCE_KEY,
    TOPIC_KEY,
    CompiledFilter,
    FilterKey,
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
        if ":" not in key:
            continue
        namespace, _, _ = key.partition(":")
        if namespace[1:].isdigit():  # "t7:<topic>": a topic at score >= 0.7
            total += _NAMESPACE_PROBABILITY[TOPIC_KEY] * (1.1 - int(namespace[1:]) / 10)
        elif namespace + ":" == MIN_SCORE_KEY:
            total += 0.6 * (1.1 - int(key[2:]) / 10)
        else:
            total += _NAMESPACE_PROBABILITY.get(namespace + ":", 0.1)
    return min(1.0, total)


@dataclass(slots=True)
class _Placement:
    """Where one subscription sits in the index, so removal touches only its own entries."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    always: bool = False
    #: Every clause is indexed and the clauses are the filter: a candidate is a match.
    exact: bool = False


def placement_for(subscription: Subscription | CompiledFilter) -> _Placement:
    """The index keys of a subscription: pairs from its two most selective clauses."""
    compiled = subscription.compiled if isinstance(subscription, Subscription) else subscription
    if compiled.disabled:
        return _Placement()  # matches nothing: not indexed at all
    clauses = sorted(compiled.presearch_clauses(), key=lambda c: (key_probability(c), sorted(c)))
    if not clauses:
        return _Placement(always=True)
    outer = sorted(map(intern, clauses[0]))
    exact = compiled.exact_clauses and len(clauses) <= 2
    if len(clauses) > 1 and len(clauses[0]) * len(clauses[1]) <= MAX_KEY_PAIRS:
        inner = sorted(map(intern, clauses[1]))
        return _Placement(pairs=list(product(outer, inner)), exact=exact)
    return _Placement(pairs=[(key, _NO_INNER) for key in outer], exact=exact and len(clauses) == 1)


class _Group:
    """The subscriptions that share one filter (many people subscribe to "S-400").

    The index holds groups, not subscriptions, so an identical filter is presearched and
    checked once per article whatever the number of its subscribers. Groups hash by
    identity: no string hashing or dict lookup per candidate, which with 100,000 stored
    queries is mostly cache misses.
    """

    __slots__ = ("check", "filter", "key", "matched", "members", "placement")

    def __init__(self, compiled: CompiledFilter) -> None:
        self.filter = compiled
        self.key = compiled.key
        self.placement = placement_for(compiled)
        # An exact placement needs no check: being a candidate is matching.
        self.check = _always if self.placement.exact else compiled.check
        self.members: dict[str, Subscription] = {}
        self.matched: list[Subscription] = []  # members' values, kept as a list to extend


class Percolator:
    """An in-memory index of subscriptions; ``match`` equals testing every one of them.

    Not thread-safe: the notify service owns one per process and updates it from its event
    loop (subscription changes from Redis), between articles.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._subs: dict[str, Subscription] = {}
        self._group_of: dict[str, _Group] = {}
        self._groups: dict[FilterKey, _Group] = {}
        self._index: dict[str, dict[str, set[_Group]]] = {}
        self._always: set[_Group] = set()
        self._candidates_total: Counter | None = None
        self._matches_total: Counter | None = None
        if registry is not None:
            self._candidates_total = Counter(
                "topicwatch_notify_percolator_candidates_total",
                "Distinct filters checked in full after the presearch.",
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

    @property
    def distinct_filters(self) -> int:
        return len(self._groups)

    def add(self, subscription: Subscription) -> None:
        """Index a subscription (replacing any with the same id)."""
        if subscription.id in self._subs:
            self.remove(subscription.id)
        compiled = subscription.compiled
        group = self._groups.get(compiled.key)
        if group is None:
            group = self._groups[compiled.key] = _Group(compiled)
            if group.placement.always:
                self._always.add(group)
            for outer, inner in group.placement.pairs:
                self._index.setdefault(outer, {}).setdefault(inner, set()).add(group)
        group.members[subscription.id] = subscription
        group.matched = list(group.members.values())
        self._subs[subscription.id] = subscription
        self._group_of[subscription.id] = group

    update = add

    def remove(self, subscription_id: str) -> bool:
        """Forget a subscription; False if it was not indexed."""
        if self._subs.pop(subscription_id, None) is None:
            return False
        group = self._group_of.pop(subscription_id)
        del group.members[subscription_id]
        group.matched = list(group.members.values())
        if group.members:
            return True
        del self._groups[group.key]
        self._always.discard(group)
        for outer, inner in group.placement.pairs:
            inners = self._index[outer]
            groups = inners[inner]
            groups.discard(group)
            if not groups:
                del inners[inner]
                if not inners:
                    del self._index[outer]
        return True

    def rebuild(self, subscriptions: Iterable[Subscription]) -> None:
        """Replace the whole index (e.g. after loading every subscription from Redis)."""
        fresh = Percolator()
        for subscription in subscriptions:
            fresh.add(subscription)
        self._subs, self._group_of, self._groups = fresh._subs, fresh._group_of, fresh._groups
        self._index, self._always = fresh._index, fresh._always

    # -- matching --------------------------------------------------------------------------

    def _candidates(self, article: PreparedArticle) -> set[_Group]:
        keys = article.keys
        n_keys = len(keys)
        found = set(self._always)
        index = self._index
        # dict_keys & frozenset iterates the frozenset (the article's few hundred keys);
        # frozenset.intersection(dict) iterates the dict: pick whichever side is smaller.
        for outer in index.keys() & keys:
            inners = index[outer]
            alone = inners.get(_NO_INNER)
            if alone:
                found |= alone
                if len(inners) == 1:
                    continue
            hits = inners.keys() & keys if len(inners) > n_keys else keys.intersection(inners)
            for inner in hits:
                found |= inners[inner]
        return found

    def candidates(self, article: PreparedArticle) -> set[str]:
        """Ids of the subscriptions the presearch cannot rule out (a superset of the matches)."""
        return {sid for group in self._candidates(article) for sid in group.members}

    def match(self, article: ClassifiedArticle | PreparedArticle) -> list[Subscription]:
        """Subscriptions whose every filter the article passes, in no particular order.

        (Sorting 100s of matches by id would cost a tenth of the time at 100,000 queries;
        callers that need an order sort what they keep.)
        """
        if isinstance(article, ClassifiedArticle):
            article = PreparedArticle.from_classified(article)
        found = self._candidates(article)
        matched: list[Subscription] = []
        for group in found:
            if group.check is _always or group.check(article):
                matched.extend(group.matched)
        if self._candidates_total is not None and self._matches_total is not None:
            self._candidates_total.inc(len(found))
            self._matches_total.inc(len(matched))
        return matched

    def brute_force(self, article: ClassifiedArticle | PreparedArticle) -> list[Subscription]:
        """Every subscription tested in full (ordered by id): what ``match`` must equal."""
        if isinstance(article, ClassifiedArticle):
            article = PreparedArticle.from_classified(article)
        subs = sorted(self._subs.values(), key=_by_id)
        return [s for s in subs if s.matches(article)]


def _always(article: PreparedArticle) -> bool:
    return True


def _by_id(subscription: Subscription) -> str:
    return subscription.id
