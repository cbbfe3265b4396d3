"""deploy/compose: the one-host stack, checked without a Docker engine (none exists here).

The compose file passes the compose-spec JSON schema (vendored in tests/schemas, validated with
``check-jsonschema``); everything it mounts or builds from exists in the repo; every variable it
gives a topicwatch service is a real topicwatch setting; ports agree between the services'
settings, the published ports and the Prometheus scrape config; dependencies wait on health
checks; and the Valkey configuration it mounts is accepted by a real server, which then reports
append-only persistence and ``noeviction``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from services.common.redis_server import find_redis_server, free_port
from services.common.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
ENV_EXAMPLE = COMPOSE_DIR / "topicwatch.env.example"
SERVICES = ("ingest", "classify", "notify")
SETTINGS_ENV = {env_name(name) for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    command = [str(tool)] if tool.exists() else [shutil.which("check-jsonschema") or "missing"]
    return subprocess.run(
        [*command, "--schemafile", str(SCHEMA), *args], capture_output=True, text=True, check=False
    )


def test_compose_file_passes_the_compose_spec_schema(tmp_path: Path) -> None:
    result = check_jsonschema(str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator is not vacuous: a misspelt key in a copy is refused.
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    refused = check_jsonschema(str(broken))
    assert refused.returncode == 1 and "healthchek" in refused.stdout


def _local_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


#: The dashboard is built in parallel (the observability half of the operations issue); until
#: it lands, the checks that need it wait for it instead of failing.
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def test_every_mounted_or_built_file_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        for source in _local_sources(service):
            path = (COMPOSE_DIR / source).resolve()
            if not path.exists():
                missing.append(f"{name}: {source}")
        build = service.get("build")
        if build:
            context = COMPOSE_DIR / build["context"]
            assert context.resolve() == ROOT, "the build context is the repository root"
            if not (context / build["dockerfile"]).is_file():
                missing.append(f"{name}: {build['dockerfile']}")
        for env_file in service.get("env_file", []):
            if isinstance(env_file, str) or env_file.get("required", True):
                path = env_file if isinstance(env_file, str) else env_file["path"]
                missing.append(f"{name}: required env_file {path} (not in git)")
    assert not missing, missing


def test_grafana_provisioning_finds_the_dashboard(compose: dict[str, Any]) -> None:
    """Where compose mounts the dashboards is where the provider and the home setting look."""
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    [source] = [s for s, d in mounts.items() if "dashboards" in d]
    assert (COMPOSE_DIR / source).resolve() == DASHBOARDS
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/topicwatch.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == mounts[source]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{mounts[source]}/topicwatch.json"
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    [prometheus] = datasources
    assert prometheus["url"] == "http://prometheus:9090" and prometheus["isDefault"] is True
    assert "prometheus" in compose["services"]
    dashboard = json.loads((DASHBOARDS / "topicwatch.json").read_text())
    # Panels name their datasource by a variable or by the provisioned uid.
    text = json.dumps(dashboard)
    uids = set(re.findall(r'"uid": "([^"]+)"', text))
    assert uids & {"${datasource}", "${DS_PROMETHEUS}", prometheus["uid"]}, uids


def _env_names_in_example() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_topicwatch_variables_are_real_settings(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        environment = compose["services"][name].get("environment", {})
        unknown = set(environment) - SETTINGS_ENV
        assert not unknown, f"{name}: not topicwatch settings: {unknown}"
    example = _env_names_in_example()
    assert example, "the example env file names no variable"
    assert not example - SETTINGS_ENV, example - SETTINGS_ENV
    assert "TOPICWATCH_API_KEYS" in example
    # The example is an example: its key is a placeholder, and the real file stays out of git.
    assert "replace-with" in ENV_EXAMPLE.read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(COMPOSE_DIR / "topicwatch.env")], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "deploy/compose/topicwatch.env must be git-ignored"


def test_example_env_file_loads_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.api_key_values() == {"replace-with-a-long-random-key"}


def test_ports_agree_everywhere(compose: dict[str, Any]) -> None:
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    dns_ports = {
        sd["names"][0]: sd["port"]
        for job in scrape["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
    }
    for name in SERVICES:
        service = compose["services"][name]
        assert service["command"] == [name]
        port = int(service["environment"][env_name(f"{name}_port")])
        assert port == Settings.model_fields[f"{name}_port"].default
        published = [p.rsplit(":", 1)[-1] for p in service.get("ports", [])]
        exposed = [str(p) for p in service.get("expose", [])]
        assert published + exposed == [str(port)], name
        assert dns_ports[name] == port, f"Prometheus scrapes {name} on {dns_ports[name]}"
        assert service["environment"]["TOPICWATCH_REDIS_URL"] == "redis://valkey:6379/0"
    assert compose["services"]["classify"]["deploy"]["replicas"] == 2
    alerting = scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == ["alertmanager:9093"]
    assert "127.0.0.1:9093:9093" in compose["services"]["alertmanager"]["ports"]


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", name
            assert "healthcheck" in services[dependency]
    for name in SERVICES:
        assert "valkey" in services[name]["depends_on"]
        assert services[name]["healthcheck"]["test"] == ["CMD", "topicwatch-healthcheck"]
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
    # Published ports listen on loopback only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_valkey_config_gives_append_only_and_noeviction(tmp_path: Path) -> None:
    """The mounted config file, loaded by a real server (directives after it only move it to a
    free loopback port and a temporary directory)."""
    port = free_port()
    server = subprocess.Popen(
        [
            find_redis_server(),
            str(ROOT / "deploy" / "redis" / "valkey.conf"),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(client.config_get("maxmemory")["maxmemory"]) == 1024**3
        client.xadd("s", {"f": "v"})
        assert client.info("persistence")["aof_enabled"] == 1
    finally:
        client.close()
        server.terminate()
        server.wait(10)
