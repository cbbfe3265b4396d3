"""The realistic stream of issue 10: about 10 % defence and security stories, the rest general
news, bodies of 1-10 KB, and the query subscriptions a desk of analysts would hold.

Stories start from the classifier's labelled examples (``services/classify/data/examples.jsonl``,
through :mod:`services.harness.articles`): a defence story is a variant of an example with
required topics, general news a variant of one without. Each body is padded to a size drawn
uniformly from 1-10 KB with paragraphs of neutral local-news words drawn afresh, so every
article is its own story (notify folds near-duplicates; a padded body is mostly new words)
with its own URL and content hash (ingest accepts it).

Subscriptions: ``count`` in all, almost all of them stored queries in the shapes analysts write
(the percolator benchmark's generator, :func:`services.bench.percolate.generate_subscription`),
plus a few desk subscriptions by defence topic, so that about one article in ten has at least
one webhook and the latency figure has samples.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from services.bench.percolate import Vocabulary, generate_subscription
from services.harness.articles import FILLER, examples, vary

#: Share of defence and security stories in the stream.
DEFENCE_SHARE = 0.10
BODY_BYTES = (1_000, 10_000)
#: Topic subscriptions of the desk (the rest are stored queries).
DESK_TOPICS = (
    ("air-defence-procurement", "arms-trade"),
    ("missile-test", "nuclear"),
    ("military-exercise", "alliance-relations"),
    ("cyber", "sanctions"),
)


@dataclass(frozen=True, slots=True)
class StreamArticle:
    url: str
    defence: bool
    payload: bytes
    """The ``__data__`` field as written to the ingest stream (JSON)."""


class RealisticStream:
    """Generates the stream's articles in order; ``tag`` keeps runs and phases apart."""

    def __init__(self, seed: int = 10, tag: str = "bench") -> None:
        self.rng = random.Random(seed)
        pool = examples()
        self.defence = [e for e in pool if e["labels"].get("required")]
        self.general = [e for e in pool if not e["labels"].get("required")]
        self.tag = tag
        self.n = 0

    def _padding(self, size: int) -> str:
        paragraphs, length = [], 0
        while length < size:
            words = self.rng.choices(FILLER, k=self.rng.randint(40, 90))
            paragraph = " ".join(words).capitalize() + "."
            paragraphs.append(paragraph)
            length += len(paragraph) + 2
        return "\n\n".join(paragraphs)

    def next(self) -> StreamArticle:
        n, self.n = self.n, self.n + 1
        defence = self.rng.random() < DEFENCE_SHARE
        example = self.rng.choice(self.defence if defence else self.general)
        body = vary(example["body"], self.rng)
        size = self.rng.randint(*BODY_BYTES)
        if len(body) < size:
            body = f"{body}\n\n{self._padding(size - len(body) - 2)}"
        url = f"https://{self.tag}.example/{example['id']}/{n}"
        payload = {
            "title": f"{example['title']} ({self.tag} {n})",
            "body": body[: BODY_BYTES[1]],
            "url": url,
            "source": self.rng.choice(["wire", "herald", "gazette", "courier"]),
        }
        return StreamArticle(url, defence, json.dumps(payload).encode())

    def take(self, count: int) -> list[StreamArticle]:
        return [self.next() for _ in range(count)]


def subscriptions(count: int, webhook_url: str, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` subscription requests: desk topic subscriptions, the rest stored queries."""
    rng = random.Random(seed)
    vocab = Vocabulary.build(rng)
    requests: list[dict[str, Any]] = []
    for i, topics in enumerate(DESK_TOPICS[: min(len(DESK_TOPICS), count)]):
        requests.append(
            {"name": f"desk {i}", "topics": list(topics), "webhook_url": f"{webhook_url}/desk{i}"}
        )
    for i in range(len(requests), count):
        sub = generate_subscription(rng, vocab, i)
        request = sub.model_dump(
            mode="json",
            include={"query", "topics", "min_score", "entities", "entities_match", "languages"},
            exclude_none=True,
            exclude_defaults=True,
        )
        request.update(name=f"query {i}", webhook_url=f"{webhook_url}/q{i}")
        requests.append(request)
    return requests
