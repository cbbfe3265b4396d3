"""Percolator benchmark: articles matched per second against 1,000 / 10,000 / 100,000 queries.

Stored queries and articles are generated from one defence-news vocabulary with the skew
real ones have: a few names (Patriot, S-400, Poland, NATO) appear in many queries, and a
long tail of 5,000 designations and programme names ("KS-172", "Falcon-Vulcan") and places
in few. Every subscription has a query, in the shapes analysts write in alert tools:

* one system or designation (25 %): ``"S 400"``, ``Patriot``
* alternatives narrowed by a country (20 %): ``(NASAMS OR "IRIS T") Poland``
* a system in a context in a country (15 %): ``"HQ 9" procurement Iran``
* an organisation doing one of two things, not a third (12 %): ``NATO (deal OR tender) -drill``
* a place of interest in a country (10 %): ``Rzeszow Poland``
* a system or a two-word phrase (10 %): ``Sentinel-Ajax OR "Poland deliveries"``
* entity filters plus a word (6 %), a topic at score >= 0.9 minus noise words (2 %)

and 30 % also filter on a topic, 8 % on a language. Articles are ~350 words of common
English with 5-12 domain mentions, 0-3 topics and their entities. With these, a stored
query matches 0.25-0.35 % of articles (printed as matches per article): a subscriber to a
10,000-article-a-day stream would get 25-35 alerts a day, the busy end of real use.

The figure is end to end for the matcher: tokenising the article, building its keys, the
presearch, and the exact check of the candidates. It is per CPU second of this process (the
matcher is single-threaded; CPU time keeps other load on the machine out of the figure; the
JSON output has the wall-clock rate too). The brute-force baseline (every subscription
checked in full) is measured in the same run at the smallest size, and the two must agree.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.bench.args import positive_ints
from services.common.models import (
    DEFAULT_TOPIC_IDS,
    Article,
    ClassifiedArticle,
    Entity,
    TopicTag,
    article_id_for,
    content_hash_for,
)
from services.notify.filters import PreparedArticle
from services.notify.percolator import Percolator
from services.notify.subscriptions import Subscription

DEFAULT_SIZES = (1_000, 10_000, 100_000)

TOPICS = DEFAULT_TOPIC_IDS

SYSTEMS = """Patriot S-400 S-300 S-500 THAAD NASAMS IRIS-T SAMP/T Aster Iron-Dome David's-Sling
Arrow-3 Pantsir Tor-M2 Buk-M3 HQ-9 KN-23 Hwasong-17 Kinzhal Iskander Sarmat Zircon Kalibr
Tomahawk HIMARS ATACMS Storm-Shadow Taurus JASSM Bayraktar Shahed-136 F-35 F-16 Su-57 Su-35
J-20 Eurofighter Rafale Gripen Leopard-2 Abrams K2 Type-055 Aegis SM-6 SM-3 CAMM Sky-Sabre
MIM-104 PAC-3 LTAMDS IBCS Skyguard Gepard Stinger Javelin Piorun Mistral Barak-8 Akash
Fateh-110 Shahab-3 Sejjil Agni-V Prithvi DF-21 DF-26 DF-41 JL-3 Trident Minuteman Sentinel
Avangard Poseidon Burevestnik Tu-160 B-21 MQ-9 Wing-Loong Orlan-10 Lancet Switchblade""".split()

COUNTRIES = """Poland Germany Turkey Russia Ukraine China Taiwan Japan Korea India Pakistan Iran
Israel Syria Iraq Yemen Saudi Emirates Qatar Egypt Libya Algeria Morocco Nigeria Mali Niger
France Britain Italy Spain Greece Romania Bulgaria Hungary Finland Sweden Norway Denmark
Estonia Latvia Lithuania Belarus Georgia Armenia Azerbaijan Kazakhstan Serbia Kosovo Australia
Indonesia Philippines Vietnam Malaysia Singapore Brazil Argentina Venezuela Canada Mexico
Switzerland Austria Netherlands Belgium Czechia Slovakia Croatia Moldova Cyprus""".split()

ORGANISATIONS = """NATO EU UN IAEA OSCE Pentagon Kremlin Lockheed Raytheon RTX Boeing Northrop
Rheinmetall Diehl MBDA Thales Leonardo Saab Hanwha Rafael Elbit Rosoboronexport Almaz-Antey
Roketsan Aselsan Baykar KAI Mitsubishi Airbus BAE Kongsberg Nammo PGZ DSCA Congress Bundeswehr
Wagner Hezbollah Houthis Hamas ISIS Taliban Lazarus APT28 Sandworm""".split()

CONTEXT = """procurement contract order delivery deliveries launcher launchers interceptor
interceptors radar radars battery batteries missile missiles test tests launch launched
sanctions embargo export exports licence deal deals tender budget funding exercise drills
drill manoeuvres deployment deployed airspace drone drones cyberattack ransomware breach
hackers satellite satellites orbit warhead enrichment uranium plutonium reactor inspectors
treaty alliance summit ministers brigade division frigate submarine corvette shipyard
artillery ammunition shells production factory plant offset co-production upgrade
modernisation intercept shootdown strike strikes attack attacks bombing hostage militants
pathogen nerve agent toxin laboratory warheads hypersonic ballistic cruise air-defence
missile-defence counter-drone electronic-warfare jamming""".split()

FILLER = """the of and to in a that is for on with as was by it said at from be has he have
are an this which will not but its were they had their been would who also more after
year one two new other about up last first when some could there than into over can only
most while government officials told statement week month years people including since
during under against between because where both made meeting plans part several however
spokesman ministry country countries state states national report reports reported added
expected according announced agreement talks visit president minister capital region
forces military defence defense security army navy air force service systems system
""".split()

_TAIL_PREFIXES = """K M T Z X KS HQ FK LY YJ CH AK RS PL SA BM PT ZU GM DM PRC""".split()
_TAIL_WORDS = """Alpha Bravo Falcon Kestrel Osprey Viper Cobra Mamba Condor Harrier Griffin
Sentinel Aurora Tempest Typhoon Cyclone Vulcan Titan Atlas Orion Vega Lyra Draco Hydra
Ajax Hector Argus Janus Nimbus Zephyr""".split()
_PLACES = """Rzeszow Ramstein Incirlik Sevastopol Kaliningrad Odesa Kharkiv Kherson Bakhmut
Tartus Hmeimim Djibouti Diego Guam Okinawa Busan Yokosuka Natanz Fordow Dimona Baikonur
Plesetsk Kapustin Vandenberg Kwajalein Hainan Sanya Gwadar Constanta Souda Rota Deveselu
Redzikowo Aegis-Ashore Sochi Minsk Tbilisi Yerevan Baku Tehran Isfahan Aden Hodeidah Tripoli
Benghazi Bamako Niamey""".split()


def _tail_vocabulary(rng: random.Random, size: int) -> list[str]:
    """Plausible designations and programme names: the long tail analysts subscribe to."""
    names: set[str] = set()
    while len(names) < size:
        if rng.random() < 0.6:
            names.add(f"{rng.choice(_TAIL_PREFIXES)}-{rng.randint(1, 999)}")
        else:
            names.add(f"{rng.choice(_TAIL_WORDS)}-{rng.choice(_TAIL_WORDS)}")
    return sorted(names)


@dataclass(frozen=True)
class Vocabulary:
    """The generator's word lists, each sampled with a Zipf-like skew."""

    systems: Sequence[str]
    countries: Sequence[str]
    organisations: Sequence[str]
    places: Sequence[str]
    context: Sequence[str]
    tail: Sequence[str]

    @classmethod
    def build(cls, rng: random.Random, tail_size: int = 5_000) -> Vocabulary:
        return cls(
            SYSTEMS, COUNTRIES, ORGANISATIONS, _PLACES, CONTEXT, _tail_vocabulary(rng, tail_size)
        )


