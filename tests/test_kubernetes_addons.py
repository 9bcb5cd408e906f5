"""Kubernetes add-ons beside the agent: the ``runq ui`` Deployment and Service, and
autoscaling the agent with KEDA (deploy/kubernetes/keda: the ScaledObject and the
``runq exporter`` it reads).

Split from tests/test_kubernetes.py (the agent's Jobs, its API conversation and the core
manifests), whose helpers these tests share: manifests are checked against the
Kubernetes JSON schemas with the same ``validate``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.kubernetes_helpers import DEPLOY, documents, manifest, validate

# ---- runq ui (deploy/kubernetes/ui.yaml) ------------------------------------------------


def test_the_ui_deployment_and_service() -> None:
    """runq ui off loopback: a token file from the runq-ui Secret, liveness on /healthz,
    readiness on /readyz."""
    deployment = manifest("Deployment", "runq-ui")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    assert command[:2] == ["runq", "ui"] and command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    token_file = command[command.index("--token-file") + 1]
    [mount] = container["volumeMounts"]
    assert token_file.startswith(mount["mountPath"] + "/") and mount["readOnly"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "runq-ui"
    assert ("http", port) in [(item["name"], item["containerPort"]) for item in container["ports"]]
    # liveness: the process answers; readiness: Redis answers (an outage restarts nothing)
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    [api_url] = [item for item in container["env"] if item["name"] == "RUNQ_API_URL"]
    assert api_url["valueFrom"]["secretKeyRef"] == {"name": "runq-redis", "key": "url"}
    service = manifest("Service", "runq-ui")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


# ---- autoscaling with KEDA (deploy/kubernetes/keda) -------------------------------------

KEDA = DEPLOY / "keda"
#: The ScaledObject fields KEDA documents (keda.sh/docs/2.15/reference/scaledobject-spec
#: and scalers/prometheus); kubernetes-validate knows no CRDs, so these are checked here.
SCALED_OBJECT_FIELDS: dict[str, set[str]] = {
    "spec": {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    },
    "scaleTargetRef": {"apiVersion", "kind", "name", "envSourceContainerName"},
    "fallback": {"failureThreshold", "replicas"},
    "advanced": {
        "restoreToOriginalReplicaCount",
        "horizontalPodAutoscalerConfig",
        "scalingModifiers",
    },
    "horizontalPodAutoscalerConfig": {"name", "behavior"},
    "trigger": {"type", "metadata", "name", "useCachedMetrics", "authenticationRef", "metricType"},
    "prometheus": {
        "serverAddress",
        "query",
        "queryParameters",
        "threshold",
        "activationThreshold",
        "namespace",
        "customHeaders",
        "ignoreNullValues",
        "unsafeSsl",
        "authModes",
    },
}


def keda_manifest(kind: str, name: str) -> dict[str, Any]:
    for path in sorted(KEDA.glob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes/keda")


def check_fields(section: str, value: dict[str, Any]) -> None:
    unknown = set(value) - SCALED_OBJECT_FIELDS[section]
    assert not unknown, f"{section}: fields KEDA does not know: {sorted(unknown)}"


def test_the_scaled_object_follows_kedas_documented_spec() -> None:
    scaled = keda_manifest("ScaledObject", "runq-agent")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["metadata"]["namespace"] == "runq"
    spec = scaled["spec"]
    check_fields("spec", spec)
    check_fields("scaleTargetRef", spec["scaleTargetRef"])
    for field in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        assert isinstance(spec[field], int) and spec[field] >= 0, field
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec.get("idleReplicaCount", -1) < spec["minReplicaCount"]
    check_fields("fallback", spec["fallback"])
    assert set(spec["fallback"]) == {"failureThreshold", "replicas"}  # both mandatory
    check_fields("advanced", spec["advanced"])
    hpa = spec["advanced"]["horizontalPodAutoscalerConfig"]
    check_fields("horizontalPodAutoscalerConfig", hpa)
    # KEDA hands `behavior` to the HPA as is: it must be a valid HPA behavior.
    validate(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "check", "namespace": "runq"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 2,
                "behavior": hpa["behavior"],
            },
        }
    )
    [trigger] = spec["triggers"]
    check_fields("trigger", trigger)
    assert trigger["type"] == "prometheus" and trigger["metricType"] in ("AverageValue", "Value")
    check_fields("prometheus", trigger["metadata"])
    metadata = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(metadata)  # required
    assert all(isinstance(v, str) for v in metadata.values()), "trigger metadata are strings"
    assert float(metadata["threshold"]) > 0 and float(metadata["activationThreshold"]) >= 0
    assert metadata["serverAddress"].startswith("http")


def test_the_scaled_object_scales_the_shipped_agent_on_its_queues_backlog() -> None:
    from tests.test_metrics import exported_names

    spec = keda_manifest("ScaledObject", "runq-agent")["spec"]
    target = spec["scaleTargetRef"]
    agent = manifest(target["kind"], target["name"])
    assert agent["apiVersion"] == target["apiVersion"]
    command = agent["spec"]["template"]["spec"]["containers"][0]["command"]
    queue = command[command.index("-q") + 1]
    query = spec["triggers"][0]["metadata"]["query"]
    named = set(re.findall(r"\brunq_[a-z_]+", query))
    assert "runq_queue_due_runs" in named and named <= exported_names()
    assert f'queue="{queue}"' in query


def test_the_exporter_manifests_are_valid_and_agree() -> None:
    docs = documents(KEDA / "exporter.yaml")
    for doc in docs:
        validate(doc)
        assert doc["metadata"]["namespace"] == "runq"
    deployment = keda_manifest("Deployment", "runq-exporter")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["runq", "exporter"]
    port = int(command[command.index("--port") + 1])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    [api_url] = [item for item in container["env"] if item["name"] == "RUNQ_API_URL"]
    assert api_url["valueFrom"]["secretKeyRef"] == {"name": "runq-redis", "key": "url"}
    service = keda_manifest("Service", "runq-exporter")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] in ("metrics", port)
    [kustomization] = documents(KEDA / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == ["exporter.yaml", "scaledobject.yaml"]
