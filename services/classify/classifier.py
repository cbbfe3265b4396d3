"""Scoring: from pattern hits to topics with calibrated scores, evidence and entities.

How a score comes about (the rule language is documented in docs/classifier.md):

1. The article's title and body are scanned once by the taxonomy's automaton.  Hits inside
   page chrome (see :mod:`services.classify.segment`) are dropped, as are hits overlapping
   an exclusion phrase ("New England Patriots", "Cyber Monday", ...).
2. Gazetteer aliases become entity mentions; an alias marked *ambiguous* ("Patriot",
   "Tor", "Arrow", "Hawk") only counts with a context word nearby ("missile", "battery",
   "air defence"...), so a TV series, a browser or a bird does not become a weapon.
3. A rule *fires* once per sentence in which its groups co-occur (same sentence, within N
   words, or anywhere in the article) and no ``not_near`` context is present.
4. Each sentence is one piece of evidence for a topic, worth the weight of the strongest
   rule that fired in it (boosted in the title), so overlapping rules never count the same
   words twice. Sentences combine by noisy-OR with diminishing returns,
   ``1 - prod(1 - w_k * decay**k)`` over the sentences sorted strongest first; negative
   rules and article-level dampers (e.g. a sports report) multiply the score down. A topic
   is tagged when its score reaches its threshold.

The weights are written so that the score reads as "how sure are we that the article
reports on this": one body sentence that mentions a deal is just below even odds, the same
in the headline or repeated in another sentence is above.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter

from services.classify.loader import load_taxonomy
from services.classify.matcher import NormalisedText, normalise
from services.classify.segment import layout
from services.classify.taxonomy import Entry, Rule, Taxonomy
from services.common.models import Entity, Evidence, TopicTag

# A hit as the scorer sees it: (start, end, sentence) in normalised-text coordinates.
_H = tuple[int, int, int]
# A rule firing: (sentence, in the title?, one evidence hit per group).
_Firing = tuple[int, bool, list[_H]]

_ALNUM_ONLY = re.compile(r"[\W_]")
#: Evidence items on a tag (the strongest rules' first sentences); --explain shows more.
MAX_EVIDENCE_PER_TOPIC = 8
MAX_FIRINGS_SHOWN = 3
_ENTITY_LIST: TypeAdapter[list[Entity]] = TypeAdapter(list[Entity])
_TAG_LIST: TypeAdapter[list[TopicTag]] = TypeAdapter(list[TopicTag])
_EVIDENCE_LIST: TypeAdapter[list[Evidence]] = TypeAdapter(list[Evidence])


@dataclass(slots=True)
class RuleFiring:
    """One rule's contribution to a topic score (for ``--explain`` and tests)."""

    rule: str
    weight: float
    count: int
    contribution: float
    evidence: list[Evidence]
    note: str | None = None


@dataclass(slots=True)
class TopicDetail:
    """A topic some rule fired for: its score and, with ``explain=True``, every firing."""

    id: str
    score: float
    threshold: float
    tagged: bool
    firings: list[RuleFiring] = field(default_factory=list)
    dampers: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Classification:
    topics: list[TopicTag]
    entities: list[Entity]
    taxonomy_version: str
    details: list[TopicDetail] = field(default_factory=list)

    def topic_ids(self) -> list[str]:
        return [t.id for t in self.topics]


class _Spans:
    """Spans (start, end) asked "does any of you overlap [start, end)?" once per hit.

    Sorted by start, with the running maximum of the ends: the spans starting before
    ``end`` are a prefix, and one of them overlaps exactly when the largest end among them
    is past ``start``. A bisect per question, where testing every span made a long article
    quadratic (thousands of hits, each against every exclusion phrase found).
    """

    __slots__ = ("max_ends", "starts")

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        ordered = sorted(spans)
        self.starts = [s for s, _ in ordered]
        self.max_ends: list[int] = []
        reach = -1
        for _, e in ordered:
            reach = max(reach, e)
            self.max_ends.append(reach)

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end)
        return i > 0 and self.max_ends[i - 1] > start


