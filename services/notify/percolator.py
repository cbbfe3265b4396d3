"""Match one article against many stored subscriptions without testing each one.

Elasticsearch's percolator and Lucene Monitor invert the usual search: the queries are stored
and indexed, and each document is a query against them. A *presearcher* picks, from an index
of the stored queries' terms, the few queries a document could possibly match; only those
candidates are evaluated for real. This module does the same for subscriptions:

* Every subscription describes what a matching article must contain as a conjunction of
  clauses over the article's *keys* (:meth:`CompiledFilter.key_form`): its words, its pairs
  of adjacent words (so ``"air defence"`` is one key), ``t:<topic>``, ``t<tenth>:<topic>``
  for score floors, ``e:<entity>``, ``s:<source>``, ``l:<language>``. A phrase requires its
  pairs, ``a OR b`` one of ``a``/``b``, ``NOT`` nothing.
* Like Lucene Monitor's multipass presearcher, a filter is indexed under its two most
  selective clauses: the first as the outer key, the second as an inner key. An article
  reaches a filter only if it offers a key of both, found with two C-level set intersections
  (the article's keys against the outer keys, then against each hit's inner keys). With one
  clause the inner key is empty; filters with none (a purely negative query) are always
  candidates.
* Subscriptions with identical filters form one group, presearched and checked once.
* A candidate then needs only what the index did not prove: its other clauses, its absent
  keys (``-drill``) and, for what keys cannot express exactly (score floors, nested
  queries, phrases of three words or more), the compiled check. Most alert queries are flat
  (words, pairs, ORs, negated words), so this is a couple of set operations, or nothing at
  all when the two indexed clauses are the whole filter.

The result is identical to testing every subscription with :meth:`Subscription.matches` (the
reference, written independently); a property test holds the two equal under random
subscriptions, articles, updates and removals.

Selectivity is guessed per clause (:func:`services.notify.query.clause_probability`: entities
and sources are specific, topics less, languages hardly; long words are rarer than short,
stop words and one-letter tokens nearly certain), because the index is built before any
article statistics exist.

With 100,000 stored queries the matcher's time is mostly memory latency (cache misses on
objects scattered over hundreds of megabytes), hence the flat per-group slots, interned
keys (set lookups compare pointers), and the advice to ``gc.freeze()`` after a rebuild.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from sys import intern

from prometheus_client import CollectorRegistry, Counter

from services.common.models import ClassifiedArticle
from services.notify.filters import (
    ENTITY_KEY,
    LANGUAGE_KEY,
    MIN_SCORE_KEY,
    SOURCE_KEY,
    TOPIC_KEY,
    CompiledFilter,
    FilterKey,
    PreparedArticle,
)
from services.notify.query import clause_probability, keyset
from services.notify.subscriptions import Subscription

#: An inner (second-clause) index is skipped when it would need more than this many
#: (outer, inner) key pairs for one filter: only the first clause is indexed then, and the
#: second is checked on the candidates like any other.
MAX_KEY_PAIRS = 64

#: Prior chance that an article carries one given key of these namespaces. Topics: a handful
#: per article out of a taxonomy of dozens; languages: most articles share one or two.
_NAMESPACE_PROBABILITY = {TOPIC_KEY: 0.08, ENTITY_KEY: 0.02, SOURCE_KEY: 0.02, LANGUAGE_KEY: 0.6}

_NO_INNER = ""  # inner key of subscriptions indexed by one clause only


@lru_cache(maxsize=100_000)
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
    """Where one filter sits in the index, and what its candidates still need checking.

    Both indexed clauses hold for every candidate found through them, so only the other
    clauses (``residual``), the ``absent`` keys and ``rest`` are left to check; when all three
    are empty, being a candidate is matching (``exact``).
    """

    pairs: tuple[tuple[str, str], ...] = ()
    always: bool = False
    residual: tuple[frozenset[str], ...] = ()
    absent: frozenset[str] = field(default_factory=keyset)
    rest: Callable[[PreparedArticle], bool] | None = None

    @property
    def exact(self) -> bool:
        return not self.residual and not self.absent and self.rest is None


def placement_for(subscription: Subscription | CompiledFilter) -> _Placement:
    """The index keys of a filter (pairs from its two most selective clauses) and the rest."""
    compiled = subscription.compiled if isinstance(subscription, Subscription) else subscription
    if compiled.disabled:
        return _Placement()  # matches nothing: not indexed at all
    clauses, absent, rest = compiled.key_form()
    ordered = sorted(set(clauses), key=lambda c: (key_probability(c), sorted(c)))
    if not ordered:
        return _Placement(always=True, absent=absent, rest=rest)
    outer = sorted(map(intern, ordered[0]))
    if len(ordered) > 1 and len(ordered[0]) * len(ordered[1]) <= MAX_KEY_PAIRS:
        inner = sorted(map(intern, ordered[1]))
        return _Placement(
            pairs=tuple(product(outer, inner)),
            residual=tuple(_interned(c) for c in ordered[2:]),
            absent=_interned(absent),
            rest=rest,
        )
    return _Placement(
        pairs=tuple((key, _NO_INNER) for key in outer),
        residual=tuple(_interned(c) for c in ordered[1:]),
        absent=_interned(absent),
        rest=rest,
    )


def _interned(keys: frozenset[str]) -> frozenset[str]:
    return keyset(keys)


class _Group:
    """The subscriptions that share one filter (many people subscribe to "S-400").

    The index holds groups, not subscriptions, so an identical filter is presearched and
    checked once per article whatever the number of its subscribers. Groups hash by
    identity (no string hashing per candidate) and carry what is left to check as plain
    slots (None when empty), so checking a candidate touches as little memory as possible:
    with 100,000 stored queries the matcher's time is mostly cache misses.
    """

    __slots__ = (
        "absent",
        "always",
        "exact",
        "filter",
        "key",
        "members",
        "pairs",
        "residual",
        "rest",
    )

    def __init__(self, compiled: CompiledFilter) -> None:
        self.filter = compiled
        self.key = compiled.key
        placement = placement_for(compiled)  # kept in parts: the wrapper is 140 bytes
        self.pairs = placement.pairs
        self.always = placement.always
        self.exact = placement.exact
        self.residual = placement.residual or None
        self.absent = placement.absent or None
        self.rest = placement.rest
        # Added to and removed from in O(1), and read in place by ``match`` (extending a list
        # from a dict's values is as much C as from a list). A copy of the members per change
        # made adding n subscriptions with one filter O(n^2): 9 s for 40,000 "S-400"s.
        self.members: dict[str, Subscription] = {}


#: The groups indexed under one (outer, inner) key pair: a tuple while few (most pairs hold
#: one group, and a one-element tuple is 48 bytes where a set is 216), a set beyond, so that
#: adding to a popular pair stays O(1). Matching reads either with ``set.update``.
_Bucket = tuple[_Group, ...] | set[_Group]
_SMALL_BUCKET = 8


def _with(bucket: _Bucket | None, group: _Group) -> _Bucket:
    if bucket is None:
        return (group,)
    if isinstance(bucket, set):
        bucket.add(group)
        return bucket
    if len(bucket) < _SMALL_BUCKET:
        return (*bucket, group)
    return {*bucket, group}


def _without(bucket: _Bucket, group: _Group) -> _Bucket:
    if isinstance(bucket, set):
        bucket.discard(group)
        return bucket
    return tuple(g for g in bucket if g is not group)


class Percolator:
    """An in-memory index of subscriptions; ``match`` equals testing every one of them.

    Not thread-safe: the notify service owns one per process and updates it from its event
    loop (subscription changes from Redis), between articles.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._subs: dict[str, Subscription] = {}
        self._group_of: dict[str, _Group] = {}
        self._groups: dict[FilterKey, _Group] = {}
        self._index: dict[str, dict[str, _Bucket]] = {}
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
            if group.always:
                self._always.add(group)
            for outer, inner in group.pairs:
                inners = self._index.setdefault(outer, {})
                inners[inner] = _with(inners.get(inner), group)
        group.members[subscription.id] = subscription
        self._subs[subscription.id] = subscription
        self._group_of[subscription.id] = group

    update = add

    def remove(self, subscription_id: str) -> bool:
        """Forget a subscription; False if it was not indexed."""
        if self._subs.pop(subscription_id, None) is None:
            return False
        group = self._group_of.pop(subscription_id)
        del group.members[subscription_id]
        if group.members:
            return True
        del self._groups[group.key]
        self._always.discard(group)
        for outer, inner in group.pairs:
            inners = self._index[outer]
            rest = _without(inners[inner], group)
            if rest:
                inners[inner] = rest
            else:
                del inners[inner]
                if not inners:
                    del self._index[outer]
        return True

    def rebuild(self, subscriptions: Iterable[Subscription]) -> None:
        """Replace the whole index (e.g. after loading every subscription from Redis).

        Built aside and swapped in at once (:meth:`replace_with`), so a reader never sees a
        half-built index; the notify service builds the fresh one in a worker thread
        (``index.py``) and only the swap runs on its event loop.
        """
        fresh = Percolator()
        fresh.add_all(subscriptions)
        self.replace_with(fresh)

    def add_all(self, subscriptions: Iterable[Subscription]) -> None:
        """:meth:`add` each, with the cyclic garbage collector paused meanwhile.

        Building allocates hundreds of thousands of objects, which would otherwise trigger
        full collections that walk every live object again and again (a third of the build
        time at 100,000). The caller may ``gc.freeze()`` afterwards so later collections skip
        the index too. Each add is O(1) in the size of its group, so this is O(n).
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for subscription in subscriptions:
                self.add(subscription)
        finally:
            if was_enabled:
                gc.enable()

    def replace_with(self, fresh: Percolator) -> None:
        """Take over ``fresh``'s index (a handful of reference assignments: atomic for the
        event loop that calls it). ``fresh`` must not be used afterwards."""
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
                found.update(alone)
                if len(inners) == 1:
                    continue
            hits = inners.keys() & keys if len(inners) > n_keys else keys.intersection(inners)
            for inner in hits:
                found.update(inners[inner])
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
        keys = article.keys
        matched: list[Subscription] = []
        for group in found:
            if not group.exact:
                absent = group.absent
                if absent is not None and not absent.isdisjoint(keys):
                    continue
                residual = group.residual
                if residual is not None and any(c.isdisjoint(keys) for c in residual):
                    continue
                rest = group.rest
                if rest is not None and not rest(article):
                    continue
            matched.extend(group.members.values())
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


def _by_id(subscription: Subscription) -> str:
    return subscription.id
