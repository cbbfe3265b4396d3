"""The Grafana dashboard's JSON: well-formed for provisioning, and every query valid PromQL.

That every query returns data from a real Prometheus is tests/test_observability_live.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.live_stack import DASHBOARD, _panels, dashboard_targets, grafana_to_promql

PROMTOOL = shutil.which("promtool")


def board() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_dashboard_is_provisionable_and_laid_out_without_overlap() -> None:
    data = board()
    assert data["uid"] == "topicwatch" and data["title"]
    [variable] = data["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    panels = list(_panels(data["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert panel.get("description"), panel["title"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in _panels(board()["panels"]))
    for wanted in (
        "throughput per stage",
        "consumer lag",
        "pending",
        "end-to-end latency",
        "alerts per topic",
        "delivery outcomes",
        "delivery duration",
        "dead letters",
        "feed health",
    ):
        assert wanted in titles, wanted


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression (no server needed)."""
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus package"
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_title, expr) in enumerate(dashboard_targets())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
