"""Keep the classifier current: reload the taxonomy when its files change or on SIGHUP.

A new taxonomy is built completely before it replaces the old one, and a file that fails
validation is refused with the error logged and counted: a bad edit never takes a running
classifier down, and never leaves it half-loaded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.classify.classifier import Classifier, load_classifier
from services.classify.loader import source_paths

log = logging.getLogger(__name__)


def _snapshot(path: Path | None) -> dict[str, int]:
    """Modification times of every file that makes up the taxonomy at ``path``.

    ``None`` is the packaged default, watched too: with `make up` (an editable install) an
    analyst edits ``services/classify/data/taxonomy.yaml`` itself.
    """
    # A taxonomy file is watched together with the gazetteer files it names; a folder whole.
    files = (
        source_paths(path)
        if path is None or path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file())
    )
    out = {}
    for file in files:
        try:
            out[str(file)] = file.stat().st_mtime_ns
        except FileNotFoundError:
            continue
    return out


class ClassifierHolder:
    """The classifier in use, swapped atomically on a successful reload."""

    def __init__(
        self,
        path: Path | None,
        *,
        registry: CollectorRegistry | None = None,
        interval: float = 2.0,
    ) -> None:
        self.path = path
        self.interval = interval
        self.current: Classifier = load_classifier(path)
        self._seen = _snapshot(path)
        self._hup = asyncio.Event()
        self.reloads_total = Counter(
            "topicwatch_taxonomy_reloads_total",
            "Taxonomy reload attempts, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.info = Gauge(
            "topicwatch_taxonomy_info",
            "The taxonomy version in use (one series, value 1; replaced on reload).",
            ["version"],
            registry=registry,
        )
        for outcome in ("loaded", "refused"):
            self.reloads_total.labels(outcome)
        self.info.labels(self.current.version).set(1)
        self.last_error: str | None = None

    @property
    def topic_ids(self) -> frozenset[str]:
        return frozenset(str(t["id"]) for t in self.current.topics_summary())

    def reload(self) -> bool:
        """Try to load the taxonomy again; keep the current one if the files are invalid."""
        self._seen = _snapshot(self.path)
        try:
            fresh = load_classifier(self.path)
        except Exception as exc:  # any failure to load means: keep what works
            self.last_error = str(exc)
            self.reloads_total.labels("refused").inc()
            log.error("taxonomy reload refused, keeping %s: %s", self.current.version, exc)
            return False
        if fresh.version != self.current.version:
            # Only the version in use has a series: a lingering old one at 0 would make
            # `count(topicwatch_taxonomy_info)` and joins on `version` lie.
            self.info.remove(self.current.version)
            log.info("taxonomy reloaded: %s -> %s", self.current.version, fresh.version)
        self.current = fresh
        self.info.labels(fresh.version).set(1)
        self.last_error = None
        self.reloads_total.labels("loaded").inc()
        return True

    async def watch(self) -> None:
        """Poll the files' mtimes and wait for SIGHUP; reload on either."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._hup.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
        while True:
            try:
                await asyncio.wait_for(self._hup.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            if self._hup.is_set():
                self._hup.clear()
                self.reload()
            elif _snapshot(self.path) != self._seen:
                self.reload()
