"""Taxonomy and gazetteer data files: schema, validation with precise errors, compilation.

Why data files: topics are an analyst's working tool, so they live in YAML an analyst can
read and edit (see docs/classifier.md for the rule language), not in code.  A bad edit must
be refused with an error that names the file, the topic (or gazetteer entry) and the field,
and must never take down a running classifier: loading is a pure function of the files'
contents (``compile_taxonomy``) that either returns a complete new taxonomy or raises
:class:`TaxonomyError`, and ``services/classify/reload.py`` swaps in a new classifier only
when the new files are valid.

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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.classify.matcher import PatternMatcher, pattern_tokens

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TAXONOMY = DATA_DIR / "taxonomy.yaml"

EntityKind = Literal["system", "country", "organisation", "person", "other"]
_ALNUM_ONLY = re.compile(r"[\W_]")
_ID_RE = r"^[a-z0-9][a-z0-9._-]*$"
_ENTRY_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


class TaxonomyError(ValueError):
    """A taxonomy or gazetteer file is invalid; names the file, topic/entry and field."""

    def __init__(
        self, file: str, message: str, *, topic: str | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.topic = topic
        self.field = field
        self.message = message
        where = [file]
        if topic is not None:
            where.append(f"topic {topic!r}" if not topic.startswith("entry ") else topic)
        if field:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where) + f": {message}")


# --------------------------------------------------------------------------- file schema


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Items = list[str]


def _check_items(items: list[str]) -> list[str]:
    for item in items:
        if not item or not item.strip():
            raise ValueError("empty pattern")
        if item[0] not in "$@" and not pattern_tokens(item)[0]:
            raise ValueError(f"pattern {item!r} has no letters or digits")
    return items


class RuleSpec(_Spec):
    """One rule: ``any`` (one group) or ``all`` (groups that must co-occur)."""

    id: str = Field(pattern=_ID_RE)
    weight: float = Field(ge=-1.0, le=0.99)
    any: Items | None = None
    all: list[Items] | None = None
    within: Literal["sentence", "article"] | int = "sentence"
    not_near: Items = Field(default_factory=list)
    min_count: int = Field(default=1, ge=1, le=100)
    field: Literal["any", "title", "body"] = "any"
    note: str | None = None

    @field_validator("any", "not_near")
    @classmethod
    def _items(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_items(value)

    @field_validator("all")
    @classmethod
    def _groups(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        if value is None:
            return None
        if len(value) < 2:
            raise ValueError("'all' needs at least two groups (use 'any' for one)")
        for group in value:
            if not group:
                raise ValueError("empty group")
            _check_items(group)
        return value

    @field_validator("within", mode="before")
    @classmethod
    def _within_form(cls, value: Any) -> Any:
        # One message for a wrong form, not one per member of the union
        # ("within.literal['sentence','article']: ..., within.int: ...").
        if value in ("sentence", "article") or type(value) is int:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise ValueError("must be 'sentence', 'article' or a number of words (1-500)")

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | int) -> str | int:
        if isinstance(value, int) and not 1 <= value <= 500:
            raise ValueError("a word window must be between 1 and 500")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if value == 0:
            raise ValueError("weight 0 does nothing; remove the rule instead")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> RuleSpec:
        if (self.any is None) == (self.all is None):
            raise ValueError("a rule needs exactly one of 'any' or 'all'")
        return self


class TopicSpec(_Spec):
    id: str = Field(pattern=_ID_RE)
    name: str = Field(min_length=1)
    description: str = ""
    threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    exclude: Items = Field(default_factory=list)
    rules: list[RuleSpec] = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)

    @field_validator("exclude")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        return _check_items(value)

    @model_validator(mode="after")
    def _unique_rules(self) -> TopicSpec:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        if all(rule.weight < 0 for rule in self.rules):
            raise ValueError("a topic needs at least one rule with a positive weight")
        return self


class DamperSpec(_Spec):
    """Article-level negative context: when it fires, scores of ``topics`` are multiplied."""

    id: str = Field(pattern=_ID_RE)
    any: Items
    min_count: int = Field(default=1, ge=1, le=100)
    factor: float = Field(ge=0.0, lt=1.0)
    topics: list[str] | None = None
    note: str | None = None

    @field_validator("any")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        return _check_items(value)


class TaxonomySpec(_Spec):
    version: str = Field(min_length=1, max_length=64)
    name: str = "taxonomy"
    description: str = ""
    default_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    title_boost: float = Field(default=1.3, ge=1.0, le=3.0)
    repeat_decay: float = Field(default=0.5, ge=0.0, le=1.0)
    brief_sentences: int = Field(default=0, ge=0, le=10)
    gazetteers: list[str] = Field(default_factory=list)
    lexicons: dict[str, Items] = Field(default_factory=dict)
    exclude: Items = Field(default_factory=list)
    dampers: list[DamperSpec] = Field(default_factory=list)
    person_titles: Items = Field(
        default_factory=list,
        description='Titles that introduce a person\'s name ("Foreign Minister", "Gen.").',
    )
    topics: list[TopicSpec] = Field(min_length=1)

    @field_validator("exclude", "person_titles")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        return _check_items(value)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # "version: 3" in YAML is a number; an analyst means the text "3".
        return str(value) if isinstance(value, int | float) else value

    @field_validator("lexicons")
    @classmethod
    def _lexicons(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, items in value.items():
            if not re.match(_ID_RE, name):
                raise ValueError(f"lexicon name {name!r} must match {_ID_RE}")
            if not items:
                raise ValueError(f"lexicon {name!r} is empty")
            _check_items(items)
        return value


class EntrySpec(_Spec):
    id: str = Field(pattern=_ENTRY_ID_RE)
    name: str = Field(min_length=1)
    aliases: Items = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    ambiguous: Items = Field(default_factory=list)
    exact: Items = Field(default_factory=list)
    context: Items | None = None
    exclude: Items = Field(default_factory=list)
    note: str | None = None

    @field_validator("aliases", "ambiguous", "exact", "exclude")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith(("$", "@")):
                raise ValueError(f"{item!r}: aliases are plain phrases, not references")
        return _check_items(value)


class GazetteerSpec(_Spec):
    kind: EntityKind
    description: str = ""
    context: Items = Field(default_factory=list)
    context_window: int = Field(default=8, ge=1, le=100)
    entries: list[EntrySpec] = Field(min_length=1)


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


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str  # as shown in errors
    text: str


def _yaml(source: SourceFile) -> Any:
    try:
        return yaml.safe_load(source.text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TaxonomyError(source.name, f"not valid YAML{where}: {problem}") from None


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _validation_error(
    source: SourceFile, raw: Any, exc: ValidationError, container: str, label: str
) -> TaxonomyError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    owner: str | None = None
    rest = loc
    if len(loc) >= 2 and loc[0] == container and isinstance(loc[1], int):
        owner = f"#{loc[1]}"
        try:
            item = raw[container][loc[1]]
            if isinstance(item, dict) and item.get("id"):
                owner = str(item["id"])
        except (KeyError, IndexError, TypeError):
            pass
        rest = loc[2:]
        if label == "entry":
            owner = f"entry {owner!r}"
    message = err["msg"]
    others = exc.errors()[1:]
    if others:
        more = "; ".join(f"{_loc_to_field(tuple(o['loc']))}: {o['msg']}" for o in others[:3])
        message += f" (also: {more}" + (", ..." if len(others) > 3 else "") + ")"
    return TaxonomyError(source.name, message, topic=owner, field=_loc_to_field(rest) or None)


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
    raw = _yaml(main)
    if not isinstance(raw, dict):
        raise TaxonomyError(main.name, "the file must be a mapping with 'version' and 'topics'")
    try:
        spec = TaxonomySpec.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(main, raw, exc, "topics", "topic") from None

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
        graw = _yaml(source)
        if not isinstance(graw, dict):
            raise TaxonomyError(
                source.name, "a gazetteer must be a mapping with 'kind' and 'entries'"
            )
        try:
            gaz = GazetteerSpec.model_validate(graw)
        except ValidationError as exc:
            raise _validation_error(source, graw, exc, "entries", "entry") from None
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


def _read_source(path: Path) -> SourceFile:
    try:
        return SourceFile(str(path), path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TaxonomyError(str(path), f"not UTF-8 text: {exc.reason}") from None


def resolve_path(path: Path | None) -> Path:
    """The taxonomy file for ``path``: ``None`` is the packaged default, a folder its
    ``taxonomy.yaml``."""
    if path is None:
        return DEFAULT_TAXONOMY
    path = Path(path)
    return path / "taxonomy.yaml" if path.is_dir() else path


def source_paths(path: Path | None) -> list[Path]:
    """The taxonomy file and the gazetteer files it names (for change detection)."""
    path = resolve_path(path)
    paths = [path]
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return paths
    if isinstance(raw, dict) and isinstance(raw.get("gazetteers"), list):
        paths += [path.parent / str(g) for g in raw["gazetteers"]]
    return paths


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and compile a taxonomy file (``None``: the packaged default taxonomy; a folder:
    its ``taxonomy.yaml``)."""
    path = resolve_path(path)
    try:
        main = _read_source(path)
    except OSError as exc:
        raise TaxonomyError(str(path), f"cannot read taxonomy: {exc.strerror or exc}") from None
    base = path.parent
    return compile_taxonomy(main, lambda rel: _read_source(base / rel))