class Classifier:
    """A compiled taxonomy ready to classify articles.

    Safe to share between threads: the taxonomy is never changed, and the only state, a
    cache of entity models, only ever gains equal values.
    """

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.version = taxonomy.version
        # Ambiguous aliases are confirmed by any atom of their context group (entries in a
        # context group count by any of their aliases: context needs no disambiguation).
        alias_atoms: dict[int, set[int]] = defaultdict(set)
        for atom, entries in taxonomy.atom_entries.items():
            for e in entries:
                alias_atoms[e].add(atom)
        self._context_atoms: dict[int, frozenset[int]] = {}
        for gid in taxonomy.context_groups:
            group = taxonomy.groups[gid]
            atoms = set(group.atoms)
            for e in group.entries:
                atoms |= alias_atoms[e]
            self._context_atoms[gid] = frozenset(atoms)
        self._rule_groups = [frozenset(r.groups) for r in taxonomy.rules]
        self._entities: dict[tuple[int, int], Entity] = {}
        # Per alias atom: entries it names outright, and entries that need a per-hit check
        # (exact case, an exclusion phrase, or context for an ambiguous alias).
        plain_entries: dict[int, tuple[int, ...]] = {}
        checked_entries: dict[int, tuple[int, ...]] = {}
        for atom, entry_ids in taxonomy.atom_entries.items():
            plain = []
            checked = []
            for e in entry_ids:
                entry = taxonomy.entries[e]
                if atom in entry.exact or entry.exclude_atoms or atom in entry.ambiguous_atoms:
                    checked.append(e)
                else:
                    plain.append(e)
            if plain:
                plain_entries[atom] = tuple(plain)
            if checked:
                checked_entries[atom] = tuple(checked)
        # Per atom, everything the scorer does with its hits: the groups it is a member
        # of, and the gazetteer entries it names (plain, or to be checked per hit).
        self._atom_plans: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for atom in set(taxonomy.atom_groups) | set(taxonomy.atom_entries):
            self._atom_plans[atom] = (
                tuple(taxonomy.atom_groups.get(atom, ())),
                plain_entries.get(atom, ()),
                checked_entries.get(atom, ()),
            )
        self._order = {t.id: t.index for t in taxonomy.topics}
        self._topic_own_exclusions = [
            t.exclude_atoms - taxonomy.global_exclude_atoms for t in taxonomy.topics
        ]

    # ---------------------------------------------------------------------------- API
    def topics_summary(self) -> list[dict[str, object]]:
        """The taxonomy as served by ``GET /v1/topics``."""
        tax = self.taxonomy
        return [
            {
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "threshold": t.threshold,
                "taxonomy_version": tax.version,
                "rules": [tax.rules[r].spec for r in t.rules],
                "examples": t.examples,
            }
            for t in tax.topics
        ]

    def classify(
        self, title: str | None, body: str | None, *, explain: bool = False
    ) -> Classification:
        """Topics, entities and the taxonomy version for one article.

        ``explain=True`` also fills the evidence of every rule firing in ``details``
        (including topics below their threshold), which ``--explain`` shows.
        """
        tax = self.taxonomy
        title = title or ""
        body = body or ""
        # Title and body are one text for matching, three line breaks apart; the middle one
        # becomes a "|" in the folded text so that no phrase runs from one into the other.
        text = f"{title}\n\n\n{body}"
        body_start = len(title) + 3
        lay = layout(text, body_start)
        norm = normalise(text)
        wall = norm.normalised_offset(len(title) + 1)
        norm.text = ntext = f"{norm.text[:wall]}|{norm.text[wall + 1 :]}"
        # Sentence ends, as original offsets: a key's leading space sits at the original
        # offset of its first character, so one bisect per hit gives its sentence.
        ends = lay.sentence_ends
        chrome = lay.chrome_sentences
        first_body = lay.sentence_of(body_start)

        # Hits per atom, as (start, end, sentence) in normalised coordinates. This loop is
        # the only per-hit work; everything after it works per atom, group or rule.
        by_atom: dict[int, list[_H]] = {}
        bisect_right = bisect.bisect_right
        found = tax.matcher.find(ntext)
        values = tax.matcher.values
        for idx, kstart, kend in found:
            whole, atoms = values[idx]
            ns = kstart + 1
            sid = bisect_right(ends, kstart)
            if sid in chrome:
                continue
            hit = (ns, kend - 1 if whole else ntext.find(" ", kend), sid)
            for atom in atoms:
                lst = by_atom.get(atom)
                if lst is None:
                    by_atom[atom] = [hit]
                else:
                    lst.append(hit)
        ctx = _Context(norm, text, body_start, first_body)
        # A brief (one or two sentences of story) has no "passing mention": its lead sentence
        # is as central as a headline, so body evidence counts as title evidence there.
        # (sentence_ends holds the ends of all sentences but the last.)
        story = len(lay.sentence_ends) + 1 - first_body - sum(1 for s in chrome if s >= first_body)
        ctx.brief = 0 < story <= tax.brief_sentences

        # Exclusion phrases: their spans shadow any other hit they overlap.
        excl_spans: dict[int, list[tuple[int, int]]] = {}
        present_exclusions = tax.exclusion_atoms.intersection(by_atom)
        if present_exclusions:
            excl_spans = {a: [(h[0], h[1]) for h in by_atom[a]] for a in present_exclusions}
            global_spans = [
                span
                for a in tax.global_exclude_atoms.intersection(by_atom)
                for span in excl_spans[a]
            ]
            if global_spans:
                shadows = _Spans(global_spans)
                for a in list(by_atom):
                    if a in tax.global_exclude_atoms:
                        continue
                    kept = [h for h in by_atom[a] if not shadows.overlaps(h[0], h[1])]
                    if kept:
                        by_atom[a] = kept
                    else:
                        del by_atom[a]

        # Hits per group and entity mentions (after exclusions, case and context checks),
        # in one pass over the atoms found, each with its precomputed plan.
        ghits: dict[int, list[_H]] = defaultdict(list)
        mentions: dict[int, list[_H]] = defaultdict(list)
        entries = tax.entries
        plans = self._atom_plans
        for a, hs in by_atom.items():
            plan = plans.get(a)
            if plan is None:
                continue
            groups, plain, checked = plan
            for g in groups:
                ghits[g].extend(hs)
            for e in plain:
                mentions[e].extend(hs)
            for e in checked:
                entry = entries[e]
                exact = entry.exact.get(a)
                # The entry's exclusion phrases present in this article (usually none).
                spans = (
                    _Spans(
                        [
                            sp
                            for x in entry.exclude_atoms.intersection(excl_spans)
                            for sp in excl_spans[x]
                        ]
                    )
                    if excl_spans
                    else None
                )
                ambiguous = a in entry.ambiguous_atoms
                for h in hs:
                    if exact is not None:
                        start, end = ctx.span(h)
                        if _ALNUM_ONLY.sub("", text[start:end]) != exact:
                            continue
                    if spans is not None and spans.overlaps(h[0], h[1]):
                        continue
                    if ambiguous and not self._has_context(
                        entry.context_group, entry.context_window, h, by_atom, ctx
                    ):
                        continue
                    mentions[e].append(h)
        if len(mentions) > 1:
            _drop_nested_mentions(mentions, entries)
        entry_groups = tax.entry_groups
        for e, hs in mentions.items():
            for g in entry_groups.get(e, ()):
                ghits[g].extend(hs)

        # Candidate rules: triggered by their rarest group, all groups present.
        fired: dict[int, list[tuple[Rule, list[_Firing]]]] = defaultdict(list)
        rules = tax.rules
        trigger_rules = tax.trigger_rules
        present = ghits.keys()
        rule_groups = self._rule_groups
        for g in list(ghits):
            for ri in trigger_rules.get(g, ()):
                rule = rules[ri]
                if len(rule.groups) > 1 and not present >= rule_groups[ri]:
                    continue
                firings = self._evaluate(rule, ghits, excl_spans, ctx)
                if len(firings) >= rule.min_count:
                    fired[rule.topic].append((rule, firings))

        # Dampers that fired: those aimed at every topic apply to whichever topics fired.
        damp: dict[int, list[tuple[str, float]]] = defaultdict(list)
        everywhere: list[tuple[str, float]] = []
        for d in tax.dampers:
            dhits = ghits.get(d.group)
            if dhits and len({h[2] for h in dhits}) >= d.min_count:
                if d.topics is None:
                    everywhere.append((d.id, d.factor))
                else:
                    for t in d.topics:
                        damp[t].append((d.id, d.factor))

        tag_data: list[dict[str, object]] = []
        tag_evidence: list[list[tuple[int, int, str]]] = []
        details: list[TopicDetail] = []
        for ti, rule_firings in fired.items():
            topic = tax.topics[ti]
            dampers = damp.get(ti, [])
            if everywhere:
                dampers = dampers + everywhere
            detail, hits = self._score(ti, rule_firings, dampers, ctx, explain)
            details.append(detail)
            if detail.tagged:
                keys: list[tuple[int, int, str]] = []
                seen: set[int] = set()
                for rule_id, h in hits:
                    if h[0] not in seen:
                        seen.add(h[0])
                        keys.append((h[0], h[1], rule_id))
                        if len(keys) >= MAX_EVIDENCE_PER_TOPIC:
                            break
                tag_data.append({"id": topic.id, "score": detail.score})
                tag_evidence.append(keys)
        order = self._order
        tags: list[TopicTag] = []
        if tag_data:
            evidence = ctx.evidence_dict
            if len(tag_data) == 1:
                tag_data[0]["evidence"] = [evidence(*k) for k in tag_evidence[0]]
            else:
                # Topics often cite the same words under the same rule (watch lists built
                # from one template): validate each distinct piece of evidence once.
                unique = list(dict.fromkeys(k for keys in tag_evidence for k in keys))
                built = dict(
                    zip(
                        unique,
                        _EVIDENCE_LIST.validate_python([evidence(*k) for k in unique]),
                        strict=True,
                    )
                )
                for data, keys in zip(tag_data, tag_evidence, strict=True):
                    data["evidence"] = [built[k] for k in keys]
            tags = _TAG_LIST.validate_python(tag_data)
        tags.sort(key=lambda t: (-t.score, order[t.id]))
        details.sort(key=lambda d: (-d.score, order[d.id]))

        entities = [self._entity(e, len({h[0] for h in hs})) for e, hs in mentions.items()]
        titles = tax.person_title_atoms.intersection(by_atom)
        if titles:
            entities += _ENTITY_LIST.validate_python(
                _people([h for a in titles for h in by_atom[a]], ctx)
            )
        entities.sort(key=lambda ent: (-ent.mentions, ent.id))
        return Classification(
            topics=tags, entities=entities, taxonomy_version=tax.version, details=details
        )

    # ------------------------------------------------------------------------ helpers
    def _entity(self, e: int, mentions: int) -> Entity:
        """The Entity for a gazetteer entry and a mention count, built once per classifier.

        Gazetteer entities only differ by their count, so the validated model is shared
        between articles (nothing mutates it) instead of being rebuilt for each one.
        """
        key = (e, mentions)
        entity = self._entities.get(key)
        if entity is None:
            entry = self.taxonomy.entries[e]
            entity = Entity(id=entry.entity_id, kind=entry.kind, name=entry.name, mentions=mentions)
            if mentions <= 64:
                self._entities[key] = entity
        return entity

    def _has_context(
        self,
        gid: int | None,
        window: int,
        h: _H,
        by_atom: dict[int, list[_H]],
        ctx: _Context,
    ) -> bool:
        """Is a word of context group ``gid`` within ``window`` words of the hit ``h``?

        Word indexes grow with character offsets, so only the nearest context hit on
        each side can be the closest in words: two word lookups per check, however often
        the context words occur in the article.
        """
        if gid is None:
            return True
        spans = ctx.context_spans.get(gid)
        if spans is None:
            spans = ctx.context_spans[gid] = sorted(
                (c[0], c[1])
                for a in self._context_atoms[gid].intersection(by_atom)
                for c in by_atom[a]
            )
        start, end = h[0], h[1]
        i = bisect.bisect_left(spans, (start, -1))
        j = i
        n = len(spans)
        while j < n and spans[j][0] == start:
            if spans[j][1] != end:  # another phrase from the same word: distance 0
                return True
            j += 1  # the ambiguous word cannot be its own context
        # Word starts are at least two characters apart: a context hit within twice the
        # window in characters is within the window in words, without counting words.
        reach = 2 * window
        if (j < n and spans[j][0] - start <= reach) or (i > 0 and start - spans[i - 1][0] <= reach):
            return True
        word = ctx.word(start)
        if j < n and ctx.word(spans[j][0]) - word <= window:
            return True
        return i > 0 and word - ctx.word(spans[i - 1][0]) <= window

    def _evaluate(
        self,
        rule: Rule,
        ghits: dict[int, list[_H]],
        excl_spans: dict[int, list[tuple[int, int]]],
        ctx: _Context,
    ) -> list[_Firing]:
        """Firings of ``rule``: (sentence, in title, evidence hits), one per sentence."""
        groups = [ghits[g] for g in rule.groups]
        filtered = False
        own = self._topic_own_exclusions[rule.topic]
        if own and excl_spans:
            spans = [s for a in own.intersection(excl_spans) for s in excl_spans[a]]
            if spans:
                shadows = _Spans(spans)
                groups = [[h for h in hs if not shadows.overlaps(h[0], h[1])] for hs in groups]
                filtered = True
                if not all(groups):
                    return []
        first_body = ctx.first_body
        if rule.field != "any":
            in_title = rule.field == "title"
            groups = [[h for h in hs if (h[2] < first_body) == in_title] for hs in groups]
            filtered = True
            if not all(groups):
                return []
        blockers = ghits.get(rule.not_near, []) if rule.not_near is not None else []

        firings: list[_Firing] = []
        if rule.within is None:  # same sentence
            # A group shared by many rules (a verb list) is indexed once per article.
            by_sentence = (
                [_first_by_sentence(hs) for hs in groups]
                if filtered
                else [ctx.first_by_sentence(g, ghits[g]) for g in rule.groups]
            )
            common = set(by_sentence[0])
            for d in by_sentence[1:]:
                common.intersection_update(d)
            if blockers and common:
                common.difference_update(h[2] for h in blockers)
            for s in sorted(common):
                firings.append((s, s < first_body, [d[s] for d in by_sentence]))
        elif rule.within == 0:  # anywhere in the article: once per anchor sentence
            seen: set[int] = set()
            rest = [hs[0] for hs in groups[1:]]
            for h in groups[0]:
                if h[2] in seen:
                    continue
                seen.add(h[2])
                firings.append((h[2], h[2] < first_body, [h, *rest]))
        else:
            window = rule.within
            seen = set()
            word = ctx.word
            # Hits sorted by offset: word indexes grow with offsets, so the nearest hit on
            # each side of an anchor is the only candidate (two word lookups, not one per hit).
            near_by = [_by_offset(hs) for hs in groups[1:]]
            blocking = _by_offset(blockers) if blockers else None
            for anchor in groups[0]:
                if anchor[2] in seen:
                    continue
                w = word(anchor[0])
                if blocking is not None and _nearest(blocking, anchor[0], w, window, word):
                    continue
                ev = [anchor]
                for index in near_by:
                    near = _nearest(index, anchor[0], w, window, word)
                    if near is None:
                        break
                    ev.append(near)
                else:
                    seen.add(anchor[2])
                    firings.append((anchor[2], anchor[2] < first_body, ev))
        return firings

    def _score(
        self,
        ti: int,
        rule_firings: list[tuple[Rule, list[_Firing]]],
        dampers: list[tuple[str, float]],
        ctx: _Context,
        explain: bool,
    ) -> tuple[TopicDetail, list[tuple[str, _H]]]:
        """The topic's detail and its evidence hits, strongest rule first."""
        tax = self.taxonomy
        topic = tax.topics[ti]
        factor = 1.0
        # One piece of evidence per sentence: the strongest rule that fired in it. Rules
        # that overlap (a named system and the bare words "air defence" in the same
        # sentence) must not count the same words twice.
        best: dict[int, tuple[float, int]] = {}
        for ri, (rule, firings) in enumerate(rule_firings):
            if rule.weight < 0:
                factor *= 1.0 + rule.weight
                continue
            boosted = min(0.99, rule.weight * tax.title_boost)
            for sid, in_title, _ in firings:
                w = boosted if in_title or ctx.brief else rule.weight
                current = best.get(sid)
                if current is None or w > current[0]:
                    best[sid] = (w, ri)
        # Repeats across sentences add up with diminishing returns (noisy-OR, decayed).
        miss = 1.0
        decay = 1.0
        rule_miss = [1.0] * len(rule_firings)
        for w, ri in sorted(best.values(), reverse=True):
            p = w * decay
            miss *= 1.0 - p
            rule_miss[ri] *= 1.0 - p
            decay *= tax.repeat_decay
        out: list[RuleFiring] = []
        positive: list[tuple[float, str, list[_Firing]]] = []
        for ri, (rule, firings) in enumerate(rule_firings):
            contribution = -rule.weight if rule.weight < 0 else 1.0 - rule_miss[ri]
            if explain:
                out.append(
                    RuleFiring(
                        rule=rule.id,
                        weight=rule.weight,
                        count=len(firings),
                        contribution=round(contribution, 4),
                        evidence=[
                            ctx.evidence(h, rule.id)
                            for _, _, hs in firings[:MAX_FIRINGS_SHOWN]
                            for h in hs
                        ],
                        note=rule.note,
                    )
                )
            if rule.weight > 0:
                positive.append((contribution, rule.id, firings))
        for _, f in dampers:
            factor *= f
        score = round(max(0.0, min(1.0, (1.0 - miss) * factor)), 4)
        tagged = score >= topic.threshold
        hits: list[tuple[str, _H]] = []
        if tagged:
            positive.sort(key=lambda p: -p[0])
            hits = [
                (rule_id, h)
                for _, rule_id, firings in positive
                for _, _, hs in firings[:MAX_FIRINGS_SHOWN]
                for h in hs
            ]
        detail = TopicDetail(
            id=topic.id,
            score=score,
            threshold=topic.threshold,
            tagged=tagged,
            firings=sorted(out, key=lambda f: -f.contribution),
            dampers=dampers,
        )
        return detail, hits


