"""``topicwatch bench classify``: articles per second, default taxonomy vs 1,000 topics.

Why both figures in one run: the claim that matters is that matching cost does not grow
with the number of topics (one automaton for every pattern, rules checked only when their
rarest group is present).  So the benchmark classifies the *same* articles, in the same
process, with the default taxonomy and with a generated taxonomy of 1,000 topics built the
way analysts grow a taxonomy: per-system and per-country watch lists that reuse the shared
lexicons and gazetteers, plus keyword topics that add thousands of new phrases to the
automaton.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.classify import compiled
from services.classify.classifier import Classifier
from services.classify.cli import DEFAULT_SAMPLES, PACKAGED_EXAMPLES
from services.classify.loader import DATA_DIR, DEFAULT_TAXONOMY, load_taxonomy
from services.classify.spec import SourceFile
from services.classify.taxonomy import compile_taxonomy
from services.common.files import read_items

#: Words for generated keyword topics: realistic news vocabulary, combined into phrases.
_WORDS = (
    "border security naval port coast guard militia ceasefire talks envoy treaty summit "
    "refinery pipeline grid outage drone swarm convoy checkpoint frontline brigade battalion "
    "regiment corps garrison airbase airfield runway hangar depot arsenal stockpile shipyard "
    "frigate corvette destroyer submarine carrier tanker cargo vessel strait channel island "
    "reef atoll lagoon peninsula desert mountain valley river delta province district "
    "governor mayor minister envoy ambassador general admiral colonel commander spokesman "
    "parliament senate congress committee budget tender auction contract invoice subsidy "
    "tariff quota levy customs smuggling trafficking piracy kidnapping hostage ransom "
    "espionage defector informant surveillance radar sonar satellite uplink jamming spoofing "
    "encryption firmware chip semiconductor lithography rare earth lithium cobalt uranium "
    "reactor centrifuge warhead propellant booster engine turbine rotor airframe avionics"
).split()


@dataclass(frozen=True, slots=True)
class BenchResult:
    label: str
    topics: int
    automaton_keys: int
    articles: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.articles / self.seconds if self.seconds else 0.0


def generated_taxonomy_text(n_topics: int = 1000, seed: int = 7) -> str:
    """The default taxonomy plus generated topics, as YAML text (deterministic for a seed)."""
    base = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    default = load_taxonomy(DEFAULT_TAXONOMY)
    rng = random.Random(seed)
    systems = [e.entity_id for e in default.entries if e.kind == "system"]
    countries = [e.entity_id for e in default.entries if e.kind == "country"]
    orgs = [e.entity_id for e in default.entries if e.kind == "organisation"]
    lexicons = ["procure", "weapons", "test_words", "exercise_terms", "sanction_words"]
    topics = list(base["topics"])
    i = 0
    while len(topics) < n_topics:
        i += 1
        kind = i % 4
        if kind == 0:  # watch list for one system
            system = rng.choice(systems)
            rules = [
                {"id": "system-deal", "weight": 0.55, "all": [[f"@{system}"], ["$procure"]]},
                {"id": "system-test", "weight": 0.5, "all": [[f"@{system}"], ["$test_words"]]},
            ]
        elif kind == 1:  # a country's arms purchases
            country = rng.choice(countries)
            rules = [
                {
                    "id": "country-arms",
                    "weight": 0.5,
                    "all": [[f"@{country}"], ["$weapons"], ["$procure"]],
                },
                {
                    "id": "country-drills",
                    "weight": 0.4,
                    "all": [[f"@{country}"], ["$exercise_terms"]],
                    "within": 12,
                },
            ]
        elif kind == 2:  # an organisation in a given context
            org = rng.choice(orgs)
            rules = [
                {
                    "id": "org-context",
                    "weight": 0.5,
                    "all": [[f"@{org}"], [f"${rng.choice(lexicons)}"]],
                },
            ]
        else:  # keyword topic: new phrases for the automaton
            phrases = [
                " ".join(rng.sample(_WORDS, rng.choice((1, 2, 2, 3)))) + f" {i}x{k}"
                if k % 3 == 0
                else " ".join(rng.sample(_WORDS, 2))
                for k in range(12)
            ]
            rules = [
                {"id": "keywords", "weight": 0.35, "any": phrases},
                {"id": "keywords-deal", "weight": 0.5, "all": [phrases[:6], ["$procure"]]},
            ]
        topics.append(
            {
                "id": f"generated-{i:04d}",
                "name": f"Generated topic {i}",
                "description": "Generated for the 1,000-topic benchmark.",
                "rules": rules,
            }
        )
    base["topics"] = topics
    base["version"] = f"bench-{n_topics}"
    return yaml.safe_dump(base, sort_keys=False, allow_unicode=True)


def generated_classifier(n_topics: int = 1000, seed: int = 7) -> Classifier:
    text = generated_taxonomy_text(n_topics, seed)
    main = SourceFile(f"<generated {n_topics}-topic taxonomy>", text)
    return Classifier(
        compile_taxonomy(
            main,
            lambda rel: SourceFile(str(DATA_DIR / rel), (DATA_DIR / rel).read_text("utf-8")),
        )
    )


def load_articles(path: Path) -> list[tuple[str, str]]:
    """(title, body) pairs from an article file (JSON object, JSON array or JSON lines)."""
    items = [item.value for item in read_items(path) if isinstance(item.value, dict)]
    return [(str(a.get("title") or ""), str(a.get("body") or "")) for a in items]


def measure(
    label: str, clf: Classifier, articles: list[tuple[str, str]], seconds: float, rounds: int
) -> BenchResult:
    """Best of ``rounds`` timed loops of at least ``seconds`` each (after one warm-up pass).

    Time is the process's CPU time, not the wall clock: the figure is articles per second
    *per core*, and on a shared machine the wall clock also counts time spent waiting for
    a core.
    """
    for title, body in articles:
        clf.classify(title, body)
    best: BenchResult | None = None
    for _ in range(rounds):
        count = 0
        start = time.process_time()
        while True:
            for title, body in articles:
                clf.classify(title, body)
            count += len(articles)
            elapsed = time.process_time() - start
            if elapsed >= seconds:
                break
        result = BenchResult(
            label,
            len(clf.taxonomy.topics),
            clf.taxonomy.matcher.size,
            count,
            elapsed,
        )
        if best is None or result.rate > best.rate:
            best = result
    assert best is not None
    return best


def run(
    articles: list[tuple[str, str]],
    *,
    n_topics: int = 1000,
    seconds: float = 2.0,
    rounds: int = 3,
) -> tuple[BenchResult, BenchResult]:
    default = Classifier(load_taxonomy(DEFAULT_TAXONOMY))
    big = generated_classifier(n_topics)
    # Interleave the measurements so that load from other processes hits both alike.
    results: dict[str, BenchResult] = {}
    for _ in range(rounds):
        for label, clf in (("default", default), (f"{n_topics} topics", big)):
            r = measure(label, clf, articles, seconds / rounds, 1)
            if label not in results or r.rate > results[label].rate:
                results[label] = r
    return results["default"], results[f"{n_topics} topics"]


# --- the command -------------------------------------------------------------------------


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "classify",
        help="articles/s for the default taxonomy and a generated 1,000-topic taxonomy",
    )
    bench.add_argument(
        "--articles",
        type=Path,
        help="articles to classify (default: ../shared/samples/dev_articles.jsonl if present, "
        "else the packaged examples)",
    )
    bench.add_argument("--topics", type=int, default=1000, help="size of the generated taxonomy")
    bench.add_argument("--seconds", type=float, default=3.0, help="timed seconds per taxonomy")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    path: Path | None = args.articles
    if path is None:
        path = next((p for p in DEFAULT_SAMPLES if p.is_file()), PACKAGED_EXAMPLES)
    if not path.is_file():
        print(f"topicwatch: no such file: {path}", file=sys.stderr)
        return 2
    articles = load_articles(path)
    if not articles:
        print(f"topicwatch: no articles in {path}", file=sys.stderr)
        return 2
    mode = (
        "compiled with mypyc"
        if compiled()
        else "pure Python (not compiled, sources changed since the build, or "
        "TOPICWATCH_PURE_PYTHON=1; `pip install -e .` compiles)"
    )
    print(
        f"classifying {len(articles)} articles from {path} "
        f"(about {args.seconds:.0f} s per taxonomy, one core); classifier: {mode}...",
        file=sys.stderr,
        flush=True,
    )
    default, big = run(articles, n_topics=args.topics, seconds=args.seconds)
    ratio = default.rate / big.rate if big.rate else float("inf")
    if args.json:
        print(
            json.dumps(
                {
                    "articles_file": str(path),
                    "default": {
                        "topics": default.topics,
                        "automaton_keys": default.automaton_keys,
                        "articles_per_second": round(default.rate, 1),
                    },
                    "generated": {
                        "topics": big.topics,
                        "automaton_keys": big.automaton_keys,
                        "articles_per_second": round(big.rate, 1),
                    },
                    "slowdown": round(ratio, 2),
                    "compiled": compiled(),
                }
            )
        )
    else:
        for r in (default, big):
            print(
                f"{r.label:<12} {r.topics:>5} topics {r.automaton_keys:>6} patterns "
                f"{r.rate:>9,.0f} articles/s"
            )
        print(f"slowdown with {big.topics} topics: {ratio:.2f}x")
    return 0
