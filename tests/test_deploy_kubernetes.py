"""deploy/kubernetes: the manifests, rendered and validated without a cluster (none exists here).

Each overlay is rendered with ``kubectl kustomize`` (kubectl embeds kustomize). Core kinds are
validated with ``kubernetes-validate`` (Kubernetes' own OpenAPI schemas, strict: unknown fields
fail) for the oldest and newest versions we claim; the custom resources (KEDA ScaledObject and
TriggerAuthentication, Prometheus Operator ServiceMonitor) against JSON schemas vendored in
tests/schemas from the CRDs catalog (see its README). Then what the schemas cannot know: probes,
security context, that every variable is a topicwatch setting, that KEDA watches the streams and
groups the services really consume, that selectors select, and that the taxonomy ConfigMap,
laid out as the volume mounts it, is a taxonomy classify loads.

Not checked (no cluster): scheduling, the API server's admission, KEDA and the Prometheus
Operator acting on these objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from redis.crc import key_slot

from services.classify.loader import load_taxonomy
from services.common.settings import Settings, env_name
from services.common.streams import GROUP_CLASSIFY, GROUP_INGEST, GROUP_NOTIFY, StreamNames

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
SCHEMAS = ROOT / "tests" / "schemas"
#: The Kubernetes versions the manifests must be valid for: the oldest still widely run and
#: the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh/triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
}
SERVICES = ("ingest", "classify", "notify")
SETTINGS_ENV = {env_name(name) for name in Settings.model_fields}
GROUPS = {"ingest": GROUP_INGEST, "classify": GROUP_CLASSIFY, "notify": GROUP_NOTIFY}
#: The redis-streams trigger's parameters, as KEDA documents them (keda.sh, "Redis Streams").
KEDA_REDIS_STREAMS_KEYS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
    "activationPendingEntriesCount", "streamLength", "activationStreamLength", "lagCount",
    "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip
#: The redis-cluster-streams trigger's (keda.sh, "Redis Streams (supports Redis Cluster)").
KEDA_REDIS_CLUSTER_STREAMS_KEYS = {
    "addresses", "addressesFromEnv", "hosts", "hostsFromEnv", "ports", "portsFromEnv",
    "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
    "streamLength", "lagCount", "activationLagCount", "enableTLS", "unsafeSsl",
}  # fmt: skip
KEDA_KEYS = {
    "redis-streams": KEDA_REDIS_STREAMS_KEYS,
    "redis-cluster-streams": KEDA_REDIS_CLUSTER_STREAMS_KEYS,
}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl (which embeds kustomize) is not installed: overlays not rendered")
    return found


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [
            kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone",
            str(KUBE / "overlays" / overlay),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def validate(doc: dict[str, Any]) -> None:
    """Kubernetes' schema for core kinds, the vendored CRD schema for custom resources."""
    schema_file = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if schema_file:
        schema = json.loads((SCHEMAS / schema_file).read_text())
        jsonschema.validate(doc, schema)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def component(deployment: dict[str, Any]) -> str:
    """The service a Deployment runs (``classify-p0`` runs classify)."""
    return str(deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def redis_settings(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The overlay's topicwatch-redis ConfigMap (where Redis is, cluster mode, partitions)."""
    found = [cm for n, cm in by_kind(docs, "ConfigMap").items() if n.startswith("topicwatch-redis")]
    return dict(found[0]["data"]) if found else {}


def stream_names(docs: tuple[dict[str, Any], ...]) -> StreamNames:
    """The stream names the overlay's services use, from its settings (as the services do)."""
    env = redis_settings(docs)
    settings = Settings(
        redis_url="redis://unused:6379",
        redis_cluster=env.get("TOPICWATCH_REDIS_CLUSTER", "false") == "true",
        partitions=int(env.get("TOPICWATCH_PARTITIONS", "1")),
    )
    return StreamNames.for_settings(settings)


def consumes(deployment: dict[str, Any], names: StreamNames) -> list[tuple[str, str]]:
    """(stream, consumer group) pairs a Deployment's pods consume: its service's streams in the
    partitions TOPICWATCH_CONSUME_PARTITIONS names (all of them when unset)."""
    service = component(deployment)
    env = {e["name"]: e["value"] for e in container(deployment).get("env", [])}
    share = env.get("TOPICWATCH_CONSUME_PARTITIONS")
    partitions = [int(p) for p in share.split(",")] if share else range(names.partitions)
    if service == "ingest":
        return [(names.ingest, GROUP_INGEST)]
    stream = names.accepted_in if service == "classify" else names.classified_in
    return [(stream(p), GROUPS[service]) for p in partitions]


# --- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_is_valid(overlay: str) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"} <= kinds
    assert {"ScaledObject", "ServiceMonitor"} <= kinds
    for doc in docs:
        validate(doc)
        assert doc["metadata"].get("namespace", "topicwatch") == "topicwatch" or (
            doc["kind"] == "Namespace"
        )


def test_base_files_and_the_secret_example_are_valid() -> None:
    """Files of base/ on their own too, including the Secret example no kustomization lists."""
    for path in sorted((KUBE / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                validate(doc)


def test_validation_refuses_what_a_cluster_would_refuse() -> None:
    """Strict core validation and the CRD schemas catch a misspelt or misplaced field."""
    deployment = json.loads(json.dumps(by_kind(render(OVERLAYS[0]), "Deployment")["classify"]))
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    scaled = json.loads(json.dumps(by_kind(render(OVERLAYS[0]), "ScaledObject")["classify"]))
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 500  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    monitor = json.loads(json.dumps(by_kind(render(OVERLAYS[0]), "ServiceMonitor")["topicwatch"]))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


# --- what the schemas cannot know ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_are_probed_limited_and_unprivileged(overlay: str) -> None:
    deployments = by_kind(render(overlay), "Deployment")
    assert {component(d) for d in deployments.values()} == set(SERVICES)
    for deployment in deployments.values():
        name = component(deployment)
        pod = deployment["spec"]["template"]["spec"]
        spec = container(deployment)
        assert spec["args"] == [name]
        [port] = spec["ports"]
        assert port["name"] == "http"
        assert port["containerPort"] == Settings.model_fields[f"{name}_port"].default
        env = {e["name"]: e["value"] for e in spec.get("env", [])}
        assert env[env_name(f"{name}_port")] == str(port["containerPort"])
        assert spec["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert spec["startupProbe"]["httpGet"]["path"] == "/livez"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(spec["resources"][kind]), f"{name} {kind}"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        security = spec["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_topicwatch_setting(overlay: str) -> None:
    docs = render(overlay)
    config_maps = by_kind(docs, "ConfigMap")
    for deployment in by_kind(docs, "Deployment").values():
        spec = container(deployment)
        assert not {e["name"] for e in spec.get("env", [])} - SETTINGS_ENV
        for source in spec["envFrom"]:
            if "configMapRef" in source:
                ref = source["configMapRef"]
                if ref["name"] not in config_maps:
                    assert ref.get("optional") is True, ref["name"]
                    continue
                assert not set(config_maps[ref["name"]]["data"]) - SETTINGS_ENV, ref["name"]
    example = yaml.safe_load((KUBE / "base" / "secret.example.yaml").read_text())
    assert not set(example["stringData"]) - SETTINGS_ENV
    assert all("EXAMPLE-NOT-A-REAL" in v for v in example["stringData"].values())
    # The example is never applied by a kustomization.
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_single_redis_points_the_services_and_keda_at_its_valkey() -> None:
    docs = render("single-redis")
    url = by_kind(docs, "ConfigMap")
    [redis_cm] = [cm for name, cm in url.items() if name.startswith("topicwatch-redis")]
    assert redis_cm["data"]["TOPICWATCH_REDIS_URL"] == "redis://valkey:6379/0"
    service = by_kind(docs, "Service")["valkey"]
    assert service["spec"]["ports"][0]["port"] == 6379
    for scaled in by_kind(docs, "ScaledObject").values():
        assert scaled["spec"]["triggers"][0]["metadata"]["address"] == "valkey:6379"
    statefulset = by_kind(docs, "StatefulSet")["valkey"]
    assert matches(statefulset["spec"]["selector"]["matchLabels"], service["spec"]["selector"])
    [config] = [cm for name, cm in url.items() if name.startswith("valkey-config")]
    assert config["data"]["valkey.conf"] == (ROOT / "deploy/redis/valkey.conf").read_text()
    assert "maxmemory-policy noeviction" in config["data"]["valkey.conf"]
    assert "appendonly yes" in config["data"]["valkey.conf"]
    # The Valkey container meets the namespace's "restricted" Pod Security level too.
    [namespace] = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    valkey = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert valkey["securityContext"]["readOnlyRootFilesystem"] is True


def test_external_redis_authenticates_keda() -> None:
    docs = render("external-redis")
    assert "StatefulSet" not in {d["kind"] for d in docs}
    auth = by_kind(docs, "TriggerAuthentication")
    for scaled in by_kind(docs, "ScaledObject").values():
        trigger = scaled["spec"]["triggers"][0]
        assert trigger["authenticationRef"]["name"] in auth
        assert trigger["metadata"]["enableTLS"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_each_service_on_the_lag_of_what_it_consumes(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    scaled_objects = by_kind(docs, "ScaledObject")
    names = stream_names(docs)
    # Every consuming Deployment is scaled, and on every stream it consumes.
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in scaled_objects.values()}
    assert set(deployments) == targets
    for scaled in scaled_objects.values():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        assert scaled["spec"]["minReplicaCount"] >= 1, "each service serves HTTP: never 0"
        assert scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]
        triggers = [t for t in scaled["spec"]["triggers"] if t["type"] in KEDA_KEYS]
        watched = []
        for trigger in triggers:
            metadata = trigger["metadata"]
            unknown = set(metadata) - KEDA_KEYS[trigger["type"]]
            assert not unknown, unknown
            watched.append((metadata["stream"], metadata["consumerGroup"]))
        assert sorted(watched) == sorted(consumes(deployments[target], names))
        # A cluster is read with the cluster scaler (it follows MOVED and failovers).
        cluster = redis_settings(docs).get("TOPICWATCH_REDIS_CLUSTER") == "true"
        assert {t["type"] for t in triggers} == (
            {"redis-cluster-streams"} if cluster else {"redis-streams"}
        )
        [trigger, *_] = triggers
        metadata = trigger["metadata"]
        # Lag (Redis >= 7), not pending entries: pending counts what was already read.
        assert int(metadata["lagCount"]) > 0 and "activationLagCount" in metadata
        assert "pendingEntriesCount" not in metadata
        # CPU scaling needs CPU requests on the target.
        if any(t["type"] == "cpu" for t in scaled["spec"]["triggers"]):
            assert container(deployments[target])["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_select(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, deployment in deployments.items():
        selected_by_own = [
            n
            for n, labels in pod_labels.items()
            if matches(deployment["spec"]["selector"]["matchLabels"], labels)
        ]
        assert selected_by_own == [name], "a Deployment's selector selects its pods only"
        # One Service per service, over all of its Deployments (one per partition share).
        service = services[component(deployment)]
        selected = [
            n for n, labels in pod_labels.items() if matches(service["spec"]["selector"], labels)
        ]
        same = [n for n, d in deployments.items() if component(d) == component(deployment)]
        assert selected == same
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert [n for n, labels in pod_labels.items() if matches(selector, labels)] == [
            pdb["metadata"]["name"]
        ]
    [monitor] = by_kind(docs, "ServiceMonitor").values()
    monitored = [
        n for n, s in services.items()
        if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]  # fmt: skip
    assert sorted(monitored) == sorted(SERVICES)
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    # The labels the rules and the dashboard use: job="topicwatch", service=<component>.
    targets = {r["targetLabel"] for r in endpoint["relabelings"]}
    assert targets == {"job", "service"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_taxonomy_configmap_as_mounted_is_the_taxonomy_classify_loads(
    overlay: str, tmp_path: Path
) -> None:
    docs = render(overlay)
    classify = next(d for d in by_kind(docs, "Deployment").values() if component(d) == "classify")
    spec = container(classify)
    env = {e["name"]: e["value"] for e in spec["env"]}
    [mount] = [m for m in spec["volumeMounts"] if m["name"] == "taxonomy"]
    assert env["TOPICWATCH_TAXONOMY_PATH"] == mount["mountPath"] and mount["readOnly"]
    [volume] = [
        v for v in classify["spec"]["template"]["spec"]["volumes"] if v["name"] == "taxonomy"
    ]
    config_map = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    # Lay the volume out as the kubelet would, then load it as classify does.
    for item in volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_map["data"][item["key"]])
    assert set(config_map["data"]) == {i["key"] for i in volume["configMap"]["items"]}
    mounted = load_taxonomy(tmp_path)
    packaged = load_taxonomy()
    assert mounted.version == packaged.version
    assert [t.id for t in mounted.topics] == [t.id for t in packaged.topics]
    # Every gazetteer the packaged taxonomy names is in the ConfigMap (a new one would be missed).
    packaged_file = ROOT / "services/classify/data/taxonomy.yaml"
    named = yaml.safe_load(packaged_file.read_text())["gazetteers"]
    assert sorted(named) == sorted(i["path"] for i in volume["configMap"]["items"][1:])


def test_notify_backlog_component_adds_a_prometheus_trigger_on_a_real_metric(
    tmp_path: Path,
) -> None:
    """The optional component: an overlay that uses it renders and validates, and its query
    names a metric notify exports, in PromQL that Prometheus' own parser accepts."""
    overlay = tmp_path / "with-backlog"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # Kustomize wants relative paths.
                "resources": [os.path.relpath(KUBE / "overlays" / "single-redis", overlay)],
                "components": [os.path.relpath(KUBE / "components" / "notify-backlog", overlay)],
            }
        )
    )
    result = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    scaled = by_kind(docs, "ScaledObject")
    validate(scaled["notify"])
    [trigger] = [t for t in scaled["notify"]["spec"]["triggers"] if t["type"] == "prometheus"]
    query = trigger["metadata"]["query"]
    assert {"redis-streams"} == {t["type"] for t in scaled["classify"]["spec"]["triggers"]}

    from prometheus_client import CollectorRegistry

    from services.notify.delivery import DeliveryMetrics

    registry = CollectorRegistry()
    DeliveryMetrics(registry)
    exported = {m.name for m in registry.collect()}
    assert (
        "topicwatch_notify_delivery_backlog" in exported
        and "topicwatch_notify_delivery_backlog" in query
    )

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) not installed: query not parsed")
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q", "expr": query}]}]})
    )
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dashboard_configmap_is_the_dashboard_for_grafanas_sidecar(overlay: str) -> None:
    [dashboard] = [
        cm
        for name, cm in by_kind(render(overlay), "ConfigMap").items()
        if name.startswith("topicwatch-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (ROOT / "deploy/grafana/dashboards/topicwatch.json").read_text()
    assert json.loads(dashboard["data"]["topicwatch.json"]) == json.loads(shipped)
    # kubectl apply keeps a copy in an annotation limited to 256 KiB.
    assert len(dashboard["data"]["topicwatch.json"]) < 200_000


def test_redis_cluster_runs_one_classify_and_notify_per_partition() -> None:
    """The cluster overlay: cluster mode on, N partitions, and for each partition exactly one
    classify and one notify Deployment consuming it alone (TOPICWATCH_CONSUME_PARTITIONS),
    each with its own PodDisruptionBudget and a KEDA trigger on that partition's stream, read
    from the cluster's nodes with the password; the settings each pod gets are valid."""
    docs = render("redis-cluster")
    env = redis_settings(docs)
    assert env["TOPICWATCH_REDIS_CLUSTER"] == "true"
    assert env["TOPICWATCH_REDIS_WAIT_REPLICAS"] == "1", "no acknowledged write lost at failover"
    partitions = int(env["TOPICWATCH_PARTITIONS"])
    assert partitions == 3
    names = stream_names(docs)
    assert names.tagged and names.partitions == partitions
    deployments = by_kind(docs, "Deployment")
    share: dict[str, list[int]] = {"classify": [], "notify": []}
    for deployment in deployments.values():
        pod_env = {e["name"]: e["value"] for e in container(deployment).get("env", [])}
        if component(deployment) == "ingest":
            assert "TOPICWATCH_CONSUME_PARTITIONS" not in pod_env
            continue
        partition = int(pod_env["TOPICWATCH_CONSUME_PARTITIONS"])
        share[component(deployment)].append(partition)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["topicwatch.io/partition"] == str(partition)
        # What the pod's settings load to (the Secret adds the URL: several seed nodes).
        variables = {**env, **pod_env, "TOPICWATCH_REDIS_URL": "redis://a:6379,redis://b:6379"}
        settings = Settings(**{env_name_to_field(k): v for k, v in variables.items()})
        assert settings.redis_cluster and settings.own_partitions == [partition]
    assert sorted(share["classify"]) == sorted(share["notify"]) == list(range(partitions))
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"ingest"} | {f"{s}-p{p}" for s in share for p in range(partitions)}
    auth = by_kind(docs, "TriggerAuthentication")
    streams = set()
    for scaled in by_kind(docs, "ScaledObject").values():
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "cpu":
                continue
            assert trigger["type"] == "redis-cluster-streams"
            metadata = trigger["metadata"]
            assert len(metadata["addresses"].split(",")) >= 3, "several seed nodes"
            assert trigger["authenticationRef"]["name"] in auth
            assert metadata["enableTLS"] == "true"
            streams.add(metadata["stream"])
    assert streams == {names.ingest, *names.accepted_streams, *names.classified_streams}
    # Each partition stream in its own hash slot, as the services write it.
    slots = {key_slot(s.encode()) for s in (*names.accepted_streams, *names.classified_streams)}
    assert len(slots) == partitions


def env_name_to_field(variable: str) -> str:
    return variable.removeprefix("TOPICWATCH_").lower()