# After a title ("Foreign Minister", "Gen."): two to four capitalised words, allowing the
# lower-case particles of Arabic, Dutch, German, Spanish... names ("bin", "van der").
_PARTICLE = r"(?:(?:al|bin|ibn|de|del|da|di|van|von|der|den|la|le|du|dos)[ \t]+)?"
_NAME_AFTER_TITLE_RE = re.compile(
    rf"\.?[ \t]+((?:[A-Z][\w'’.-]*[ \t]+{_PARTICLE}){{1,3}}[A-Z][\w'’-]+)"
)


def _people(title_hits: list[_H], ctx: _Context) -> list[dict[str, object]]:
    """People named right after a title: cheap, precise, and enough to say who spoke."""
    found: dict[str, set[int]] = {}
    for h in title_hits:
        _, end = ctx.span(h)
        m = _NAME_AFTER_TITLE_RE.match(ctx.text, end)
        if m is None:
            continue
        name = m.group(1).rstrip("'’.-")
        found.setdefault(name, set()).add(end)  # "Director General X": one mention
    out = []
    for name, positions in found.items():
        slug = _ALNUM_ONLY.sub("-", name.lower()).strip("-")
        slug = re.sub("-+", "-", slug)
        out.append(
            {"id": f"person:{slug}", "kind": "person", "name": name, "mentions": len(positions)}
        )
    return out


