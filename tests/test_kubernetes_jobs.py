"""The Jobs runq generates are valid, carry every setting, and customizations apply as RFC 6902."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from runq.agent.infrastructure import kubernetes as k8s
from runq.agent.infrastructure.kubernetes import (
    JsonPatchError,
    apply_json_patch,
    job_manifest,
)
from runq.broker import KubernetesInfrastructure as Settings
from tests.kubernetes_helpers import ENGINE_ENV, a_run, validate

# ---- generated Jobs -------------------------------------------------------------------


SETTINGS_COMBOS = {
    "defaults": {},
    "everything": {
        "image": "registry.example.com/runq:1.2.3",
        "namespace": "flows",
        "command": ["python", "-m", "runq", "flow-run", "execute"],
        "env": {"LOG_LEVEL": "debug"},
        "labels": {"team": "data", "runq.io/flow-run-id": "spoofed"},
        "service_account_name": "flow-runner",
        "image_pull_policy": "Always",
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "backoff_limit": 2,
        "ttl_seconds_after_finished": 600,
        "job_watch_timeout_seconds": 3600,
    },
    "customized": {
        "customizations": [
            {
                "op": "add",
                "path": "/spec/template/spec/tolerations",
                "value": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "flows",
                        "effect": "NoSchedule",
                    }
                ],
            },
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/env/-",
                "value": {"name": "ADDED", "value": "yes"},
            },
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "runq:custom",
            },
            {"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "ops"},
            {"op": "test", "path": "/spec/backoffLimit", "value": 0},
        ],
    },
}


@pytest.mark.parametrize("combo", sorted(SETTINGS_COMBOS))
def test_generated_jobs_are_valid_kubernetes(combo: str) -> None:
    settings = Settings(**SETTINGS_COMBOS[combo])
    job = job_manifest(a_run(), settings, ENGINE_ENV)
    validate(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == settings.backoff_limit
    assert job["metadata"]["namespace"] == settings.namespace
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_a_job_carries_every_setting() -> None:
    settings = Settings(**SETTINGS_COMBOS["everything"])
    job = job_manifest(a_run(), settings, ENGINE_ENV)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "runq" and container["image"] == "registry.example.com/runq:1.2.3"
    assert container["command"] == ["python", "-m", "runq", "flow-run", "execute", str(a_run().id)]
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == settings.resources
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["LOG_LEVEL"] == "debug" and env["RUNQ_CLAIM_TOKEN"] == "1"
    assert pod["serviceAccountName"] == "flow-runner"
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert spec["backoffLimit"] == 2 and spec["ttlSecondsAfterFinished"] == 600
    assert spec["activeDeadlineSeconds"] == 3600
    labels = job["metadata"]["labels"]
    assert labels["team"] == "data"
    assert labels["runq.io/flow-run-id"] == str(a_run().id), "runq's own labels win"
    assert labels["runq.io/deployment-id"] == str(a_run().deployment_id)


def test_defaults_run_the_engine_with_no_deadline_and_no_ttl() -> None:
    job = job_manifest(a_run(), Settings(), {})
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["runq", "flow-run", "execute", str(a_run().id)]
    assert (
        "activeDeadlineSeconds" not in job["spec"] and "ttlSecondsAfterFinished" not in job["spec"]
    )
    assert job["metadata"]["labels"]["runq.io/agent-id"] == ""


def test_customizations_apply_in_order() -> None:
    job = job_manifest(a_run(), Settings(**SETTINGS_COMBOS["customized"]), ENGINE_ENV)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "runq:custom"
    assert container["env"][-1] == {"name": "ADDED", "value": "yes"}
    assert job["metadata"]["annotations"]["example.com/owner"] == "ops"
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "dedicated"


def test_job_names_are_unique_valid_and_name_the_run() -> None:
    names = {k8s.job_name(a_run()) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        # The Job controller names pods <job>-<5 chars>: 63 characters at most.
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) + 6 <= 63
        assert name.startswith("runq-0b9c7d5e-")


def test_agent_ids_become_valid_label_values() -> None:
    assert k8s.label_value("agent-7f9c6d-xk2p-1-a1b2c3") == "agent-7f9c6d-xk2p-1-a1b2c3"
    odd = k8s.label_value("_my host/name:" + "x" * 80)
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", odd) and len(odd) <= 63
    job = job_manifest(a_run(), Settings(), {"RUNQ_AGENT_ID": "Agent on host.example.com!"})
    validate(job)


# ---- RFC 6902 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, expected",
    [
        (
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "list": [1, 2], "baz": "qux"},
        ),
        ([{"op": "add", "path": "/list/1", "value": 9}], {"foo": "bar", "list": [1, 9, 2]}),
        ([{"op": "add", "path": "/list/-", "value": 3}], {"foo": "bar", "list": [1, 2, 3]}),
        ([{"op": "remove", "path": "/list/0"}], {"foo": "bar", "list": [2]}),
        ([{"op": "replace", "path": "/foo", "value": {"a": 1}}], {"foo": {"a": 1}, "list": [1, 2]}),
        ([{"op": "move", "from": "/foo", "path": "/moved"}], {"list": [1, 2], "moved": "bar"}),
        (
            [{"op": "copy", "from": "/list", "path": "/copy"}],
            {"foo": "bar", "list": [1, 2], "copy": [1, 2]},
        ),
        ([{"op": "test", "path": "/list/1", "value": 2}], {"foo": "bar", "list": [1, 2]}),
        (
            [{"op": "add", "path": "/a~1b~0c", "value": 1}],
            {"foo": "bar", "list": [1, 2], "a/b~c": 1},
        ),
    ],
)
def test_json_patch_operations(patch: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    document = {"foo": "bar", "list": [1, 2]}
    assert apply_json_patch(document, patch) == expected
    assert document == {"foo": "bar", "list": [1, 2]}, "the input is left alone"


@pytest.mark.parametrize(
    "operation, reason",
    [
        ({"op": "test", "path": "/foo", "value": "other"}, "test failed: '/foo' is not 'other'"),
        ({"op": "test", "path": "/missing", "value": 1}, "no member 'missing'"),
        ({"op": "remove", "path": "/missing"}, "no member 'missing'"),
        ({"op": "remove", "path": ""}, "cannot remove the whole document"),
        ({"op": "remove", "path": "/list/-"}, "'-' is not an array index"),
        ({"op": "replace", "path": "/missing", "value": 1}, "no member 'missing'"),
        ({"op": "replace", "path": "/list/2", "value": 1}, "index 2 is out of range"),
        ({"op": "add", "path": "/list/5", "value": 1}, "index 5 is out of range"),
        ({"op": "add", "path": "/missing/deeper", "value": 1}, "no member 'missing'"),
        ({"op": "add", "path": "/foo/x", "value": 1}, "the parent is not an object or an array"),
        ({"op": "add", "path": "/foo/x/y", "value": 1}, "cannot descend into str at 'x'"),
        ({"op": "add", "path": "no-slash", "value": 1}, "path 'no-slash' must start with '/'"),
        ({"op": "add", "path": "/list/01", "value": 1}, "'01' is not an array index"),
        ({"op": "add", "path": 5, "value": 1}, "'path' must be a string"),
        ({"op": "move", "from": "/list", "path": "/list/0"}, "cannot move a value into itself"),
        ({"op": "move", "from": "/list/0", "path": "/list/2"}, "index 2 is out of range"),
        ({"op": "copy", "from": "/nope", "path": "/copy"}, "no member 'nope'"),
        ({"op": "frobnicate", "path": "/foo"}, "unknown op 'frobnicate'"),
        ({"path": "/foo", "value": 1}, "unknown op None"),
        ({"op": "add", "path": "/foo"}, "missing 'value'"),
        ({"op": "add", "value": 1}, "missing 'path'"),
        ({"op": "copy", "path": "/foo"}, "missing 'from'"),
    ],
)
def test_json_patch_errors_name_the_operation(operation: dict[str, Any], reason: str) -> None:
    document = {"foo": "bar", "list": [1, 2]}
    patch = [{"op": "add", "path": "/ok", "value": 1}, operation]
    with pytest.raises(JsonPatchError) as raised:
        apply_json_patch(document, patch)
    assert str(raised.value) == f"customization #1 ({json.dumps(operation)}): {reason}"
    assert document == {"foo": "bar", "list": [1, 2]}, "all or nothing: the input is left alone"
