"""Subscriptions: validation that names the field, create/patch semantics, and the filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_sync
from pydantic import ValidationError

from services.common.models import (
    Article,
    ClassifiedArticle,
    Entity,
    TopicTag,
    article_id_for,
    content_hash_for,
)
from services.notify.filters import PreparedArticle
from services.notify.percolator import Percolator
from services.notify.subscriptions import (
    EntityFilter,
    Subscription,
    SubscriptionCreate,
    SubscriptionPatch,
    matches,
)

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def errors(exc: ValidationError) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}


def create(**fields: Any) -> Subscription:
    fields.setdefault("name", "desk")
    return Subscription.create(SubscriptionCreate(**fields), now=NOW)


@pytest.fixture
def seed(seed_article: dict) -> ClassifiedArticle:
    """The example S-400 story (examples/articles), tagged as the classifier would tag it."""
    content_hash = content_hash_for(seed_article["title"], seed_article["body"])
    url = "https://www.globalsecurity.org/wmd/library/news/russia/2019/russia-191127-sputnik01.htm"
    article = Article(
        id=article_id_for(url, content_hash),
        title=seed_article["title"],
        body=seed_article["body"],
        url=url,
        canonical_url=url,
        source="Sputnik News",
        language="en-GB",
        content_hash=content_hash,
    )
    return ClassifiedArticle(
        article=article,
        topics=[
            TopicTag(id="air-defence-procurement", score=0.92),
            TopicTag(id="arms-trade", score=0.81),
            TopicTag(id="alliance-relations", score=0.55),
        ],
        entities=[
            Entity(id="s-400", kind="system", name="S-400", mentions=4),
            Entity(id="turkey", kind="country", name="Turkey", mentions=5),
            Entity(id="russia", kind="country", name="Russia", mentions=2),
            Entity(id="nato", kind="organisation", name="NATO", mentions=2),
        ],
        taxonomy_version="test",
    )


# --- creation and validation ------------------------------------------------------------------


def test_create_generates_ids_tokens_and_a_webhook_secret() -> None:
    sub = create(topics=["air-defence-procurement"], webhook_url="https://hooks.example.org/tw")
    assert sub.id.startswith("sub_") and sub.read_token.startswith("swr_")
    assert sub.webhook_secret and sub.webhook_secret.startswith("whsec_")
    assert sub.created_at == sub.updated_at == NOW
    assert sub.delivery == "immediate" and not sub.disabled
    assert create().webhook_secret is None  # SSE/history only: no secret needed
    assert create().id != create().id
    assert "previous_webhook_secrets" not in sub.public()


def test_values_are_normalised() -> None:
    sub = create(
        topics=["Air-Defence-Procurement ", "air-defence-procurement"],
        languages=["EN-gb", "en", "fr"],
        entities=["S-400", {"kind": "country", "id": "Turkey"}, {"name": "NATO"}],
        query="   ",
    )
    assert sub.topics == ["air-defence-procurement"]
    assert sub.languages == ["en", "fr"]
    assert [e.key for e in sub.entities] == ["s 400", "country:turkey", "nato"]
    assert sub.query is None  # blank means no query filter


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"query": "S-400 AND (Turkey"}, "query", "missing ')'"),
        ({"query": "Patriot OR"}, "query", "after 'OR'"),
        ({"topics": ["Air Defence"]}, "topics.0", "topic id"),
        ({"languages": ["english"]}, "languages.0", "ISO 639"),
        ({"min_score": 1.5}, "min_score", "less than or equal to 1"),
        ({"webhook_url": "ftp://example.org/x"}, "webhook_url", "http:// or https://"),
        ({"webhook_url": "https://user:pw@example.org/x"}, "webhook_url", "credentials"),
        ({"webhook_url": "https:///nohost"}, "webhook_url", "no host"),
        ({"email": "not-an-address"}, "email", "address"),
        ({"delivery": "digest"}, "digest_interval_minutes", "required when delivery is 'digest'"),
        ({"delivery": "hourly"}, "delivery", "'immediate' or 'digest'"),
        (
            {"rate_limit": {"max_alerts": 0, "per_minutes": 60}},
            "rate_limit.max_alerts",
            "greater than or equal to 1",
        ),
        (
            {"quiet_hours": [{"start": "22:00", "end": "22:00"}]},
            "quiet_hours.0.end",
            "must differ",
        ),
        (
            {"quiet_hours": [{"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}]},
            "quiet_hours.0.timezone",
            "unknown time zone",
        ),
        (
            {"silences": [{"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T09:00:00Z"}]},
            "silences.0.end",
            "after start",
        ),
        (
            {"silences": [{"start": "2026-12-01T10:00:00", "end": "2026-12-01T12:00:00Z"}]},
            "silences.0.start",
            "timezone",
        ),
        ({"entities": [{"id": "turkey", "name": "Turkey"}]}, "entities.0", "not both"),
        ({"entities": ["--"]}, "entities.0.ref", "letters or digits"),
        ({"sources": ["..."]}, "sources.0", "letters or digits"),
        ({"topic": ["typo"]}, "topic", "Extra inputs"),
    ],
)
def test_invalid_fields_are_refused_with_the_field_named(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        SubscriptionCreate(name="desk", **fields)
    found = errors(info.value)
    assert field in found, found
    assert message in found[field]


def test_query_error_message_points_at_the_problem() -> None:
    with pytest.raises(ValidationError) as info:
        SubscriptionCreate(name="desk", query='"air defence" AND (Poland OR')
    message = errors(info.value)["query"]
    assert "after 'OR'" in message and "(at position 29)" in message
    assert message.splitlines()[-1].endswith("^")


def test_valid_delivery_settings() -> None:
    sub = create(
        webhook_url="https://hooks.example.org/tw",
        email="analyst@example.org",
        delivery="digest",
        digest_interval_minutes=60,
        rate_limit={"max_alerts": 10, "per_minutes": 60},
        silences=[{"start": "2026-12-24T00:00:00+01:00", "end": "2026-12-27T00:00:00+01:00"}],
        quiet_hours=[
            {"start": "22:00", "end": "07:00", "timezone": "Europe/Warsaw", "days": ["mon", "mon"]}
        ],
    )
    assert sub.digest_interval_minutes == 60 and sub.rate_limit and sub.rate_limit.max_alerts == 10
    assert sub.quiet_hours[0].days == ["mon"]
    assert sub.silences[0].end - sub.silences[0].start == timedelta(days=3)


def test_entity_filter_forms() -> None:
    assert EntityFilter.model_validate("S-400") == EntityFilter(ref="S-400")
    assert EntityFilter.model_validate({"kind": "country", "id": "turkey"}).key == "country:turkey"
    assert EntityFilter.model_validate({"name": "Hezbollah"}).key == "hezbollah"


# --- patch ----------------------------------------------------------------------------------------


def test_patch_changes_only_what_is_sent() -> None:
    sub = create(topics=["cyber"], query="ransomware", languages=["en"])
    later = NOW + timedelta(hours=1)
    patched = sub.apply(SubscriptionPatch(query="ransomware -exercise"), now=later)
    assert patched.query == "ransomware -exercise"
    assert patched.topics == ["cyber"] and patched.languages == ["en"]
    assert patched.id == sub.id and patched.read_token == sub.read_token
    assert patched.created_at == NOW and patched.updated_at == later
    assert sub.query == "ransomware"  # the original is untouched


def test_patch_null_clears_and_validates_the_whole() -> None:
    sub = create(topics=["cyber"], query="ransomware", min_score=0.5)
    cleared = sub.apply(
        SubscriptionPatch.model_validate({"topics": None, "query": None, "min_score": None})
    )
    assert cleared.topics == [] and cleared.query is None and cleared.min_score is None
    with pytest.raises(ValidationError) as info:
        sub.apply(SubscriptionPatch(delivery="digest"))
    assert "digest_interval_minutes" in errors(info.value)
    with pytest.raises(ValidationError) as info:
        SubscriptionPatch.model_validate({"query": "a AND"})
    assert "query" in errors(info.value)
    with pytest.raises(ValidationError) as info:
        SubscriptionPatch.model_validate({"id": "sub_mine"})
    assert "id" in errors(info.value)
    with pytest.raises(ValidationError) as info:
        sub.apply(SubscriptionPatch.model_validate({"name": None}))
    assert "name" in errors(info.value)


def test_patch_disable_enable_and_add_webhook() -> None:
    sub = create(topics=["cyber"])
    gone = sub.apply(SubscriptionPatch(disabled=True, disabled_reason="webhook answered 410"))
    assert gone.disabled and gone.disabled_reason == "webhook answered 410"
    back = gone.apply(SubscriptionPatch(disabled=False))
    assert not back.disabled and back.disabled_reason is None
    hooked = back.apply(SubscriptionPatch(webhook_url="https://hooks.example.org/x"))
    assert hooked.webhook_secret and hooked.webhook_secret.startswith("whsec_")


def test_stored_json_round_trip_through_redis(
    redis_client: redis_sync.Redis, seed: ClassifiedArticle
) -> None:
    sub = create(
        topics=["arms-trade"],
        entities=[{"kind": "country", "id": "turkey"}],
        query="S-400 -football",
        quiet_hours=[{"start": "22:00", "end": "07:00"}],
    )
    redis_client.set(f"test:subscription:{sub.id}", sub.model_dump_json())
    loaded = Subscription.model_validate_json(redis_client.get(f"test:subscription:{sub.id}"))
    assert loaded == sub
    assert matches(loaded, seed)
    # Fields added by a later version are ignored rather than refused when reading.
    stored = sub.model_dump(mode="json") | {"added_in_v2": True}
    assert Subscription.model_validate(stored).id == sub.id


def test_model_copy_recompiles_the_filter(seed: ClassifiedArticle) -> None:
    sub = create(query="S-400")
    assert matches(sub, seed)
    assert not matches(sub.model_copy(update={"disabled": True}), seed)
    assert not matches(sub.model_copy(update={"query": "Patriot"}), seed)


# --- the filter -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),  # no filter: everything
        ({"topics": ["air-defence-procurement"]}, True),
        ({"topics": ["cyber", "arms-trade"]}, True),  # any of
        ({"topics": ["cyber"]}, False),
        ({"topics": ["alliance-relations"], "min_score": 0.6}, False),  # 0.55 < 0.6
        ({"topics": ["alliance-relations", "arms-trade"], "min_score": 0.8}, True),
        ({"min_score": 0.9}, True),  # any topic reaches 0.9
        ({"min_score": 0.95}, False),
        ({"languages": ["en"]}, True),  # en-GB is en
        ({"languages": ["fr", "de"]}, False),
        ({"sources": ["Sputnik News"]}, True),
        ({"sources": ["sputnik   news"]}, True),
        ({"sources": ["globalsecurity.org"]}, True),  # the URL's host, www. dropped
        ({"sources": ["https://globalsecurity.org/"]}, True),
        ({"sources": ["security.org"]}, False),  # a suffix of the name is not the domain
        ({"sources": ["Reuters"]}, False),
        ({"entities": ["S-400"]}, True),
        ({"entities": ["s 400"]}, True),
        ({"entities": ["Poland", "Turkey"]}, True),  # any of, by default
        ({"entities": ["Poland", "Turkey"], "entities_match": "all"}, False),
        ({"entities": ["Russia", "Turkey"], "entities_match": "all"}, True),
        ({"entities": [{"kind": "person", "name": "Turkey"}]}, False),  # kind narrows
        ({"entities": [{"kind": "organisation", "id": "nato"}]}, True),
        ({"query": '"S-400" Turkey -football'}, True),
        ({"query": "Patriot OR THAAD"}, False),
        ({"topics": ["arms-trade"], "query": "Akar", "languages": ["en"]}, True),
        ({"topics": ["arms-trade"], "query": "Akar", "languages": ["ru"]}, False),
        ({"topics": ["arms-trade"], "disabled": True}, False),
    ],
)
def test_matches(seed: ClassifiedArticle, fields: dict[str, Any], expected: bool) -> None:
    disabled = fields.pop("disabled", False)
    sub = create(**fields)
    if disabled:
        sub = sub.apply(SubscriptionPatch(disabled=True))
    assert matches(sub, seed) is expected
    prepared = PreparedArticle.from_classified(seed)
    assert sub.matches(prepared) is expected
    percolator = Percolator()  # the percolator's key-based path agrees
    percolator.add(sub)
    assert (percolator.match(prepared) == [sub]) is expected


def test_unknown_language_and_no_topics(seed: ClassifiedArticle) -> None:
    bare = seed.model_copy(
        update={"topics": [], "article": seed.article.model_copy(update={"language": None})}
    )
    assert not matches(create(languages=["en"]), bare)
    assert not matches(create(min_score=0.0), bare)  # no topic reaches any floor
    assert matches(create(query="S-400"), bare)


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        (["S-400"], True),
        (["S400"], True),
        (["s 400"], True),
        (["S-400 Triumf"], True),
        (["system:s-400"], True),
        ([{"kind": "system", "name": "S-400"}], True),
        ([{"kind": "country", "name": "Turkey"}, {"kind": "system", "id": "S-400"}], True),
        ([{"kind": "country", "id": "TR"}], True),
        ([{"kind": "country", "id": "country:TR"}], True),
        ([{"kind": "person", "name": "S-400"}], False),
        (["S-500"], False),
        (["India"], False),
    ],
)
def test_entity_filters_meet_the_classifiers_entities(
    seed: ClassifiedArticle, entities: list[Any], expected: bool
) -> None:
    """The classifier names entities ``system:s-400`` / "S-400 Triumf" and ``country:TR`` /
    "Turkey": the spellings a subscriber writes (the issue's "country Turkey, system S-400")
    must meet them, through the brute-force filter and the percolator alike."""
    from services.classify.classifier import load_classifier

    a = seed.article
    found = load_classifier().classify(a.title, a.body).entities
    article = seed.model_copy(update={"entities": [Entity(**e.model_dump()) for e in found]})
    sub = create(entities=entities, entities_match="all")
    assert matches(sub, article) is expected
    percolator = Percolator()
    percolator.add(sub)
    assert (percolator.match(PreparedArticle.from_classified(article)) == [sub]) is expected


def test_subscriptions_given_the_same_fields_share_one_set_of_their_names() -> None:
    """pydantic keeps the names of the fields given per instance: 2.3 KB for a stored
    document, over half of a subscription's memory in every notify process. Instances given
    the same fields share one set; a copy with changes gets its own, and the shared one
    is left as it was."""
    first = Subscription(id="a", name="a", query="patriot", webhook_url="https://example.org/h")
    second = Subscription.model_validate_json(first.model_dump_json())
    third = Subscription.model_validate_json(
        Subscription(id="c", name="c", topics=["cyber"]).model_dump_json()
    )
    stored = second.model_fields_set
    assert third.model_fields_set is stored and "webhook_url" in stored
    names = set(stored)
    changed = second.model_copy(update={"name": "renamed"})
    assert changed.name == "renamed" and changed.model_fields_set is not stored
    assert second.model_fields_set == names == stored
    assert second.apply(SubscriptionPatch(name="again")).name == "again"