def _drop_nested_mentions(mentions: dict[int, list[_H]], entries: list[Entry]) -> None:
    """Drop a mention that lies inside a longer mention of an entity of the same kind.

    The longest name wins: "Republic of Congo" is not also a mention of the DR Congo's
    alias "Congo", "North Korea" not of South Korea's "Korea", "Equatorial Guinea" not of
    Guinea, and "UN Security Council" is one mention of the UN, not three. Across kinds
    both stay ("Russian Defence Ministry" names Russia and a ministry); the same words
    listed for two entities stay with both. One sweep per kind over the mentions ordered
    by start, longest first.
    """
    by_kind: dict[str, list[tuple[int, int, int]]] = {}
    for e, hs in mentions.items():
        spans = by_kind.setdefault(entries[e].kind, [])
        for h in hs:
            spans.append((h[0], -h[1], e))
    nested: set[tuple[int, int, int]] = set()
    for spans in by_kind.values():
        if len(spans) < 2:
            continue
        spans.sort()
        cover_start, cover_end = -1, -1
        for start, neg_end, e in spans:
            end = -neg_end
            if end > cover_end:
                cover_start, cover_end = start, end
            elif (start, end) != (cover_start, cover_end):
                nested.add((start, end, e))
    if not nested:
        return
    for e in list(mentions):
        kept = [h for h in mentions[e] if (h[0], h[1], e) not in nested]
        if kept:
            mentions[e] = kept
        else:
            del mentions[e]


