"""The benchmark harness: ``topicwatch bench <name>``, whole-pipe and per-service, in one place.

Benchmarks print figures (tests never time anything); ``make bench`` runs the per-service ones.

* ``pipeline``  the three services as processes: publish -> signed webhook latency, burst rate
* ``ingest``    normalisation throughput (no Redis)
* ``classify``  articles/s for the default taxonomy and a generated 1,000-topic one
* ``percolate`` articles/s matched against 1,000 / 10,000 / 100,000 stored queries
* ``delivery``  notify alone: classified article -> signed webhook, latency and throughput
* ``fanout``    signed webhooks/s from one and two notify processes, all parts as processes
* ``pipeline --cluster``  the same pipe on a local 3-master cluster, 1 and 3 partitions
* ``eventloop`` how long CPU-heavy steps (a long article, a reload, a rebuild) hold a loop
* ``memory``    bytes per subscription in Redis and in a notify process (docs/scaling.md)

It is on the CLI side (beside ``services/cli.py``): it may import every service, and no service
imports it (import-linter enforces that, see pyproject.toml).
"""

from __future__ import annotations

from typing import Any


def register_bench(bench_subparsers: Any) -> None:
    """Add every benchmark under ``topicwatch bench``.

    The modules are imported here, not at the top: the pipeline benchmark's webhook receiver
    runs as ``python -m services.bench.receiver`` and should not load every benchmark (and
    the services they import) into its process.
    """
    from services.bench import (
        classify,
        cluster,
        delivery,
        eventloop,
        fanout,
        ingest,
        memory,
        percolate,
        pipeline,
    )

    for module in (
        classify,
        percolate,
        delivery,
        fanout,
        ingest,
        pipeline,
        cluster,
        memory,
        eventloop,
    ):
        module.register_bench(bench_subparsers)