def _zipf(rng: random.Random, items: Sequence[str], skew: float = 1.1) -> str:
    """Index ~ 1/rank^skew, without numpy: inverse transform over a cached cumulative table."""
    n = len(items)
    u = rng.random()
    # Continuous approximation of the Zipf CDF (good enough for a benchmark's skew).
    if skew == 1.0:
        idx = int(n**u) - 1
    else:
        a = 1.0 - skew
        idx = int(((n**a - 1.0) * u + 1.0) ** (1.0 / a)) - 1
    return items[min(max(idx, 0), n - 1)]


def _quote(term: str) -> str:
    """Designations such as S-400 are written as phrases, as users quote them."""
    term = term.replace("/", "-")
    return (
        f'"{term.replace("-", " ")}"'
        if "-" in term and term.isascii() and term[-1].isdigit()
        else term
    )


def generate_subscription(rng: random.Random, vocab: Vocabulary, index: int) -> Subscription:
    """One stored query in the shapes of real alert queries (see the module docstring)."""

    def system() -> str:
        return _quote(rng.choice(vocab.tail) if rng.random() < 0.7 else _zipf(rng, vocab.systems))

    def country() -> str:
        return _zipf(rng, vocab.countries)

    def ctx() -> str:
        return _zipf(rng, vocab.context, 0.9)

    fields: dict[str, Any] = {}
    shape = rng.random()
    if shape < 0.25:  # one programme or designation
        fields["query"] = system()
    elif shape < 0.45:  # alternatives, narrowed by a country
        alts = " OR ".join(dict.fromkeys(system() for _ in range(rng.randint(2, 3))))
        fields["query"] = f"({alts}) {country()}"
    elif shape < 0.60:  # a system in a context, in a country
        fields["query"] = f"{system()} {ctx()} {country()}"
    elif shape < 0.72:  # an organisation doing one of two things, not a third
        fields["query"] = f"{_zipf(rng, vocab.organisations)} ({ctx()} OR {ctx()}) -{ctx()}"
    elif shape < 0.82:  # a place of interest in a country
        fields["query"] = f"{rng.choice(vocab.places)} {country()}"
    elif shape < 0.92:  # a system, or a quoted phrase
        fields["query"] = f'{system()} OR "{country()} {ctx()}"'
    elif shape < 0.98:  # entity filter plus a word
        fields["entities"] = [rng.choice(vocab.tail), {"kind": "country", "id": country().lower()}]
        fields["entities_match"] = "all"
        fields["query"] = ctx()
    else:  # a topic with a high floor, minus noise words
        fields["topics"] = [rng.choice(TOPICS)]
        fields["min_score"] = 0.9
        fields["query"] = f"-{ctx()} -{ctx()}"
    if "topics" not in fields and rng.random() < 0.3:
        fields["topics"] = [rng.choice(TOPICS)]
    if rng.random() < 0.08:
        fields["languages"] = ["en"]
    return Subscription(id=f"sub_bench_{index:06d}", name=f"bench {index}", **fields)