def _by_offset(hits: list[_H]) -> tuple[list[int], list[_H]]:
    """``hits`` sorted by start offset, with the list of their starts (for bisection)."""
    ordered = sorted(hits)
    return [h[0] for h in ordered], ordered


def _nearest(
    index: tuple[list[int], list[_H]], pos: int, w: int, window: int, word: Callable[[int], int]
) -> _H | None:
    """The hit of ``index`` closest in words to word ``w`` at ``pos``, if within ``window``.

    Word indexes grow with offsets, so the closest hit is the first at or after ``pos`` or
    the last before it; on a tie the earlier one wins.
    """
    starts, hits = index
    i = bisect.bisect_left(starts, pos)
    best: _H | None = None
    if i > 0 and w - word(starts[i - 1]) <= window:
        best = hits[i - 1]
        if i < len(starts) and word(starts[i]) - w < w - word(starts[i - 1]):
            best = hits[i]
    elif i < len(starts) and word(starts[i]) - w <= window:
        best = hits[i]
    return best


def _first_by_sentence(hits: list[_H]) -> dict[int, _H]:
    first: dict[int, _H] = {}
    for h in hits:
        if h[2] not in first:
            first[h[2]] = h
    return first


class _Context:
    """Per-article lookups that are computed lazily: word indexes and original spans."""

    __slots__ = (
        "_sentences",
        "_words",
        "body_start",
        "brief",
        "context_spans",
        "first_body",
        "norm",
        "text",
    )

    def __init__(self, norm: NormalisedText, text: str, body_start: int, first_body: int) -> None:
        self.norm = norm
        self.text = text
        self.first_body = first_body
        self.body_start = body_start
        self.brief = False
        self._words: dict[int, int] = {}
        self._sentences: dict[int, dict[int, _H]] = {}
        # Per context group: its hits' (start, end), sorted (built on first use).
        self.context_spans: dict[int, list[tuple[int, int]]] = {}

    def first_by_sentence(self, group: int, hits: list[_H]) -> dict[int, _H]:
        """The first hit of ``group`` in each sentence (cached per article)."""
        index = self._sentences.get(group)
        if index is None:
            index = self._sentences[group] = _first_by_sentence(hits)
        return index

    def word(self, npos: int) -> int:
        """How many words start before ``npos`` (cached per offset)."""
        w = self._words.get(npos)
        if w is None:
            w = self._words[npos] = self.norm.word_index(npos)
        return w

    def span(self, h: _H) -> tuple[int, int]:
        return self.norm.original_offset(h[0]), self.norm.original_offset(h[1] - 1) + 1

    def evidence(self, h: _H, rule: str) -> Evidence:
        return Evidence.model_validate(self.evidence_dict(h[0], h[1], rule))

    def evidence_dict(self, nstart: int, nend: int, rule: str) -> dict[str, object]:
        """Evidence fields for the hit at ``nstart:nend`` of the normalised text."""
        # Normalised offsets are original offsets + 1 (NormalisedText.original_offset).
        start = nstart - 1
        end = nend - 1
        shift = 0 if start < self.body_start else self.body_start
        return {
            "text": self.text[start:end],
            "field": "title" if shift == 0 else "body",
            "start": start - shift,
            "end": end - shift,
            "rule": rule,
        }


def load_classifier(path: Path | None = None) -> Classifier:
    """A classifier for the taxonomy at ``path`` (``None``: the packaged default)."""
    return Classifier(load_taxonomy(path))
