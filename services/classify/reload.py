"""Keep the classifier current: reload the taxonomy when its files change or on SIGHUP.

A new taxonomy is built completely before it replaces the old one, and a file that fails
validation is refused with the error logged and counted: a bad edit never takes a running
classifier down, and never leaves it half-loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.classify.classifier import Classifier, load_classifier
from services.classify.loader import source_paths

log = logging.getLogger(__name__)


def _watched_files(path: Path | None) -> list[Path]:
    """The files that make up the taxonomy at ``path``: a taxonomy file together with the
    gazetteer files it names (reading their names parses the file: done when the taxonomy
    is (re)loaded, not on every poll), a folder whole.

    ``None`` is the packaged default, watched too: with `make up` (an editable install) an
    analyst edits ``services/classify/data/taxonomy.yaml`` itself.
    """
    if path is None or path.is_file():
        return source_paths(path)
    return sorted(p for p in path.rglob("*") if p.is_file())


def _snapshot(path: Path | None, files: list[Path] | None = None) -> dict[str, int]:
    """Modification times of every file that makes up the taxonomy at ``path``.

    ``files`` are those of the loaded taxonomy (a folder is listed again: a new file in it is
    a change); a change to the main file is how a new gazetteer is named, and reloads.
    """
    if files is None or (path is not None and path.is_dir()):
        files = _watched_files(path)
    out = {}
    for file in files:
        try:
            out[str(file)] = file.stat().st_mtime_ns
        except FileNotFoundError:
            continue
    return out


#: What a (re)load produced, built off the event loop: the files watched from now on, their
#: modification times when reading began, and the classifier or why there is none.
_Loaded = tuple[list[Path], dict[str, int], Classifier | Exception]


class ClassifierHolder:
    """The classifier in use, swapped atomically on a successful reload.

    Loading a taxonomy is hundreds of milliseconds of CPU (YAML, validation, compiling the
    automaton), and the service's event loop also answers the probes and the API: the
    watcher loads in a worker thread (pure Python and the YAML parser give the GIL back
    every few milliseconds) and only swaps the result in on the loop. Polling for changes
    reads file times only.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        registry: CollectorRegistry | None = None,
        interval: float = 2.0,
    ) -> None:
        self.path = path
        self.interval = interval
        self._files = _watched_files(path)
        self._seen = _snapshot(path, self._files)
        self.current: Classifier = load_classifier(path)
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
        return self._install(self._load())

    async def reload_off_loop(self) -> bool:
        """:meth:`reload`, with the loading in a worker thread; the swap runs on the loop."""
        return self._install(await asyncio.to_thread(self._load))

    def _load(self) -> _Loaded:
        files = _watched_files(self.path)
        seen = _snapshot(self.path, files)  # before reading: an edit meanwhile reloads again
        # A load allocates hundreds of thousands of objects, which trigger full collections
        # of the cyclic collector: each walks every object in the process holding the GIL
        # (0.2 s each, measured), stalling the loop even though the load is in a thread.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return files, seen, load_classifier(self.path)
        except Exception as exc:  # any failure to load means: keep what works
            return files, seen, exc
        finally:
            if was_enabled:
                gc.enable()

    def _install(self, loaded: _Loaded) -> bool:
        self._files, self._seen, fresh = loaded
        if isinstance(fresh, Exception):
            self.last_error = str(fresh)
            self.reloads_total.labels("refused").inc()
            log.error("taxonomy reload refused, keeping %s: %s", self.current.version, fresh)
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
                await self.reload_off_loop()
            elif _snapshot(self.path, self._files) != self._seen:
                await self.reload_off_loop()