def generate_article(rng: random.Random, vocab: Vocabulary, index: int) -> ClassifiedArticle:
    """~350 words of common English with 5-12 domain mentions, 0-3 topics, the entities."""
    words = [_zipf(rng, FILLER, 1.0) for _ in range(rng.randint(250, 450))]
    mentions: list[tuple[str, str]] = []
    for _ in range(rng.randint(5, 12)):
        kind = rng.random()
        if kind < 0.3:
            name = rng.choice(vocab.tail) if rng.random() < 0.7 else _zipf(rng, vocab.systems, 0.5)
            mentions.append(("system", name))
        elif kind < 0.55:
            mentions.append(("country", _zipf(rng, vocab.countries, 0.8)))
        elif kind < 0.7:
            mentions.append(("organisation", _zipf(rng, vocab.organisations, 0.6)))
        elif kind < 0.8:
            mentions.append(("other", rng.choice(vocab.places)))
        else:
            mentions.append(("", _zipf(rng, vocab.context, 0.6)))
    for _, name in mentions:
        words.insert(rng.randrange(len(words) + 1), name)
    title = " ".join([name for _, name in mentions[:3]] + words[:6])
    body = " ".join(words)
    content_hash = content_hash_for(title, body)
    article = Article(
        id=article_id_for(None, content_hash),
        title=title.capitalize(),
        body=body,
        source=rng.choice(("Defence Wire Service", "Continental Newswire", "Reuters", "TASS")),
        language="en",
        content_hash=content_hash,
    )
    topics = [
        TopicTag(id=t, score=round(rng.uniform(0.4, 1.0), 2))
        for t in rng.sample(TOPICS, rng.choice((0, 1, 1, 2, 2, 3)))
    ]
    entities = [
        Entity(kind=kind, id=name.lower(), name=name)  # type: ignore[arg-type]
        for kind, name in dict.fromkeys(mentions)
        if kind
    ]
    return ClassifiedArticle(
        article=article, topics=topics, entities=entities, taxonomy_version="bench"
    )


@dataclass(frozen=True)
class Result:
    """One size's figures. Rates are per CPU second of this (single-threaded) process."""

    size: int
    distinct_filters: int
    articles: int
    cpu_seconds: float
    wall_seconds: float
    matches_per_article: float
    candidates_per_article: float
    build_seconds: float
    brute_force_articles_per_s: float | None = None

    @property
    def articles_per_s(self) -> float:
        return self.articles / self.cpu_seconds if self.cpu_seconds else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored_queries": self.size,
            "distinct_filters": self.distinct_filters,
            "articles": self.articles,
            "articles_per_s": round(self.articles_per_s, 1),
            "wall_articles_per_s": round(self.articles / self.wall_seconds, 1),
            "matches_per_article": round(self.matches_per_article, 2),
            "candidates_per_article": round(self.candidates_per_article, 2),
            "index_build_s": round(self.build_seconds, 2),
            "brute_force_articles_per_s": (
                None
                if self.brute_force_articles_per_s is None
                else round(self.brute_force_articles_per_s, 1)
            ),
        }


