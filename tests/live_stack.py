"""The whole watched pipe, for real, on loopback: what the live observability tests run.

Redis, the three services as processes (tests/procs.py), a webhook receiver that works and
one that is down, a feed server with a good and a broken feed, a real Alertmanager whose own
webhook goes to a test receiver, and a real Prometheus scraping the services and evaluating
the shipped rules. Prometheus and Alertmanager run *test copies* of the shipped files:
the same rules, routes and receivers' structure, with second-long intervals and loopback
addresses (the shipped config finds its targets by Compose DNS names).

Used by tests/test_observability_live.py and by ``python -m tests.render_dashboard``.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from services.common.redis_server import free_port
from services.common.streams import DATA_FIELD, StreamNames
from tests.feed_server import RSS, FeedServer, running_feed_server
from tests.notify_receiver import Receiver
from tests.procs import ROOT, LoggedProcess, ServiceProcess

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
NEEDS = "prometheus / alertmanager missing: `make test` installs the Debian packages"

PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "topicwatch.json"
ARTICLES = ROOT / "tests" / "data" / "holdout_articles.jsonl"

#: Grafana's own variables, as the test evaluates the dashboard's queries directly.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


class Tool(LoggedProcess):
    """A Prometheus or Alertmanager process on a free loopback port."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n{self.output()}")


def alertmanager_test_config(receiver_url: str) -> dict[str, Any]:
    """The shipped Alertmanager config with one-second grouping and loopback receivers.

    Each receiver keeps its own path (``/pager``, ``/tickets``), so a test can see which
    route an alert took.
    """
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route.update(group_wait="1s", group_interval="1s")
        route["repeat_interval"] = "1m"
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{receiver_url}/{hook['url'].rstrip('/').rsplit('/', 1)[-1]}"
    return config


