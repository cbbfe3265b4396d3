"""Subscriptions: what an analyst asked for (the API's models and the stored form).

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
:class:`~services.notify.query.QueryError` message, caret line included.  The filters'
compiled form, which the percolator checks, is ``filters.py``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime, time
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

from services.common.models import ClassifiedArticle, utcnow
from services.notify.filters import (
    CompiledFilter,
    PreparedArticle,
    language_code,
    normalise_name,
    source_filter_key,
)
from services.notify.query import Query, QueryError, parse

EntityKind = Literal["system", "country", "organisation", "person", "other"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
    if not source_filter_key(value):
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


#: One set of given field names per distinct combination (a handful in practice; bounded).
_FIELDS_GIVEN: dict[frozenset[str], set[str]] = {}


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
        # pydantic keeps, per instance, the names of the fields given: for a stored document
        # (23 of them) a 2.3 KB set, over half of the model's memory, times every
        # subscription in every notify process. Instances given the same fields share one;
        # pydantic copies it before changing it (model_copy), and nothing reads a stored
        # subscription's set (patches and requests keep their own).
        given = self.__pydantic_fields_set__
        shared = _FIELDS_GIVEN.get(frozenset(given))
        if shared is None and len(_FIELDS_GIVEN) < 1_024:
            shared = _FIELDS_GIVEN[frozenset(given)] = given
        if shared is not None:
            object.__setattr__(self, "__pydantic_fields_set__", shared)

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


def matches(subscription: Subscription, article: ClassifiedArticle | PreparedArticle) -> bool:
    """Does ``article`` pass every filter of ``subscription``? (Brute force; pure.)"""
    if isinstance(article, ClassifiedArticle):
        article = PreparedArticle.from_classified(article)
    return subscription.matches(article)
