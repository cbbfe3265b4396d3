"""Event contracts shared by ingest, classify and notify.

Every event on a topicwatch stream is one of these models, serialised as plain JSON in the
entry's ``__data__`` field (FastStream reads plain JSON bodies, and so can any other consumer).
Each carries ``schema_version`` so that a consumer can refuse what it does not understand
instead of guessing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def _flat_metadata_value(value: Any) -> Any:
    """One error naming what is wrong, instead of one per member of the union below
    (``metadata.n.constrained-str``, ``metadata.n.int``, ... told a producer nothing)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise PydanticCustomError(
        "metadata_value",
        "must be a string, number, boolean or null, not {kind}",
        {"kind": _json_kind(value)},
    )


MetadataValue = Annotated[str | int | float | bool | None, BeforeValidator(_flat_metadata_value)]

#: The default taxonomy's topic ids: a contract (subscriptions, dashboards and alert rules name
#: them), so they are fixed here and the shipped taxonomy is tested against them.
DEFAULT_TOPIC_IDS: tuple[str, ...] = (
    "air-defence-procurement",
    "arms-trade",
    "missile-test",
    "sanctions",
    "nuclear",
    "military-exercise",
    "cyber",
    "alliance-relations",
    "chemical-biological",
    "space-security",
    "terrorism",
)

_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _published_at_value(value: Any) -> Any:
    """A date string (parsed later, by ingest), a Unix timestamp, or null: one error otherwise,
    not one per member of the union (``published_at.datetime``, ``published_at.constrained-str``).
    """
    if value is None or isinstance(value, str | datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _DATETIME.validate_python(value)
        except ValidationError as exc:
            raise PydanticCustomError(
                "published_at",
                "timestamp {value} is out of range: {why}",
                {"value": value, "why": exc.errors()[0]["msg"]},
            ) from None
    raise PydanticCustomError(
        "published_at",
        "must be a date string (ISO-8601, or as the page prints it) or a Unix timestamp, "
        "not {kind}",
        {"kind": _json_kind(value)},
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def article_id_for(canonical_url: str | None, content_hash: str) -> str:
    """Deterministic article id: from the canonical URL when there is one, else the content.

    The same story re-sent (by API, stream or feed) gets the same id, which is what the
    de-duplication in ingest and the alert ids in notify rest on.
    """
    basis = f"url:{canonical_url}" if canonical_url else f"content:{content_hash}"
    return "art_" + _sha256(basis)[:24]


def content_hash_for(title: str, body: str) -> str:
    """Hash of the normalised title and body, whitespace- and case-folded."""
    folded = " ".join(f"{title}\n{body}".split()).casefold()
    return _sha256(folded)


def alert_id_for(subscription_id: str, article_id: str) -> str:
    """Deterministic alert id: one alert per (subscription, article), however often it is seen."""
    return "alt_" + _sha256(f"{subscription_id}\x00{article_id}")[:24]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than this service ({SCHEMA_VERSION})"
            )
        return value


class ArticleSubmission(BaseModel):
    """What a producer sends: the API body, one stream entry, one line of a file, a feed item.

    Unknown fields are ignored (files such as the shared samples carry ``labels``), so that
    producers can evolve; everything topicwatch uses is validated and named in errors.
    """

    model_config = ConfigDict(
        extra="ignore",
        str_strip_whitespace=True,
        # The rules across fields, for readers of the schema (services/common/submission.py
        # enforces them): some text (body or html), and a title unless a page can supply one.
        json_schema_extra={
            "allOf": [
                {"anyOf": [{"required": ["body"]}, {"required": ["html"]}]},
                {"anyOf": [{"required": ["title"]}, {"required": ["html"]}]},
            ]
        },
    )

    id: str | None = Field(default=None, max_length=512, description="Producer's own id.")
    title: str | None = Field(
        default=None,
        max_length=2_000,
        description="Required unless html is sent: then the page's own title is used "
        "(og:title, <title>, the first <h1>).",
    )
    body: str | None = Field(default=None, max_length=5_000_000)
    html: str | None = Field(default=None, max_length=10_000_000)
    url: str | None = Field(default=None, max_length=4_096)
    source: str | None = Field(default=None, max_length=512)
    published_at: Annotated[datetime | str | None, BeforeValidator(_published_at_value)] = None
    language: str | None = Field(default=None, max_length=35)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class Dateline(BaseModel):
    place: str | None = None
    agency: str | None = None


class Article(_Event):
    """A validated, normalised, de-duplicated article (``articles:accepted``)."""

    type: Literal["article"] = "article"
    id: str
    external_id: str | None = None
    title: str
    body: str
    url: str | None = None
    canonical_url: str | None = None
    source: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    content_hash: str
    dateline: Dateline | None = None
    removed: list[str] = Field(
        default_factory=list, description="Page chrome cut from the body, kept for audit."
    )
    received_via: Literal["api", "stream", "feed", "file"] = "api"
    ingested_at: datetime = Field(default_factory=utcnow)


class Evidence(BaseModel):
    """Why a topic fired: the matched text, where it is, and which rule matched it."""

    text: str
    field: Literal["title", "body"] = "body"
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    rule: str


class TopicTag(BaseModel):
    id: str
    score: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)


