"""Subscriptions: what an analyst asked for, and the pure filter that decides if an article fits.

A subscription is a set of optional filters, all AND-ed (an empty filter lets everything
through):

* ``topics``      any of these topic ids; with ``min_score``, one of them must reach it
* ``min_score``   without ``topics``: any topic of the article reaches it
* ``entities``    entity references (``"S-400"`` or ``{"kind": "country", "id": "turkey"}``),
                  matched against the ids and names of the classifier's entities; any of them
                  (default) or all of them (``entities_match: "all"``)
* ``sources``     any of these sources: the article's source name, or its URL's host
                  (``reuters.com`` also matches ``www.reuters.com`` and ``uk.reuters.com``)
* ``languages``   any of these ISO 639 codes (region subtags are ignored: ``en-GB`` is ``en``);
                  an article whose language is unknown does not pass a language filter
* ``query``       the boolean query language of :mod:`services.notify.query`

plus delivery settings kept here as plain data (channel, mode, rate limit, mute windows), whose
behaviour lives in the delivery modules. A disabled subscription (by its owner, or by the
delivery when a webhook answers 410) matches nothing until it is enabled again.

Validation errors name the field (pydantic's ``loc``); an invalid query is refused with the
:class:`~services.notify.query.QueryError` message, caret line included.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.common.models import ClassifiedArticle, Entity, utcnow
from services.notify.query import Document, Query, QueryError, parse, tokenize

EntityKind = Literal["system", "country", "organisation", "person", "other"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Presearch key namespaces. Query words are used bare: tokens are letters and digits only,
#: so they can never collide with a key containing ":".
TOPIC_KEY = "t:"
ENTITY_KEY = "e:"
SOURCE_KEY = "s:"
LANGUAGE_KEY = "l:"
MIN_SCORE_KEY = "m:"  # + tenth of the article's best topic score; "t<tenth>:<topic>" per topic

_TOPIC_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(12)


def new_read_token() -> str:
    """The subscription's own bearer token for its alert stream and history (not an API key)."""
    return "swr_" + secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    """A Standard Webhooks ``whsec_`` secret (the delivery's signing module defines the format)."""
    from services.notify.signing import generate_secret

    return generate_secret()


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


def _source_filter_key(value: str) -> str:
    value = value.strip().lower()
    if "/" in value or ("." in value and " " not in value):  # a domain or URL
        keys = host_keys(value if "//" in value else "http://" + value)
        if keys:
            return keys[0]
    return normalise_name(value)


# --- field types (shared by the stored model, the create and the patch requests) ---------------


def _check_query(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        parse(value)
    except QueryError as exc:
        raise ValueError(str(exc)) from None
    return value


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _topic_id(value: str) -> str:
    value = value.strip().lower()
    if not _TOPIC_ID.match(value):
        raise ValueError(
            "a topic id is lower-case letters, digits, '-', '_' or '.',"
            " e.g. 'air-defence-procurement'"
        )
    return value


def _language(value: str) -> str:
    code = language_code(value)
    if code is None or not _LANGUAGE.match(code):
        raise ValueError(
            "a language is an ISO 639 code such as 'en' or 'fr' ('en-GB' is read as 'en')"
        )
    return code


def _source(value: str) -> str:
    if not _source_filter_key(value):
        raise ValueError(
            "a source needs letters or digits (a name or a domain such as 'reuters.com')"
        )
    return value.strip()


def _webhook_url(value: str | None) -> str | None:
    """Syntax only; the delivery's SSRF check (which needs DNS and settings) runs on top."""
    if value is None:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("webhook_url must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("webhook_url has no host")
    if parts.username or parts.password:
        raise ValueError("webhook_url must not carry credentials; the payload is signed instead")
    return value


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("email must be an address such as analyst@example.org")
    return value


TopicId = Annotated[str, AfterValidator(_topic_id)]
LanguageCode = Annotated[str, AfterValidator(_language)]
SourceName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_source)]
QueryText = Annotated[str | None, Field(max_length=2_000), AfterValidator(_check_query)]
WebhookUrl = Annotated[str | None, Field(max_length=2_048), AfterValidator(_webhook_url)]
EmailAddress = Annotated[str | None, Field(max_length=254), AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class EntityFilter(BaseModel):
    """One entity reference: a plain string, or ``{"kind": ..., "id"|"name": ...}``.

    The reference is compared, as tokens, with both the id and the name of the article's
    entities, so ``"S-400"``, ``"s 400"`` and the classifier's id ``s-400`` all meet;
    ``kind`` narrows it (Georgia the country, not a person called Georgia).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str = Field(min_length=1, max_length=200)
    kind: EntityKind | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"ref": data}
        if isinstance(data, dict) and "ref" not in data:
            data = dict(data)
            ident, name = data.pop("id", None), data.pop("name", None)
            if ident is not None and name is not None:
                raise ValueError("give either 'id' or 'name', not both")
            data["ref"] = ident if ident is not None else name
        return data

    @field_validator("ref")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not normalise_name(value):
            raise ValueError("an entity reference needs letters or digits")
        return value.strip()

    @property
    def key(self) -> str:
        """The presearch / comparison key: ``kind:tokens`` or just ``tokens``."""
        name = normalise_name(self.ref)
        return f"{self.kind}:{name}" if self.kind else name


class Silence(BaseModel):
    """A one-off mute window: alerts created inside it are kept and delivered when it ends."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime
    end: AwareDatetime
    comment: str | None = Field(default=None, max_length=500)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError("end must be after start")
        return value


class QuietHours(BaseModel):
    """Recurring mute window in a time zone, e.g. 22:00-07:00 Europe/Warsaw (may cross midnight).

    ``days`` are the days on which a window *starts*; empty means every day.
    """

    model_config = ConfigDict(extra="forbid")

    start: time
    end: time
    timezone: str = "UTC"
    days: list[Weekday] = Field(default_factory=list, max_length=7)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Warsaw')"
            ) from None
        return value

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: time, info: ValidationInfo) -> time:
        if info.data.get("start") == value:
            raise ValueError(
                "end must differ from start (the window would be empty or the whole day)"
            )
        return value

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[Weekday]) -> list[Weekday]:
        return _dedupe(value)


