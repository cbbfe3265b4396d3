"""The compiled taxonomy, and the compiler that builds it from a validated spec.

Loading is a pure function of the files' contents (``compile_taxonomy``) that either returns a
complete new taxonomy or raises :class:`~services.classify.spec.TaxonomyError`, so a bad edit
never takes down a running classifier: ``reload.py`` swaps in a new one only when it compiled.
The schema of the files is ``spec.py``; reading them from disk ``loader.py``.

Compilation turns every phrase of every topic, lexicon and gazetteer into an *atom* of one
shared :class:`~services.classify.matcher.PatternMatcher`, and every rule into groups of
atoms/entities, so that classification cost depends on what an article mentions, not on
how many topics there are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from services.classify.matcher import PatternMatcher, pattern_tokens
from services.classify.spec import (
    EntityKind,
    GazetteerSpec,
    SourceFile,
    TaxonomyError,
    TaxonomySpec,
    parse_yaml,
    validation_error,
)

_ALNUM_ONLY = re.compile(r"[\W_]")


# ------------------------------------------------------------------------ compiled form


@dataclass(slots=True)
class Entry:
    index: int
    entity_id: str  # "<kind>:<id>"
    kind: EntityKind
    name: str
    tags: frozenset[str]
    ambiguous_atoms: frozenset[int]
    exact: dict[int, str]  # atom -> the letters/digits it must show, case-sensitively
    context_group: int | None
    context_window: int
    exclude_atoms: frozenset[int]


@dataclass(frozen=True, slots=True)
class Group:
    atoms: frozenset[int]
    entries: frozenset[int]


@dataclass(slots=True)
class Rule:
    topic: int
    id: str
    weight: float
    groups: tuple[int, ...]
    within: int | None  # None: same sentence; 0: anywhere in the article; N: N words
    not_near: int | None
    min_count: int
    field: str
    note: str | None
    spec: dict[str, Any]


@dataclass(slots=True)
class Topic:
    index: int
    id: str
    name: str
    description: str
    threshold: float
    exclude_atoms: frozenset[int]
    rules: list[int]
    examples: list[str]


@dataclass(slots=True)
class Damper:
    id: str
    group: int
    min_count: int
    factor: float
    topics: frozenset[int] | None


@dataclass(slots=True)
class Taxonomy:
    """A validated, compiled taxonomy: immutable once built, safe to share between threads."""

    version: str
    declared_version: str
    name: str
    files: tuple[str, ...]
    title_boost: float
    repeat_decay: float
    brief_sentences: int
    matcher: PatternMatcher
    entries: list[Entry]
    groups: list[Group]
    rules: list[Rule]
    topics: list[Topic]
    dampers: list[Damper]
    global_exclude_atoms: frozenset[int]
    atom_entries: dict[int, tuple[int, ...]]
    atom_groups: dict[int, tuple[int, ...]]
    entry_groups: dict[int, tuple[int, ...]]
    trigger_rules: dict[int, tuple[int, ...]]
    exclusion_atoms: frozenset[int]
    context_groups: frozenset[int] = field(default_factory=frozenset)
    person_title_atoms: frozenset[int] = field(default_factory=frozenset)

    def topic_ids(self) -> list[str]:
        return [t.id for t in self.topics]


class _Compiler:
    def __init__(self, spec: TaxonomySpec, main: SourceFile) -> None:
        self.spec = spec
        self.main = main
        self.matcher = PatternMatcher()
        self.entries: list[Entry] = []
        self.entry_by_id: dict[str, int] = {}
        self.entry_alias_atoms: dict[int, set[int]] = {}
        self.groups: list[Group] = []
        self.group_index: dict[Group, int] = {}
        self.context_groups: set[int] = set()

    # -- references ---------------------------------------------------------------------
    def _select(self, ref: str, where: tuple[str | None, str]) -> set[int]:
        """Entries selected by ``@kind``, ``@kind/tag`` or ``@kind:id``."""
        body = ref[1:]
        if ":" in body:
            kind, _, ident = body.partition(":")
            entry = self.entry_by_id.get(f"{kind}:{ident}")
            if entry is None:
                raise TaxonomyError(
                    self.main.name,
                    f"{ref!r}: no gazetteer entry {kind}:{ident}",
                    topic=where[0],
                    field=where[1],
                )
            return {entry}
        kind, _, tag = body.partition("/")
        chosen = {
            e.index
            for e in self.entries
            if (kind in ("*", "any") or e.kind == kind) and (not tag or tag in e.tags)
        }
        if not chosen:
            raise TaxonomyError(
                self.main.name,
                f"{ref!r} selects no gazetteer entries",
                topic=where[0],
                field=where[1],
            )
        return chosen

    def _expand(
        self, items: list[str], where: tuple[str | None, str], stack: tuple[str, ...] = ()
    ) -> tuple[set[int], set[int]]:
        atoms: set[int] = set()
        entries: set[int] = set()
        for item in items:
            if item.startswith("$"):
                name = item[1:]
                if name not in self.spec.lexicons:
                    raise TaxonomyError(
                        self.main.name, f"unknown lexicon {item!r}", topic=where[0], field=where[1]
                    )
                if name in stack:
                    raise TaxonomyError(
                        self.main.name,
                        f"lexicon cycle: {' -> '.join((*stack, name))}",
                        topic=where[0],
                        field=where[1],
                    )
                a, e = self._expand(self.spec.lexicons[name], where, (*stack, name))
                atoms |= a
                entries |= e
            elif item.startswith("@"):
                entries |= self._select(item, where)
            else:
                atoms.add(self.matcher.add(item))
        return atoms, entries

    def group(self, items: list[str], where: tuple[str | None, str]) -> int:
        atoms, entries = self._expand(items, where)
        key = Group(frozenset(atoms), frozenset(entries))
        index = self.group_index.get(key)
        if index is None:
            index = len(self.groups)
            self.groups.append(key)
            self.group_index[key] = index
        return index

    def atoms(self, items: list[str], where: tuple[str | None, str]) -> frozenset[int]:
        atoms, entries = self._expand(items, where)
        for e in entries:
            atoms |= self.entry_alias_atoms[e]
        return frozenset(atoms)

    # -- gazetteers ---------------------------------------------------------------------
    def add_gazetteer(self, source: SourceFile, gaz: GazetteerSpec) -> list[tuple[int, list[str]]]:
        pending_context: list[tuple[int, list[str]]] = []
        for spec in gaz.entries:
            entity_id = f"{gaz.kind}:{spec.id}"
            if entity_id in self.entry_by_id:
                raise TaxonomyError(
                    source.name,
                    "duplicate gazetteer entry id",
                    topic=f"entry {spec.id!r}",
                    field="id",
                )
            alias_keys = {" ".join(pattern_tokens(a)[0]) for a in spec.aliases}
            for fname, listed in (("ambiguous", spec.ambiguous), ("exact", spec.exact)):
                for amb in listed:
                    if " ".join(pattern_tokens(amb)[0]) not in alias_keys:
                        raise TaxonomyError(
                            source.name,
                            f"{amb!r} is not one of the entry's aliases",
                            topic=f"entry {spec.id!r}",
                            field=fname,
                        )
            index = len(self.entries)
            alias_atoms = {self.matcher.add(a) for a in spec.aliases}
            ambiguous_atoms = frozenset(self.matcher.add(a) for a in spec.ambiguous)
            context = spec.context if spec.context is not None else gaz.context
            if ambiguous_atoms and not context:
                raise TaxonomyError(
                    source.name,
                    "ambiguous aliases need a 'context' (on the entry or the gazetteer)",
                    topic=f"entry {spec.id!r}",
                    field="context",
                )
            self.entries.append(
                Entry(
                    index=index,
                    entity_id=entity_id,
                    kind=gaz.kind,
                    name=spec.name,
                    tags=frozenset(spec.tags),
                    ambiguous_atoms=ambiguous_atoms,
                    exact={self.matcher.add(a): _ALNUM_ONLY.sub("", a) for a in spec.exact},
                    context_group=None,
                    context_window=gaz.context_window,
                    exclude_atoms=frozenset(self.matcher.add(x) for x in spec.exclude),
                )
            )
            self.entry_by_id[entity_id] = index
            self.entry_alias_atoms[index] = alias_atoms
            if ambiguous_atoms:
                pending_context.append((index, context or []))
        return pending_context


def compile_taxonomy(main: SourceFile, read: Callable[[str], SourceFile]) -> Taxonomy:
    """Validate and compile a taxonomy; ``read`` resolves gazetteer paths to their contents.

    Pure in the sense that matters for reloading: the result depends only on the contents
    returned for the files, and any problem raises :class:`TaxonomyError`.
    """
    raw = parse_yaml(main)
    if not isinstance(raw, dict):
        raise TaxonomyError(main.name, "the file must be a mapping with 'version' and 'topics'")
    try:
        spec = TaxonomySpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(main, raw, exc, "topics", "topic") from None

    seen_topics: set[str] = set()
    for i, tspec0 in enumerate(spec.topics):
        if tspec0.id in seen_topics:
            raise TaxonomyError(
                main.name, "duplicate topic id", topic=tspec0.id, field=f"topics[{i}].id"
            )
        seen_topics.add(tspec0.id)

    compiler = _Compiler(spec, main)
    sources = [main]
    pending: list[tuple[int, list[str]]] = []
    for gi, gpath in enumerate(spec.gazetteers):
        try:
            source = read(gpath)
        except OSError as exc:
            raise TaxonomyError(
                main.name,
                f"cannot read gazetteer {gpath!r}: {exc.strerror or exc}",
                field=f"gazetteers[{gi}]",
            ) from None
        sources.append(source)
        graw = parse_yaml(source)
        if not isinstance(graw, dict):
            raise TaxonomyError(
                source.name, "a gazetteer must be a mapping with 'kind' and 'entries'"
            )
        try:
            gaz = GazetteerSpec.model_validate(graw)
        except ValidationError as exc:
            raise validation_error(source, graw, exc, "entries", "entry") from None
        pending.extend(compiler.add_gazetteer(source, gaz))

    for index, context in pending:
        entry = compiler.entries[index]
        gid = compiler.group(context, (f"entry {entry.entity_id!r}", "context"))
        entry.context_group = gid
        compiler.context_groups.add(gid)

    global_exclude = compiler.atoms(spec.exclude, (None, "exclude"))
    topics: list[Topic] = []
    rules: list[Rule] = []
    for ti, tspec in enumerate(spec.topics):
        topic = Topic(
            index=ti,
            id=tspec.id,
            name=tspec.name,
            description=tspec.description,
            threshold=tspec.threshold if tspec.threshold is not None else spec.default_threshold,
            exclude_atoms=compiler.atoms(tspec.exclude, (tspec.id, "exclude")) | global_exclude,
            rules=[],
            examples=list(tspec.examples),
        )
        for ri, rspec in enumerate(tspec.rules):
            base = f"rules[{ri}]"
            groups: tuple[int, ...]
            if rspec.any is not None:
                groups = (compiler.group(rspec.any, (tspec.id, f"{base}.any")),)
            else:
                assert rspec.all is not None
                groups = tuple(
                    compiler.group(g, (tspec.id, f"{base}.all[{gi}]"))
                    for gi, g in enumerate(rspec.all)
                )
            within: int | None
            if rspec.within == "sentence":
                within = None
            elif rspec.within == "article":
                within = 0
            else:
                within = int(rspec.within)
            not_near = (
                compiler.group(rspec.not_near, (tspec.id, f"{base}.not_near"))
                if rspec.not_near
                else None
            )
            topic.rules.append(len(rules))
            rules.append(
                Rule(
                    topic=ti,
                    id=rspec.id,
                    weight=rspec.weight,
                    groups=groups,
                    within=within,
                    not_near=not_near,
                    min_count=rspec.min_count,
                    field=rspec.field,
                    note=rspec.note,
                    spec=rspec.model_dump(exclude_none=True),
                )
            )
        topics.append(topic)

    topic_index = {t.id: t.index for t in topics}
    dampers: list[Damper] = []
    for di, dspec in enumerate(spec.dampers):
        if dspec.topics is not None:
            unknown = [t for t in dspec.topics if t not in topic_index]
            if unknown:
                raise TaxonomyError(
                    main.name, f"unknown topic(s) {unknown}", field=f"dampers[{di}].topics"
                )
        dampers.append(
            Damper(
                id=dspec.id,
                group=compiler.group(dspec.any, (None, f"dampers[{di}].any")),
                min_count=dspec.min_count,
                factor=dspec.factor,
                topics=None
                if dspec.topics is None
                else frozenset(topic_index[t] for t in dspec.topics),
            )
        )

    # Inverted indexes: atom -> entries / groups, entry -> groups, group -> rules it triggers.
    atom_entries: dict[int, list[int]] = {}
    for e, atoms in compiler.entry_alias_atoms.items():
        for a in atoms:
            atom_entries.setdefault(a, []).append(e)
    atom_groups: dict[int, list[int]] = {}
    entry_groups: dict[int, list[int]] = {}
    # Groups that are only disambiguation contexts are checked per alias and never
    # collected per article: leave them out of the indexes.
    used = {g for r in rules for g in r.groups} | {d.group for d in dampers}
    used |= {r.not_near for r in rules if r.not_near is not None}
    for gi, group in enumerate(compiler.groups):
        if gi in compiler.context_groups and gi not in used:
            continue
        for a in group.atoms:
            atom_groups.setdefault(a, []).append(gi)
        for e in group.entries:
            entry_groups.setdefault(e, []).append(gi)
    # Each rule is checked only when its *rarest* group has hits, so a group shared by a
    # thousand rules (a common verb list) does not make every article touch every rule.
    group_use: dict[int, int] = {}
    for rule in rules:
        for g in rule.groups:
            group_use[g] = group_use.get(g, 0) + 1
    trigger_rules: dict[int, list[int]] = {}
    for ri, rule in enumerate(rules):
        trigger = min(rule.groups, key=lambda g: (group_use[g], g))
        trigger_rules.setdefault(trigger, []).append(ri)

    exclusion_atoms = set(global_exclude)
    for t in topics:
        exclusion_atoms |= t.exclude_atoms
    for entry in compiler.entries:
        exclusion_atoms |= entry.exclude_atoms

    person_title_atoms = compiler.atoms(spec.person_titles, (None, "person_titles"))
    compiler.matcher.compile()
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.rsplit("/", 1)[-1].encode())
        digest.update(b"\0")
        digest.update(source.text.encode())
        digest.update(b"\0")
    return Taxonomy(
        version=f"{spec.version}+{digest.hexdigest()[:10]}",
        declared_version=spec.version,
        name=spec.name,
        files=tuple(s.name for s in sources),
        title_boost=spec.title_boost,
        repeat_decay=spec.repeat_decay,
        brief_sentences=spec.brief_sentences,
        matcher=compiler.matcher,
        entries=compiler.entries,
        groups=compiler.groups,
        rules=rules,
        topics=topics,
        dampers=dampers,
        global_exclude_atoms=global_exclude,
        atom_entries={k: tuple(v) for k, v in atom_entries.items()},
        atom_groups={k: tuple(v) for k, v in atom_groups.items()},
        entry_groups={k: tuple(v) for k, v in entry_groups.items()},
        trigger_rules={k: tuple(v) for k, v in trigger_rules.items()},
        exclusion_atoms=frozenset(exclusion_atoms),
        context_groups=frozenset(compiler.context_groups),
        person_title_atoms=person_title_atoms,
    )