class Entity(BaseModel):
    id: str
    kind: Literal["system", "country", "organisation", "person", "other"]
    name: str
    mentions: int = Field(default=1, ge=1)


class ClassifiedArticle(_Event):
    """An article with its topics (``articles:classified``)."""

    type: Literal["classified_article"] = "classified_article"
    article: Article
    topics: list[TopicTag]
    entities: list[Entity] = Field(default_factory=list)
    taxonomy_version: str
    classified_at: datetime = Field(default_factory=utcnow)

    def topic_ids(self) -> list[str]:
        return [topic.id for topic in self.topics]


class AlertArticle(BaseModel):
    id: str
    title: str
    url: str | None = None
    source: str | None = None
    published_at: datetime | None = None


class AlertTopic(BaseModel):
    id: str
    score: float


class Alert(_Event):
    """One alert for one subscription about one article (``alerts``)."""

    type: Literal["alert"] = "alert"
    id: str
    subscription_id: str
    article: AlertArticle
    topics: list[AlertTopic]
    also_reported_by: list[AlertArticle] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    #: When ingest accepted the article: notify measures ingested -> delivered from it.
    #: None on alerts written before it existed.
    ingested_at: datetime | None = None

    def webhook_payload(self, timestamp: datetime | None = None) -> dict[str, Any]:
        """The ``alert.created`` body sent to webhooks."""
        return {
            "type": "alert.created",
            "timestamp": (timestamp or utcnow()).isoformat(),
            "data": {
                "alert_id": self.id,
                "subscription_id": self.subscription_id,
                "article": self.article.model_dump(mode="json"),
                "topics": [topic.model_dump(mode="json") for topic in self.topics],
                "also_reported_by": [a.model_dump(mode="json") for a in self.also_reported_by],
            },
        }


class FieldError(BaseModel):
    field: str
    message: str


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as (field path, message) pairs a producer can act on.

    The path is dotted, with list positions in brackets: ``[3].metadata.region``.
    """
    return errors_as_fields(exc.errors(include_url=False), prefix)


def errors_as_fields(
    errors: Sequence[Mapping[str, Any]], prefix: str = "", *, request: bool = False
) -> list[FieldError]:
    """Pydantic-style error dicts as FieldErrors; ``request`` drops FastAPI's leading
    ``body``/``query``/``path`` location, which names where, not what."""
    out = []
    for error in errors:
        loc = list(error["loc"])
        if request and loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        path = prefix
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append(FieldError(field=path or "(body)", message=message))
    return out


class Rejection(_Event):
    """An input that could not become an article (``articles:rejected``), with the reason."""

    type: Literal["rejection"] = "rejection"
    reason: str
    errors: list[FieldError] = Field(default_factory=list)
    payload: str = Field(description="The original input, as received (decoded leniently).")
    received_via: Literal["api", "stream", "feed", "file"] = "stream"
    source_entry_id: str | None = None
    rejected_at: datetime = Field(default_factory=utcnow)


class DeadLetter(_Event):
    """A stream entry that failed processing ``max_deliveries`` times (``dead-letters``)."""

    type: Literal["dead_letter"] = "dead_letter"
    stream: str
    group: str
    entry_id: str
    deliveries: int
    reason: str
    payload: str
    dead_at: datetime = Field(default_factory=utcnow)