class RateLimit(BaseModel):
    """At most ``max_alerts`` per ``per_minutes``; the excess waits for the next digest."""

    model_config = ConfigDict(extra="forbid")

    max_alerts: int = Field(ge=1, le=100_000)
    per_minutes: int = Field(ge=1, le=7 * 24 * 60)


class RetiringSecret(BaseModel):
    """A previous webhook secret, still signed with until ``expires_at`` (secret rotation)."""

    secret: str
    expires_at: AwareDatetime


DeliveryMode = Literal["immediate", "digest"]


class _Settable(BaseModel):
    """The fields a user sets, with their validation; shared by the stored model and requests."""

    name: Name
    topics: list[TopicId] = Field(default_factory=list, max_length=100)
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    entities: list[EntityFilter] = Field(default_factory=list, max_length=100)
    entities_match: Literal["any", "all"] = "any"
    sources: list[SourceName] = Field(default_factory=list, max_length=200)
    languages: list[LanguageCode] = Field(default_factory=list, max_length=50)
    query: QueryText = None

    webhook_url: WebhookUrl = None
    email: EmailAddress = None
    delivery: DeliveryMode = "immediate"
    digest_interval_minutes: int | None = Field(
        default=None, ge=1, le=7 * 24 * 60, validate_default=True
    )
    rate_limit: RateLimit | None = None
    silences: list[Silence] = Field(default_factory=list, max_length=100)
    quiet_hours: list[QuietHours] = Field(default_factory=list, max_length=14)

    @field_validator("topics", "entities", "sources", "languages")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        return _dedupe(value)

    @field_validator("digest_interval_minutes")
    @classmethod
    def _digest_needs_interval(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("delivery") == "digest" and value is None:
            raise ValueError("required when delivery is 'digest' (minutes between digests)")
        return value


class SubscriptionCreate(_Settable):
    """``POST /v1/subscriptions`` body. Unknown fields are refused, so a typo is not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubscriptionPatch(BaseModel):
    """``PATCH /v1/subscriptions/{id}`` body: only the fields present change; ``null`` clears.

    Each field is validated here with the same rules as at creation; the merged result is
    validated again as a whole (e.g. switching to ``digest`` needs an interval).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    topics: list[TopicId] | None = Field(default=None, max_length=100)
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    entities: list[EntityFilter] | None = Field(default=None, max_length=100)
    entities_match: Literal["any", "all"] | None = None
    sources: list[SourceName] | None = Field(default=None, max_length=200)
    languages: list[LanguageCode] | None = Field(default=None, max_length=50)
    query: QueryText = None
    webhook_url: WebhookUrl = None
    email: EmailAddress = None
    delivery: DeliveryMode | None = None
    digest_interval_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    rate_limit: RateLimit | None = None
    silences: list[Silence] | None = Field(default=None, max_length=100)
    quiet_hours: list[QuietHours] | None = Field(default=None, max_length=14)
    disabled: bool | None = None
    disabled_reason: str | None = Field(default=None, max_length=500)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (explicit nulls included), as plain data."""
        return self.model_dump(mode="json", include=self.model_fields_set)


_LIST_FIELDS = frozenset(("topics", "entities", "sources", "languages", "silences", "quiet_hours"))
_DEFAULTED_FIELDS = {"entities_match": "any", "delivery": "immediate", "disabled": False}


class Subscription(_Settable):
    """A stored subscription (JSON in Redis); unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(default_factory=new_subscription_id, min_length=1, max_length=64)
    read_token: str = Field(default_factory=new_read_token)
    webhook_secret: str | None = None
    previous_webhook_secrets: list[RetiringSecret] = Field(default_factory=list)
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    disabled: bool = False
    disabled_reason: str | None = None

    _filter: CompiledFilter | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # Compiled once: the percolator checks it for every candidate of every article.
        self._filter = CompiledFilter.of(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Copies recompile their filter: ``update`` bypasses validation and post-init."""
        copy = super().model_copy(update=update, deep=deep)
        copy._filter = CompiledFilter.of(copy)
        return copy

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create(
        cls, request: SubscriptionCreate, *, now: datetime | None = None, id: str | None = None
    ) -> Subscription:
        """A new subscription from a create request: fresh id, read token, webhook secret."""
        now = now or utcnow()
        data = request.model_dump(mode="json")
        data.update(created_at=now, updated_at=now)
        if id is not None:
            data["id"] = id
        if request.webhook_url:
            data["webhook_secret"] = new_webhook_secret()
        return cls.model_validate(data)

    def apply(self, patch: SubscriptionPatch, *, now: datetime | None = None) -> Subscription:
        """This subscription with the patch applied (a new object; validated as a whole)."""
        data = self.model_dump(mode="json")
        for name, value in patch.changes().items():
            if value is None and name in _LIST_FIELDS:
                value = []
            elif value is None and name in _DEFAULTED_FIELDS:
                value = _DEFAULTED_FIELDS[name]
            data[name] = value
        if data.get("webhook_url") and not data.get("webhook_secret"):
            data["webhook_secret"] = new_webhook_secret()
        if patch.disabled is False and "disabled_reason" not in patch.model_fields_set:
            data["disabled_reason"] = None
        data["updated_at"] = (now or utcnow()).isoformat()
        return type(self).model_validate(data)

    # -- matching ------------------------------------------------------------------------------

    @property
    def compiled(self) -> CompiledFilter:
        assert self._filter is not None  # set by model_post_init
        return self._filter

    @property
    def compiled_query(self) -> Query | None:
        return self.compiled.query

    def matches(self, article: PreparedArticle) -> bool:
        """All filters AND-ed; see the module docstring for each one's meaning."""
        return self.compiled.matches(article)

    def presearch_clauses(self) -> list[frozenset[str]]:
        """Key sets an article must hit (one key of each) to possibly match; see percolator."""
        return self.compiled.presearch_clauses()

    def public(self) -> dict[str, Any]:
        """The JSON an API returns to the owner: everything but the webhook secrets' history."""
        return self.model_dump(mode="json", exclude={"previous_webhook_secrets"})


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
            clauses.append(frozenset(f"t{bucket}:{t}" for t in f.topics))
        elif f.topics:
            clauses.append(frozenset(TOPIC_KEY + t for t in f.topics))
        elif f.min_score is not None:
            clauses.append(frozenset((f"{MIN_SCORE_KEY}{score_bucket(f.min_score)}",)))
        if f.entity_keys:
            keys = [ENTITY_KEY + k for k in f.entity_keys]
            if f.entities_all:
                clauses.extend(frozenset((k,)) for k in keys)
            else:
                clauses.append(frozenset(keys))
        if f.source_keys:
            clauses.append(frozenset(SOURCE_KEY + k for k in f.source_keys))
        if f.languages:
            clauses.append(frozenset(LANGUAGE_KEY + code for code in f.languages))
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
        absent: frozenset[str] = frozenset()
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
    def of(cls, sub: _Settable) -> CompiledFilter:
        """The compiled filter of ``sub``; identical filters share one (cached) instance."""
        return _compile_filter(
            (
                bool(getattr(sub, "disabled", False)),
                tuple(sorted(set(sub.topics))),
                sub.min_score,
                tuple(sorted(set(sub.languages))),
                tuple(sorted({_source_filter_key(s) for s in sub.sources})),
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
        topics=frozenset(topics),
        min_score=min_score,
        languages=frozenset(languages),
        source_keys=frozenset(sources),
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
            source_keys.add(_source_filter_key(art.source))
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


def matches(subscription: Subscription, article: ClassifiedArticle | PreparedArticle) -> bool:
    """Does ``article`` pass every filter of ``subscription``? (Brute force; pure.)"""
    if isinstance(article, ClassifiedArticle):
        article = PreparedArticle.from_classified(article)
    return subscription.matches(article)
