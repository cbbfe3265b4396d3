"""The shipped Prometheus and Alertmanager files, checked by the real tools.

``promtool check config|rules``, ``promtool test rules`` over every file in
deploy/prometheus/tests/, ``amtool check-config``; and the conventions the runbooks rely on:
every rule has a severity, a runbook link to an anchor that exists in docs/operations.md,
and a unit-test case in which it fires.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import yaml

from tests.procs import ROOT

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
NEEDS_PROMETHEUS = "promtool is missing: `make test` installs Debian's prometheus package"
NEEDS_ALERTMANAGER = "amtool is missing: `make test` installs prometheus-alertmanager"

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "topicwatch.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}


def run(*args: str, stdout_only: bool = False) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout if stdout_only else done.stdout + done.stderr


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_prometheus_config_and_rules_pass_promtool() -> None:
    assert PROMTOOL, NEEDS_PROMETHEUS
    out = run(PROMTOOL, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in out
    out = run(PROMTOOL, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alerting_rules())} rules found" in out


def test_every_rule_passes_its_promtool_unit_tests() -> None:
    assert PROMTOOL, NEEDS_PROMETHEUS
    assert RULE_TESTS
    out = run(PROMTOOL, "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_rule_has_a_firing_test_case() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - fired == set(), "rules without a promtool case in which they fire"
    # The alerts the issue names are all there.
    for needed in (
        "TopicwatchServiceDown",
        "TopicwatchLagGrowing",
        "TopicwatchDeadLetters",
        "TopicwatchDeliveryFailureRatio",
        "TopicwatchDeliveryBacklog",
        "TopicwatchEndToEndLatencyHigh",
        "TopicwatchFeedFailing",
        "TopicwatchTaxonomyReloadRefused",
    ):
        assert needed in names


def test_every_rule_has_a_severity_and_a_runbook_that_exists() -> None:
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for rule in alerting_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", url
        assert anchor == rule["alert"].lower(), url
        assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alertmanager_config_passes_amtool_and_routes_by_severity() -> None:
    assert AMTOOL, NEEDS_ALERTMANAGER
    out = run(AMTOOL, "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in out
    for severity, receiver in (("critical", "topicwatch-pager"), ("warning", "topicwatch-tickets")):
        routed = run(
            AMTOOL,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER}",
            "alertname=TopicwatchX",
            f"severity={severity}",
            stdout_only=True,
        )
        assert routed.strip() == receiver


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