def _time(
    percolator: Percolator, articles: Sequence[ClassifiedArticle], *, brute: bool = False
) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, matches) to prepare and match every article."""
    matches = 0
    match = percolator.brute_force if brute else percolator.match
    cpu, wall = time.process_time(), time.perf_counter()
    for classified in articles:
        matches += len(match(PreparedArticle.from_classified(classified)))
    return time.process_time() - cpu, time.perf_counter() - wall, matches


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    n_articles: int = 2_000,
    seed: int = 7,
    brute_articles: int = 200,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Grow one index through ``sizes`` and time the same articles at each size.

    The index is built, then ``gc.freeze()`` moves it out of the cyclic collector's sight,
    as the notify service should do after loading its subscriptions: otherwise every full
    collection walks 100,000 subscriptions for nothing. At the smallest size, brute force
    (every subscription checked in full) is timed on a sample and must give the same matches.
    """
    say = progress or (lambda _: None)
    rng = random.Random(seed)
    vocab = Vocabulary.build(rng)
    articles = [generate_article(rng, vocab, i) for i in range(n_articles)]
    prepared = [PreparedArticle.from_classified(a) for a in articles]
    percolator = Percolator()
    results: list[Result] = []
    made = 0
    try:
        for size in sorted(sizes):
            say(f"generating and indexing {size:,} stored queries")
            gc.unfreeze()
            fresh = [generate_subscription(rng, vocab, i) for i in range(made, size)]
            made = max(made, size)
            gc.disable()  # as Percolator.rebuild does
            start = time.perf_counter()
            for subscription in fresh:
                percolator.add(subscription)
            build = time.perf_counter() - start
            gc.enable()
            gc.collect()
            gc.freeze()
            say(f"matching {len(articles):,} articles against {size:,} stored queries")
            _time(percolator, articles[:100])  # warm-up
            cpu, wall, matches = _time(percolator, articles)
            candidates = sum(len(percolator.candidates(a)) for a in prepared)
            brute_rate: float | None = None
            if not results:
                # Brute force costs size x articles full checks: keep it to seconds.
                sample = articles[: max(10, min(brute_articles, 2_000_000 // size))]
                say(f"brute force on {len(sample)} articles")
                brute_cpu, _, _ = _time(percolator, sample, brute=True)
                brute_rate = len(sample) / brute_cpu
                for article in prepared[: len(sample)]:
                    fast = sorted(s.id for s in percolator.match(article))
                    slow = [s.id for s in percolator.brute_force(article)]
                    if fast != slow:
                        raise RuntimeError(f"percolator and brute force differ on {article}")
            results.append(
                Result(
                    size=size,
                    distinct_filters=percolator.distinct_filters,
                    articles=len(articles),
                    cpu_seconds=cpu,
                    wall_seconds=wall,
                    matches_per_article=matches / len(articles),
                    candidates_per_article=candidates / len(articles),
                    build_seconds=build,
                    brute_force_articles_per_s=brute_rate,
                )
            )
    finally:
        gc.unfreeze()
    return results


def format_results(results: Sequence[Result]) -> str:
    header = (
        f"{'stored queries':>15} {'articles/s':>11} {'matches/article':>16} "
        f"{'candidates/article':>19} {'distinct filters':>17} {'index build':>12}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r.size:>15,} {r.articles_per_s:>11,.0f} {r.matches_per_article:>16.1f} "
            f"{r.candidates_per_article:>19.1f} {r.distinct_filters:>17,} {r.build_seconds:>11.1f}s"
        )
    for r in results:
        if r.brute_force_articles_per_s is not None:
            speedup = r.articles_per_s / r.brute_force_articles_per_s
            lines.append(
                f"brute force at {r.size:,} stored queries: "
                f"{r.brute_force_articles_per_s:,.0f} articles/s "
                f"(the percolator is {speedup:,.1f}x faster; same matches)"
            )
    lines.append(
        "articles/s = articles prepared and matched per CPU second of one process (one core); "
        "candidates = subscriptions the presearch let through"
    )
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------


DEFAULT_SIZES_ARG = "1000,10000,100000"


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "percolate",
        help="articles/s matched against 1,000 / 10,000 / 100,000 stored queries",
        description=(
            "Generates stored queries and articles from a defence-news vocabulary, then "
            "prints articles matched per CPU second at each index size, with a brute-force "
            "baseline at the smallest size (see docs/notify-matching.md)."
        ),
    )
    bench.add_argument(
        "--sizes",
        type=positive_ints,
        default=positive_ints(DEFAULT_SIZES_ARG),
        help=f"stored query counts (default {DEFAULT_SIZES_ARG})",
    )
    bench.add_argument("--articles", type=int, default=2000, help="articles timed per size")
    bench.add_argument("--seed", type=int, default=7, help="generator seed")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench_percolate)


def cmd_bench_percolate(args: argparse.Namespace) -> int:
    if args.articles < 1:
        print("topicwatch: --articles must be at least 1", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    results = run(sizes=args.sizes, n_articles=args.articles, seed=args.seed, progress=progress)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_results(results))
    return 0
