"""The taxonomy and gazetteer files' schema: what an analyst may write, checked precisely.

Why data files: topics are an analyst's working tool, so they live in YAML an analyst can
read and edit (see docs/classifier.md for the rule language), not in code.  A bad edit must
be refused with an error that names the file, the topic (or gazetteer entry) and the field:
:class:`TaxonomyError` carries all three, and :func:`validation_error` turns pydantic's
report into one.  Compiling a valid spec is ``taxonomy.py``; reading the files ``loader.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.classify.matcher import pattern_tokens

EntityKind = Literal["system", "country", "organisation", "person", "other"]
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


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str  # as shown in errors
    text: str


#: libyaml's loader when PyYAML has it: a fifth of the pure loader's time on the default
#: taxonomy (which a reload parses, and the classify service reloads while it runs).
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, faster. A document libyaml refuses is parsed again by the pure
    loader, whose error messages are the more specific ("found character '\\t'...")."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return yaml.safe_load(text)


def parse_yaml(source: SourceFile) -> Any:
    try:
        return load_yaml(source.text)
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


def validation_error(
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
