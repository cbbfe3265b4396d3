"""Metrics, alerts and the dashboard against the real thing (tests/live_stack.py).

One stack for the module (about 15 s to start): Redis, the three services as processes, a
real Prometheus evaluating the shipped rules and a real Alertmanager routing with the
shipped config. A subscriber's webhook is down, so its alerts fail three times and are
dead-lettered; an invalid entry is dead-lettered by notify. Each test waits for what it needs
(the order of tests does not matter) and fails with what it last saw.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.redis_server import RedisServer
from tests.live_stack import (
    LiveStack,
    dashboard_targets,
    grafana_to_promql,
    has_number,
    wait_value,
)

pytestmark = pytest.mark.e2e

PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    work = tmp_path_factory.mktemp("live")
    # Its own Redis: the session one is flushed by other tests' fixtures.
    with RedisServer(data_dir=work / "redis", appendonly=False) as server:
        with LiveStack(server.url, work) as stack:
            stack.drive()
            yield stack


def scrape(live: LiveStack, service: str) -> str:
    return httpx.get(f"{live.services[service].url}/metrics", timeout=10).text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in an exposition (labels given must all match)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_each_running_service_passes_promtool_check_metrics(live: LiveStack) -> None:
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus package"
    # Wait until traffic went through every stage, so the histograms hold observations.
    wait_value(
        lambda: sample(
            scrape(live, "notify"), "topicwatch_notify_alerts_dead_total", channel="webhook"
        )
    )
    for service in ("ingest", "classify", "notify"):
        text = scrape(live, service)
        checked = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), (
            service + ": " + checked.stdout + checked.stderr
        )
        assert sample(text, "process_cpu_seconds_total") is not None, service
        assert sample(text, "process_resident_memory_bytes"), service
        assert "faststream_published" not in text, service
        if service != "ingest":  # ingest got its articles over HTTP, not its stream
            assert sample(text, "faststream_received_messages_total"), service
        # The target label `service` is Prometheus's: no sample carries one of its own.
        assert not re.search(r'^\w+\{[^}]*\bservice="', text, re.M), service
        assert sample(text, "topicwatch_http_requests_total", route="/healthz", status="2xx")


def test_http_metrics_use_route_templates_and_fixed_label_values(live: LiveStack) -> None:
    ingest = scrape(live, "ingest")
    assert (
        sample(
            ingest,
            "topicwatch_http_requests_total",
            method="POST",
            route="/v1/articles",
            status="2xx",
        )
        == 1
    )
    # An unknown path is `unmatched`, not its own series.
    assert sample(ingest, "topicwatch_http_requests_total", route="unmatched", status="4xx")
    assert "no-such-page" not in ingest
    notify = scrape(live, "notify")
    assert (
        sample(
            notify,
            "topicwatch_http_requests_total",
            method="POST",
            route="/v1/subscriptions",
            status="4xx",
        )
        == 1
    )
    subscription_id = live.drive_result["subscriptions"]["desk"]
    httpx.get(f"{live.services['notify'].url}/v1/subscriptions/{subscription_id}", timeout=5)
    notify = scrape(live, "notify")
    assert subscription_id not in notify
    assert '/v1/subscriptions/{subscription_id}"' in notify


def test_notify_measures_delivery_latency_backlog_and_dead_letters(live: LiveStack) -> None:
    def settled() -> str | None:
        """The exposition once every alert the working receiver got has been observed (the
        receiver records a request before notify sees the answer) and the invalid entry is
        dead-lettered."""
        text = scrape(live, "notify")
        count = sample(text, "topicwatch_end_to_end_seconds_count", channel="webhook", kind="alert")
        dead = sample(
            text, "topicwatch_dead_letters_total", stream="topicwatch:articles:classified"
        )
        received = len(live.webhook.requests)
        return text if count and count == received and dead == 1 else None

    text = wait_value(settled)
    # Every alert delivered to the working receiver was observed once, end to end and timed.
    assert sample(
        text,
        "topicwatch_notify_delivery_duration_seconds_count",
        channel="webhook",
        outcome="delivered",
    ) == sample(text, "topicwatch_end_to_end_seconds_count", channel="webhook", kind="alert")
    # The dead receiver: connection refused -> retryable, timed too.
    assert sample(
        text,
        "topicwatch_notify_delivery_duration_seconds_count",
        channel="webhook",
        outcome="retryable",
    )
    assert sample(text, "topicwatch_notify_delivery_backlog", state="due") is not None
    assert sample(text, "topicwatch_notify_delivery_oldest_due_seconds") is not None
    # The invalid entry notify dead-lettered, counted from a series that existed at 0.
    assert (
        sample(text, "topicwatch_dead_letters_total", stream="topicwatch:articles:classified") == 1
    )
    topics = {t for t in live.drive_result["topics"]}
    per_topic = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^topicwatch_notify_topic_alerts_total\{topic="([^"]+)"\} (\S+)$', text, re.M
        )
    }
    assert set(per_topic) <= topics | {"other"}
    assert sum(per_topic.values()) > 0


def test_dead_letters_alert_reaches_alertmanager_and_its_webhook(live: LiveStack) -> None:
    wanted = {"TopicwatchDeadLetters", "TopicwatchAlertsDeadLettered"}

    def firing_in_prometheus() -> set[str]:
        alerts = httpx.get(f"{live.prometheus.url}/api/v1/alerts", timeout=5).json()
        names = {
            a["labels"]["alertname"] for a in alerts["data"]["alerts"] if a["state"] == "firing"
        }
        return names if wanted <= names else set()

    wait_value(firing_in_prometheus)

    def in_alertmanager() -> list[dict]:
        alerts = httpx.get(f"{live.alertmanager.url}/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if a["labels"]["alertname"] in wanted]

    received = wait_value(in_alertmanager)
    assert {a["labels"]["alertname"] for a in received} == wanted
    for alert in received:
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"].startswith("docs/operations.md#")

    def notified() -> list[dict]:
        out = []
        for request in list(live.alert_hook.requests):
            body = request.json()
            for alert in body["alerts"]:
                out.append({"path": request.path, "status": body["status"], **alert})
        return [a for a in out if a["labels"]["alertname"] in wanted] if out else []

    def both_notified() -> list[dict]:
        got = notified()
        return got if {a["labels"]["alertname"] for a in got} == wanted else []

    delivered = wait_value(both_notified)
    for alert in delivered:
        # `warning` alerts take the tickets route of the shipped config.
        assert alert["path"].endswith("/tickets")
        assert alert["status"] == "firing"
        assert alert["labels"]["job"] == "topicwatch"
        assert alert["labels"]["service"] == "notify"
    streams = {a["labels"].get("stream") for a in delivered}
    assert "topicwatch:articles:classified" in streams


def test_every_dashboard_query_returns_data(live: LiveStack) -> None:
    targets = [(title, grafana_to_promql(expr)) for title, expr in dashboard_targets()]
    assert len(targets) >= 20
    # Fresh traffic, so that the rates over the last minute have something to show.
    live.publish(offset=40, count=10)
    deadline = time.monotonic() + 45.0
    missing = targets
    while missing and time.monotonic() < deadline:
        missing = [(t, q) for t, q in missing if not any(has_number(s) for s in live.query(q))]
        if missing:
            time.sleep(1.0)
    assert not missing, "\n".join(f"{t}: {q} -> {live.query(q)}" for t, q in missing)


def test_the_dashboard_renders_from_prometheus(live: LiveStack, tmp_path: Path) -> None:
    from tests.render_dashboard import render

    # Let every panel have data first (the alerts panel needs a firing alert).
    live.wait_query('ALERTS{alertstate="firing"}')
    out = render(live.prometheus.url, tmp_path / "dashboard.png", minutes=2)
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
