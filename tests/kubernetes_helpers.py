"""Shared Kubernetes test helpers: schema validation, fixtures, a run, the shipped manifests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from runq.agent.infrastructure.kubernetes import (
    KubernetesHandle,
    KubernetesRunner,
)
from runq.broker import Broker, FlowRun
from runq.broker import KubernetesInfrastructure as Settings
from tests.kubernetes_fake import FakeKubernetes
from tests.kubernetes_fake_cluster import job_pod

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
#: Schema versions every manifest must pass: a widely deployed one and the newest shipped.
SCHEMA_VERSIONS = ("1.30", kubernetes_validate.latest_version())
ENGINE_ENV = {
    "RUNQ_API_URL": "redis://redis.runq.svc:6379/0",
    "RUNQ_CLAIM_TOKEN": "1",
    "RUNQ_AGENT_ID": "agent-1",
}


def validate(document: dict[str, Any]) -> None:
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Wait for a condition (checked every 10 ms), failing with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return value


# ---- fixtures -----------------------------------------------------------------------


def role_rules() -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the shipped Role grants."""
    role = next(doc for doc in documents(DEPLOY / "rbac.yaml") if doc["kind"] == "Role")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    """The fake API server; afterwards, every request made must be one the Role allows."""
    server = FakeKubernetes()
    server.start()
    yield server
    server.stop()
    used = {call.rbac() for call in server.calls}
    assert used <= role_rules(), f"requests the Role does not grant: {used - role_rules()}"


@pytest.fixture
def handles() -> Iterator[list[KubernetesHandle]]:
    """Handles a test started; whatever is still followed afterwards is let go."""
    started: list[KubernetesHandle] = []
    yield started
    for handle in started:
        handle.detach()


@pytest.fixture
def claimed(broker: Broker) -> FlowRun:
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent-1")
    return run


def submit(
    fake: FakeKubernetes,
    broker: Broker,
    run: FlowRun,
    handles: list[KubernetesHandle],
    **settings: Any,
) -> KubernetesHandle:
    options = {"namespace": "runq", "image": "runq:test", "stream_output": True, **settings}
    infrastructure = KubernetesRunner(broker, Settings(**options), api_client=fake.api_client())
    handle = infrastructure.submit(run, None, dict(ENGINE_ENV))
    handles.append(handle)
    return handle


def running(
    fake: FakeKubernetes, broker: Broker, run: FlowRun, handles: list[KubernetesHandle]
) -> tuple[KubernetesHandle, str, str]:
    """Submit ``run``; its pod runs and the handle follows its log: (handle, job, pod)."""
    handle = submit(fake, broker, run, handles)
    job, pod = handle.job_name, f"{handle.job_name}-abcde"
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.wait_for(lambda: fake.open["log"] == 1, "the log stream")
    return handle, job, pod


class Echo:
    """What the handles echoed (``stream_output``): the pod's lines reach the agent's output
    only; the engine in the pod stores them in the run's log itself."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.seen = capsys, ""

    def __call__(self, broker: Broker, run: FlowRun) -> list[str]:
        self.seen += self.capsys.readouterr().out
        prefix = f"{run.name} | "
        return [line[len(prefix) :] for line in self.seen.splitlines() if line.startswith(prefix)]


@pytest.fixture
def messages(capsys: pytest.CaptureFixture[str]) -> Echo:
    return Echo(capsys)


def finish_pod(fake: FakeKubernetes, job: str, pod: str, exit_code: int, *lines: str) -> None:
    """The pod runs, prints ``lines`` and ends with ``exit_code``."""
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.log(pod, *lines)
    fake.put(
        "pods", job_pod(job, pod, "Succeeded" if exit_code == 0 else "Failed", exit_code=exit_code)
    )
    fake.close_log(pod)


def a_run() -> FlowRun:
    return FlowRun.model_validate(
        {
            "id": "0b9c7d5e-7c2f-4a57-9a6f-3d5e8b1f2a44",
            "name": "brave-otter",
            "work_queue_name": "q",
            "deployment_id": "5d2a4c1e-0000-4000-8000-000000000001",
            "state": {"type": "PENDING", "name": "Pending", "timestamp": "2024-05-01T12:00:00Z"},
            "expected_start_time": "2024-05-01T12:00:00Z",
            "created": "2024-05-01T12:00:00Z",
        }
    )


# ---- deploy/kubernetes ----------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = sorted(path.name for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml")


def manifest(kind: str, name: str) -> dict[str, Any]:
    for file in MANIFESTS:
        for doc in documents(DEPLOY / file):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")
