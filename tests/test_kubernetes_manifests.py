"""The shipped deploy/kubernetes manifests are valid and grant and run exactly what is needed."""

from __future__ import annotations

import pytest

from tests.kubernetes_helpers import DEPLOY, MANIFESTS, documents, manifest, role_rules, validate


@pytest.mark.parametrize("file", MANIFESTS)
def test_every_shipped_manifest_is_valid_kubernetes(file: str) -> None:
    docs = documents(DEPLOY / file)
    assert docs
    for doc in docs:
        validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "runq"


def test_the_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    [kustomization] = documents(DEPLOY / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "runq"
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {"secret.example.yaml"})
    assert {"name": "runq", "newName": "runq", "newTag": "latest"} in kustomization["images"]
    images = {
        container["image"]
        for file in MANIFESTS
        for doc in documents(DEPLOY / file)
        if doc["kind"] in ("Deployment", "StatefulSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"runq:latest", "redis:7"}


def test_the_role_grants_exactly_what_the_agent_needs() -> None:
    assert role_rules() == {
        ("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")
    } | {("", "pods", verb) for verb in ("get", "list", "watch")} | {("", "pods/log", "get")}
    binding = manifest("RoleBinding", "runq-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "runq-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runq-agent", "namespace": "runq"}
    ]
    manifest("ServiceAccount", "runq-agent")


def test_the_agent_deployment() -> None:
    deployment = manifest("Deployment", "runq-agent")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 2 and pod["serviceAccountName"] == "runq-agent"
    command = container["command"]
    assert command[:3] == ["runq", "agent", "start"] and "--health-port" in command
    port = int(command[command.index("--health-port") + 1])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in (port, "health")
    ports = [(item.get("name"), item["containerPort"]) for item in container["ports"]]
    assert ("health", port) in ports
    [api_url] = [item for item in container["env"] if item["name"] == "RUNQ_API_URL"]
    assert api_url["valueFrom"]["secretKeyRef"] == {"name": "runq-redis", "key": "url"}
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )


def test_the_secret_example_has_what_the_workloads_read() -> None:
    secret = manifest("Secret", "runq-redis")
    keys = set(secret["stringData"])
    workloads = (
        ("Deployment", "runq-agent"),
        ("Deployment", "runq-scheduler"),
        ("StatefulSet", "redis"),
    )
    for kind, name in workloads:
        for container in manifest(kind, name)["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "runq-redis" and ref["key"] in keys
    assert "redis.runq.svc" in secret["stringData"]["url"]


def test_the_scheduler_and_redis() -> None:
    scheduler = manifest("Deployment", "runq-scheduler")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert scheduler["command"][:3] == ["runq", "scheduler", "start"]
    redis = manifest("StatefulSet", "redis")
    [container] = redis["spec"]["template"]["spec"]["containers"]
    args = " ".join(container["command"] + container.get("args", []))
    assert (
        "--appendonly yes" in args
        and "--maxmemory-policy noeviction" in args
        and "--dir /data" in args
    )
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    service = manifest("Service", redis["spec"]["serviceName"])
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
