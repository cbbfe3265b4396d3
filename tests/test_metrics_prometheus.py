"""Metrics as operators see them: a real Prometheus scrapes a real ingest process."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.redis_server import free_port
from services.common.streams import StreamNames
from tests.procs import ServiceProcess, start_stack

PROMETHEUS = shutil.which("prometheus")
NEEDS = "prometheus is not installed: `make test` installs Debian's package"


@pytest.fixture
def ingest(redis_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    procs = start_stack({"TOPICWATCH_REDIS_URL": redis_url}, tmp_path, services=("ingest",))
    yield procs["ingest"]
    procs["ingest"].stop()


@pytest.fixture
def prometheus(ingest: ServiceProcess, tmp_path: Path) -> Iterator[str]:
    assert PROMETHEUS, NEEDS
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: topicwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{ingest.port}'],"
        " labels: {service: ingest}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def query(url: str, promql: str, timeout: float = 30.0, want: float | None = None) -> float:
    """Poll Prometheus until ``promql`` has a value (equal to ``want`` when given)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        data = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        result = data["data"]["result"]
        if result:
            last = float(result[0]["value"][1])
            if want is None or last == want:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {last}, wanted {want}")


def test_prometheus_scrapes_ingest_counters_and_stream_gauges(
    ingest: ServiceProcess, prometheus: str, redis_url: str
) -> None:
    ok = {"title": "Germany orders IRIS-T SLM", "body": "Berlin signed a contract."}
    r = httpx.post(f"{ingest.url}/v1/articles", json=[ok, {"body": "no title"}])
    assert r.status_code == 202
    assert [a["status"] for a in r.json()["articles"]] == ["accepted", "rejected"]
    client = redis.Redis.from_url(redis_url)
    client.xadd(StreamNames().ingest, {"__data__": json.dumps({"title": "x", "body": "y"})})

    assert query(prometheus, 'up{job="topicwatch"}', want=1) == 1
    accepted = 'topicwatch_ingest_articles_total{via="api",status="accepted"}'
    assert query(prometheus, accepted, want=1) == 1
    rejected = 'topicwatch_ingest_articles_total{via="api",status="rejected"}'
    assert query(prometheus, rejected, want=1) == 1
    from_stream = 'topicwatch_ingest_articles_total{via="stream",status="accepted"}'
    assert query(prometheus, from_stream, want=1) == 1
    # FastStream's own broker metrics come with the middleware.
    assert query(prometheus, "sum(faststream_received_messages_total)") >= 1
    # Stream gauges: everything consumed, nothing pending.
    lag = 'topicwatch_stream_lag{stream="topicwatch:articles:ingest",group="ingest"}'
    assert query(prometheus, lag, want=0) == 0
