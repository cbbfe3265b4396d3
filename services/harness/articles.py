"""Generated input for the harnesses: a realistic mix of defence stories and general news.

Every article is a variant of one of the classifier's labelled examples
(``services/classify/data/examples.jsonl``: 66 defence and security stories, 55 general news and
hard negatives): the example's title, and its body with each function word ("the", "of", ...)
and half the other lower-case words the taxonomy does not use replaced by words drawn at
random; the input number goes in the title and URL. So each variant

* has a URL and content hash of its own (ingest accepts it);
* mostly keeps the example's topics (the classifier reads the taxonomy's words, which stay;
  about 97 % of variants of a tagged example keep a tag — the offline expectation classifies
  every variant itself, so the count is exact either way);
* is its own story for notify, not a near-duplicate of another variant: ``distinct_stories``
  computes each variant's MinHash signature exactly as notify does and draws again while it
  comes within :data:`MAX_SIMILARITY` of an earlier variant of the same example (distinct
  examples are at most 0.15 apart). Each article therefore gets its own alert, and the
  expected alerts are a plain per-article count.

A share of the inputs are deliberate re-sends of an earlier article (ingest answers
"duplicate") and invalid submissions (ingest rejects them with a reason).
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Kind = Literal["new", "resend", "invalid"]

#: Neutral local-news words, the source of replacements.
FILLER = (
    "the council said on its website that the weather over the weekend would stay mild and "
    "dry with light winds from the west while the market reopened after the holiday and "
    "shoppers returned to the high street where several cafes had changed hands over the "
    "summer months a local football club announced a new coach and a youth programme for "
    "the autumn season the library extended its opening hours and the museum showed a "
    "collection of old photographs of the harbour the railway timetable changes next month "
    "and commuters were asked to check their connections a bakery won a regional prize for "
    "its bread and the school choir performed at the town hall on friday evening the mayor "
    "thanked volunteers who planted trees along the river path and cleaned the park after "
    "the festival tourism figures rose slightly compared with last year according to the "
    "office that counts visitors at the museum and the castle gardens farmers reported a "
    "good harvest of apples and pears while the price of milk stayed flat the hospital "
    "opened a new wing for outpatients and the bus company added evening services on two "
    "routes residents discussed parking at a public meeting that lasted three hours"
).split()
#: Words swapped in every variant, and what they are swapped for (neutral, short words).
FUNCTION_WORDS = (
    "the a an of to in on at for with by from and or as its their this that is was were are "
    "has have had be been will would but after into over about than also"
).split()
_FUNCTION_SET = frozenset(FUNCTION_WORDS)
REPLACEMENTS = tuple(sorted(_FUNCTION_SET | {w for w in FILLER if len(w) <= 5}))
_WORD = re.compile(r"[A-Za-z]+")
#: Notify folds articles at an estimated similarity of 0.4; variants stay under this margin.
MAX_SIMILARITY = 0.34


@dataclass(frozen=True, slots=True)
class Item:
    """One input to publish and what the harness expects ingest to make of it."""

    n: int
    kind: Kind
    payload: dict[str, Any]
    example_id: str | None = None


def examples() -> list[dict[str, Any]]:
    text = (
        resources.files("services.classify.data")
        .joinpath("examples.jsonl")
        .read_text(encoding="utf-8")
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@functools.cache
def taxonomy_words() -> frozenset[str]:
    """Every word of the packaged taxonomy and gazetteers: what the classifier may look for."""
    data = resources.files("services.classify.data")
    texts = [data.joinpath("taxonomy.yaml").read_text(encoding="utf-8")]
    gazetteers = data.joinpath("gazetteers")
    texts += [
        f.read_text(encoding="utf-8") for f in gazetteers.iterdir() if f.name.endswith(".yaml")
    ]
    return frozenset(w.lower() for text in texts for w in _WORD.findall(text))


def vary(text: str, rng: random.Random, share: float = 0.5) -> str:
    """``text`` with every function word, and ``share`` of the other lower-case words that the
    taxonomy does not use, replaced by a random short word."""
    keep = taxonomy_words()

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        if lower not in _FUNCTION_SET and not (
            word.islower() and len(word) >= 3 and lower not in keep and rng.random() < share
        ):
            return word
        other = rng.choice(REPLACEMENTS)
        return other.capitalize() if word[0].isupper() else other

    return _WORD.sub(swap, text)


class _Stories:
    """Signatures of the variants of each example so far, to keep every variant its own story."""

    def __init__(self) -> None:
        from services.notify.neardup import signature

        self.signature = signature
        self.by_example: dict[str, list[Any]] = {}

    def distinct(self, example_id: str, title: str, body: str) -> bool:
        import numpy as np

        sig = self.signature(title, body)
        earlier = self.by_example.setdefault(example_id, [])
        if earlier:
            same = (np.asarray(earlier) == sig).mean(axis=1)
            if float(same.max()) >= MAX_SIMILARITY:
                return False
        earlier.append(sig)
        return True


def generate(
    count: int,
    *,
    seed: int = 2026,
    resend_share: float = 0.04,
    invalid_share: float = 0.02,
    host: str = "harness.example",
    distinct_stories: bool = True,
) -> list[Item]:
    """``count`` inputs in publication order; re-sends repeat an earlier new article exactly.

    ``distinct_stories=False`` skips the near-duplicate check (faster; the soak does not need
    one alert per article)."""
    rng = random.Random(seed)
    pool = examples()
    stories = _Stories() if distinct_stories else None
    items: list[Item] = []
    news: list[Item] = []
    for n in range(count):
        roll = rng.random()
        if news and roll < resend_share:
            earlier = rng.choice(news)
            items.append(Item(n, "resend", dict(earlier.payload), earlier.example_id))
        elif roll < resend_share + invalid_share:
            bad: dict[str, Any] = rng.choice(
                [
                    {"body": "An article without a title.", "url": f"https://{host}/bad/{n}"},
                    {"title": f"Headline {n} with no body", "url": f"https://{host}/bad/{n}"},
                    {"title": f"Bad URL {n}", "body": "Some text.", "url": "not a url"},
                    {"title": 42, "body": f"Title is a number ({n})."},
                ]
            )
            items.append(Item(n, "invalid", bad))
        else:
            example = pool[rng.randrange(len(pool))]
            body = vary(example["body"], rng)
            for _ in range(20):
                if stories is None or stories.distinct(example["id"], example["title"], body):
                    break
                body = vary(example["body"], rng)
            else:
                raise RuntimeError(f"no distinct variant of {example['id']} in 20 draws")
            payload = {
                "title": f"{example['title']} ({n})",
                "body": body,
                "url": f"https://{host}/{example['id']}/{n}",
                "source": rng.choice(["wire", "herald", "gazette", "courier"]),
            }
            item = Item(n, "new", payload, example["id"])
            items.append(item)
            news.append(item)
    return items
