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
4. Each firing is read as independent evidence with probability ``weight`` (boosted in the
   title, decayed for repeats), and the topic score is their noisy-OR:
   ``1 - prod(1 - w_i)``.  Negative rules and article-level dampers (e.g. a sports report)
   multiply the score down.  A topic is tagged when its score reaches its threshold.

The weights are written so that the score reads as "how sure are we that the article
reports on this": one solid co-occurrence in a body sentence is about even odds, the same
in a headline or repeated across sentences is clearly above.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from services.classify.segment import layout
from services.classify.taxonomy import Rule, Taxonomy, load_taxonomy
from services.common.models import Entity, Evidence, TopicTag

# A hit as the scorer sees it: (start, end, word index, sentence index, atom).
_H = tuple[int, int, int, int, int]

_ALNUM_ONLY = re.compile(r"[\W_]")
MAX_EVIDENCE_PER_TOPIC = 8
MAX_FIRINGS_SHOWN = 3


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


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in spans)


class Classifier:
    """A compiled taxonomy ready to classify articles; immutable and thread-safe."""

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

    def classify(self, title: str | None, body: str | None) -> Classification:
        tax = self.taxonomy
        title = title or ""
        body = body or ""
        text = f"{title}\n{body}"
        body_start = len(title) + 1
        lay = layout(text, body_start)
        _, raw_hits = tax.matcher.scan(text)

        sentence_of = lay.sentence_of
        hits: list[_H] = []
        if lay.chrome:
            is_chrome = lay.is_chrome
            for rh in raw_hits:
                if not is_chrome(rh.start):
                    hits.append((rh.start, rh.end, rh.word, sentence_of(rh.start), rh.atom))
        else:
            hits = [(rh.start, rh.end, rh.word, sentence_of(rh.start), rh.atom) for rh in raw_hits]

        # Exclusion phrases: their spans shadow any other hit they overlap.
        excl_spans: dict[int, list[tuple[int, int]]] = {}
        exclusion_atoms = tax.exclusion_atoms
        for h in hits:
            if h[4] in exclusion_atoms:
                excl_spans.setdefault(h[4], []).append((h[0], h[1]))
        if excl_spans:
            global_spans = [
                span for a in tax.global_exclude_atoms for span in excl_spans.get(a, ())
            ]
            if global_spans:
                hits = [
                    h
                    for h in hits
                    if h[4] in tax.global_exclude_atoms or not _overlaps(h[0], h[1], global_spans)
                ]

        atom_words: dict[int, list[int]] = defaultdict(list)
        for h in hits:
            atom_words[h[4]].append(h[2])

        # Entity mentions (after exclusions and disambiguation).
        mentions: dict[int, list[_H]] = defaultdict(list)
        atom_entries = tax.atom_entries
        entries = tax.entries
        for h in hits:
            for e in atom_entries.get(h[4], ()):
                entry = entries[e]
                if entry.exact and h[4] in entry.exact:
                    if _ALNUM_ONLY.sub("", text[h[0] : h[1]]) != entry.exact[h[4]]:
                        continue
                if entry.exclude_atoms and excl_spans:
                    spans = [s for a in entry.exclude_atoms for s in excl_spans.get(a, ())]
                    if spans and _overlaps(h[0], h[1], spans):
                        continue
                if h[4] in entry.ambiguous_atoms and not self._has_context(
                    entry.context_group, entry.context_window, h, atom_words
                ):
                    continue
                mentions[e].append(h)

        # Hits per group.
        ghits: dict[int, list[_H]] = defaultdict(list)
        atom_groups = tax.atom_groups
        for h in hits:
            for g in atom_groups.get(h[4], ()):
                ghits[g].append(h)
        entry_groups = tax.entry_groups
        for e, hs in mentions.items():
            for g in entry_groups.get(e, ()):
                ghits[g].extend(hs)

        # Candidate rules: triggered by their rarest group, all groups present.
        fired: dict[int, list[tuple[Rule, list[tuple[int, bool, list[_H]]]]]] = defaultdict(list)
        rules = tax.rules
        for g in list(ghits):
            for ri in tax.trigger_rules.get(g, ()):
                rule = rules[ri]
                if any(gg not in ghits for gg in rule.groups):
                    continue
                firings = self._evaluate(rule, ghits, excl_spans, body_start)
                if len(firings) >= rule.min_count:
                    fired[rule.topic].append((rule, firings))

        damp: dict[int, list[tuple[str, float]]] = defaultdict(list)
        for d in tax.dampers:
            dhits = ghits.get(d.group)
            if dhits and len({h[3] for h in dhits}) >= d.min_count:
                targets = d.topics if d.topics is not None else range(len(tax.topics))
                for t in targets:
                    damp[t].append((d.id, d.factor))

        tags: list[TopicTag] = []
        details: list[TopicDetail] = []
        for ti, rule_firings in fired.items():
            topic = tax.topics[ti]
            detail = self._score(ti, rule_firings, damp.get(ti, []), text, body_start)
            details.append(detail)
            if detail.tagged:
                evidence: list[Evidence] = []
                seen: set[tuple[str, int, int]] = set()
                for f in sorted(detail.firings, key=lambda f: -f.contribution):
                    if f.weight < 0:
                        continue
                    for ev in f.evidence:
                        key = (ev.field, ev.start, ev.end)
                        if key not in seen and len(evidence) < MAX_EVIDENCE_PER_TOPIC:
                            seen.add(key)
                            evidence.append(ev)
                tags.append(TopicTag(id=topic.id, score=detail.score, evidence=evidence))
        order = {t.id: t.index for t in tax.topics}
        tags.sort(key=lambda t: (-t.score, order[t.id]))
        details.sort(key=lambda d: (-d.score, order[d.id]))

        entities = [
            Entity(
                id=entries[e].entity_id,
                kind=entries[e].kind,
                name=entries[e].name,
                mentions=len({h[0] for h in hs}),
            )
            for e, hs in mentions.items()
        ]
        entities.sort(key=lambda ent: (-ent.mentions, ent.id))
        return Classification(
            topics=tags, entities=entities, taxonomy_version=tax.version, details=details
        )

    # ------------------------------------------------------------------------ helpers
    def _has_context(
        self, gid: int | None, window: int, h: _H, atom_words: dict[int, list[int]]
    ) -> bool:
        if gid is None:
            return True
        word = h[2]
        for a in self._context_atoms[gid]:
            if a == h[4]:
                continue
            for w in atom_words.get(a, ()):
                if abs(w - word) <= window:
                    return True
        return False

    def _evaluate(
        self,
        rule: Rule,
        ghits: dict[int, list[_H]],
        excl_spans: dict[int, list[tuple[int, int]]],
        body_start: int,
    ) -> list[tuple[int, bool, list[_H]]]:
        """Firings of ``rule``: (sentence, in title, evidence hits), one per sentence."""
        groups = [ghits[g] for g in rule.groups]
        own = self._topic_own_exclusions[rule.topic]
        if own and excl_spans:
            spans = [s for a in own for s in excl_spans.get(a, ())]
            if spans:
                groups = [[h for h in hs if not _overlaps(h[0], h[1], spans)] for hs in groups]
                if not all(groups):
                    return []
        if rule.field != "any":
            in_title = rule.field == "title"
            groups = [[h for h in hs if (h[0] < body_start) == in_title] for hs in groups]
            if not all(groups):
                return []
        blockers = ghits.get(rule.not_near, []) if rule.not_near is not None else []

        firings: list[tuple[int, bool, list[_H]]] = []
        if rule.within is None:  # same sentence
            by_sentence: list[dict[int, _H]] = []
            for hs in groups:
                first: dict[int, _H] = {}
                for h in hs:
                    first.setdefault(h[3], h)
                by_sentence.append(first)
            common = set(by_sentence[0])
            for d in by_sentence[1:]:
                common &= d.keys()
            if blockers and common:
                common -= {h[3] for h in blockers}
            for s in sorted(common):
                ev = [d[s] for d in by_sentence]
                firings.append((s, ev[0][0] < body_start, ev))
        elif rule.within == 0:  # anywhere in the article: once per anchor sentence
            seen: set[int] = set()
            rest = [hs[0] for hs in groups[1:]]
            for h in groups[0]:
                if h[3] in seen:
                    continue
                seen.add(h[3])
                firings.append((h[3], h[0] < body_start, [h, *rest]))
        else:
            window = rule.within
            seen = set()
            for anchor in groups[0]:
                if anchor[3] in seen:
                    continue
                word = anchor[2]
                if any(abs(b[2] - word) <= window for b in blockers):
                    continue
                ev = [anchor]
                for hs in groups[1:]:
                    near = next((h for h in hs if abs(h[2] - word) <= window), None)
                    if near is None:
                        break
                    ev.append(near)
                else:
                    seen.add(anchor[3])
                    firings.append((anchor[3], anchor[0] < body_start, ev))
        return firings

    def _score(
        self,
        ti: int,
        rule_firings: list[tuple[Rule, list[tuple[int, bool, list[_H]]]]],
        dampers: list[tuple[str, float]],
        text: str,
        body_start: int,
    ) -> TopicDetail:
        tax = self.taxonomy
        topic = tax.topics[ti]
        miss = 1.0  # probability that no positive evidence is right
        factor = 1.0
        out: list[RuleFiring] = []
        for rule, firings in rule_firings:
            evidence = [
                self._evidence(h, rule.id, text, body_start)
                for _, _, hs in firings[:MAX_FIRINGS_SHOWN]
                for h in hs
            ]
            if rule.weight < 0:
                contribution = -rule.weight
                factor *= 1.0 + rule.weight
            else:
                weights = sorted(
                    (
                        min(0.99, rule.weight * tax.title_boost) if in_title else rule.weight
                        for _, in_title, _ in firings
                    ),
                    reverse=True,
                )
                rule_miss = 1.0
                decay = 1.0
                for w in weights:
                    rule_miss *= 1.0 - w * decay
                    decay *= tax.repeat_decay
                contribution = 1.0 - rule_miss
                miss *= rule_miss
            out.append(
                RuleFiring(
                    rule=rule.id,
                    weight=rule.weight,
                    count=len(firings),
                    contribution=round(contribution, 4),
                    evidence=evidence,
                    note=rule.note,
                )
            )
        for _, f in dampers:
            factor *= f
        score = round(max(0.0, min(1.0, (1.0 - miss) * factor)), 4)
        return TopicDetail(
            id=topic.id,
            score=score,
            threshold=topic.threshold,
            tagged=score >= topic.threshold,
            firings=sorted(out, key=lambda f: -f.contribution),
            dampers=dampers,
        )

    @staticmethod
    def _evidence(h: _H, rule: str, text: str, body_start: int) -> Evidence:
        start, end = h[0], h[1]
        if start < body_start:
            return Evidence(text=text[start:end], field="title", start=start, end=end, rule=rule)
        return Evidence(
            text=text[start:end],
            field="body",
            start=start - body_start,
            end=end - body_start,
            rule=rule,
        )


def load_classifier(path: Path | None = None) -> Classifier:
    """A classifier for the taxonomy at ``path`` (``None``: the packaged default)."""
    return Classifier(load_taxonomy(path))