def prometheus_test_config(
    targets: dict[str, ServiceProcess], alertmanager_port: int
) -> dict[str, Any]:
    """The shipped Prometheus config with 1 s intervals and the services' loopback ports."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
    ]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "topicwatch"
    # DNS discovery (and the relabelling of its DNS name into `service`) becomes static
    # targets with the same `service` label.
    del job["dns_sd_configs"], job["relabel_configs"]
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{proc.port}"], "labels": {"service": name}}
        for name, proc in targets.items()
    ]
    return config


class LiveStack:
    """Everything above, started in order, stopped in reverse; ``drive()`` makes traffic."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self.services: dict[str, ServiceProcess] = {}
        self.webhook = Receiver()
        self.alert_hook = Receiver()
        self.down_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        self.feeds: FeedServer
        self.prometheus: Tool
        self.alertmanager: Tool
        self.drive_result: dict[str, Any] = {}

    def __enter__(self) -> LiveStack:
        assert PROMETHEUS and ALERTMANAGER, NEEDS
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        stack, work = self._stack, self.workdir
        self.feeds = stack.enter_context(running_feed_server())
        good_feed = self.feeds.serve("/rss.xml", RSS)
        broken_feed = self.feeds.serve("/broken.xml", RSS, status=503)
        stack.enter_context(self.webhook)
        stack.enter_context(self.alert_hook)
        env = {
            "TOPICWATCH_REDIS_URL": self.redis_url,
            "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",
            "TOPICWATCH_ALLOW_PRIVATE_FEEDS": "true",
            "TOPICWATCH_FEEDS": f"{good_feed},{broken_feed}",
            "TOPICWATCH_FEED_POLL_INTERVAL": "1",
            "TOPICWATCH_READ_BLOCK_MS": "50",
            # Three quick attempts, then the alert is dead-lettered.
            "TOPICWATCH_WEBHOOK_RETRY_SCHEDULE": "0.2,0.2",
            "TOPICWATCH_WEBHOOK_TIMEOUT": "2",
        }
        # As start_stack, with more patience: on a loaded machine three cold starts at once
        # can take longer than its 30 s.
        for name in ("ingest", "classify", "notify"):
            proc = ServiceProcess(name, env, work / f"{name}.log").start()
            self.services[name] = proc
            stack.callback(proc.stop)
        for proc in self.services.values():
            proc.wait_healthy(timeout=90)

        am_port = free_port()
        am_config = work / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_test_config(self.alert_hook.url)))
        self.alertmanager = Tool(
            "alertmanager",
            [
                str(ALERTMANAGER),
                f"--config.file={am_config}",
                f"--storage.path={work / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            am_port,
            work / "alertmanager.log",
        )
        stack.callback(self.alertmanager.stop)

        prom_config = work / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(prometheus_test_config(self.services, am_port)))
        prom_port = free_port()
        self.prometheus = Tool(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            prom_port,
            work / "prometheus.log",
        )
        stack.callback(self.prometheus.stop)
        self.alertmanager.wait_ready()
        self.prometheus.wait_ready()
        # Every counter's first sample is its pre-initialised 0, as in production where
        # Prometheus scrapes a service from its start: only then is the first event an
        # increase.
        wait_value(lambda: self.query('count(up{job="topicwatch"} == 1) == 3'), timeout=30)

    # --- traffic ---------------------------------------------------------------------------

    def drive(self, articles: int = 50) -> dict[str, Any]:
        """Subscribe a working and a dead webhook to every topic, publish articles, and
        write one invalid entry that notify must dead-letter. Returns what was created."""
        notify, ingest = self.services["notify"].url, self.services["ingest"].url
        topics = self._topics()
        subscriptions = {}
        for name, url in (("desk", self.webhook.url), ("gone-home", self.down_url)):
            r = httpx.post(
                f"{notify}/v1/subscriptions",
                json={"name": name, "topics": topics, "webhook_url": url},
                timeout=10,
            )
            assert r.status_code == 201, r.text
            subscriptions[name] = r.json()["id"]
        published = self.publish(0, articles)
        # An unknown path and a refused body: the HTTP metrics' other label values.
        httpx.get(f"{ingest}/no-such-page", timeout=5)
        httpx.post(f"{notify}/v1/subscriptions", json={"topics": "x"}, timeout=5)
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.xadd(StreamNames().classified, {DATA_FIELD: b'{"not": "an article"}'})
        finally:
            client.close()
        self.drive_result = {
            "subscriptions": subscriptions,
            "articles": published,
            "topics": topics,
        }
        return self.drive_result

    def publish(self, offset: int, count: int) -> int:
        """POST articles ``offset`` .. ``offset + count`` of the held-out set to ingest."""
        lines = [line for line in ARTICLES.read_text().splitlines() if line.strip()]
        batch = [json.loads(line) for line in lines[offset : offset + count]]
        r = httpx.post(f"{self.services['ingest'].url}/v1/articles", json=batch, timeout=30)
        assert r.status_code == 202, r.text
        return len(batch)

    def _topics(self) -> list[str]:
        listing = httpx.get(f"{self.services['classify'].url}/v1/topics", timeout=5).json()
        return [str(t["id"]) for t in listing["topics"]]

    # --- Prometheus ------------------------------------------------------------------------

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = r.json()
        assert body.get("status") == "success", f"{promql}: {body}"
        return list(body["data"]["result"])

    def wait_query(self, promql: str, timeout: float = 45.0) -> list[dict[str, Any]]:
        """Poll until ``promql`` returns at least one sample that is a number."""
        return wait_value(lambda: [s for s in self.query(promql) if has_number(s)], timeout)


def has_number(sample: dict[str, Any]) -> bool:
    return not math.isnan(float(sample["value"][1]))


def wait_value(probe: Any, timeout: float = 45.0, every: float = 0.5) -> Any:
    """Call ``probe`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"nothing within {timeout:g}s (last: {last!r})")


def dashboard_targets(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    board = dashboard or json.loads(DASHBOARD.read_text())
    out = []
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def grafana_to_promql(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr
