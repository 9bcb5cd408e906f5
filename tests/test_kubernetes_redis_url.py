"""Jobs get the Redis URL from a Secret, never a password in a plain value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runq.agent.infrastructure import InfrastructureError
from runq.agent.infrastructure import kubernetes as k8s
from runq.agent.infrastructure.kubernetes import (
    KubernetesHandle,
    KubernetesRunner,
    job_manifest,
)
from runq.broker import Broker, FlowRun
from runq.broker import KubernetesInfrastructure as Settings
from tests.kubernetes_fake import FakeKubernetes
from tests.kubernetes_helpers import ENGINE_ENV, a_run, claimed, fake, handles, manifest, validate  # noqa: F401

# ---- the Redis URL: from a Secret, never a password in a plain value --------------------

WITH_PASSWORD = "redis://runq-engine:s3cret-pw@redis.runq.svc:6379/0"


def env_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


def test_the_job_reads_the_url_from_the_named_secret(
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the API server: the Job the agent creates carries a secretKeyRef, and the
    password appears nowhere in what was sent."""
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", "runq-redis")
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET_KEY", "engine-url")
    infrastructure = KubernetesRunner(
        broker,
        Settings(namespace="runq", image="runq:test", stream_output=False),
        api_client=fake.api_client(),
    )
    handles.append(
        infrastructure.submit(claimed, None, {**ENGINE_ENV, "RUNQ_API_URL": WITH_PASSWORD})
    )
    [create] = fake.requests("POST", "jobs")
    validate(create.body)
    [url] = [item for item in env_of(create.body) if item["name"] == "RUNQ_API_URL"]
    assert url == {
        "name": "RUNQ_API_URL",
        "valueFrom": {"secretKeyRef": {"name": "runq-redis", "key": "engine-url"}},
    }
    assert "s3cret-pw" not in json.dumps(create.body)
    names = [item["name"] for item in env_of(create.body)]
    assert names.count("RUNQ_API_URL") == 1 and "RUNQ_AGENT_ID" in names


def test_the_secret_key_defaults_to_url_and_a_cluster_url_keeps_its_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", "runq-redis")
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET_KEY", raising=False)
    secret = k8s.url_secret_from_env()
    assert secret == ("runq-redis", "url")
    env = {**ENGINE_ENV, "RUNQ_API_URL": "redis+cluster://:pw@redis-0.redis:6379"}
    job = job_manifest(a_run(), Settings(), env, url_secret=secret)
    validate(job)
    values = {item["name"]: item.get("value") for item in env_of(job)}
    assert values["RUNQ_REDIS_CLUSTER"] == "1", "the Secret's URL may be a plain redis:// seed"
    assert "pw" not in json.dumps(env_of(job))
    # No URL handed in at all: the engine still gets it from the Secret.
    assert {
        "name": "RUNQ_API_URL",
        "valueFrom": {"secretKeyRef": {"name": "runq-redis", "key": "url"}},
    } in env_of(job_manifest(a_run(), Settings(), {}, url_secret=secret))


@pytest.mark.parametrize("url", [WITH_PASSWORD, "redis://redis.runq.svc:6379/0?password=s3cret-pw"])
def test_without_a_secret_a_password_is_refused_in_one_line(
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET", raising=False)
    infrastructure = KubernetesRunner(
        broker, Settings(namespace="runq"), api_client=fake.api_client()
    )
    with pytest.raises(InfrastructureError) as caught:
        infrastructure.submit(claimed, None, {**ENGINE_ENV, "RUNQ_API_URL": url})
    message = str(caught.value)
    assert "RUNQ_KUBERNETES_URL_SECRET" in message and "has a password" in message
    assert "s3cret-pw" not in message and "\n" not in message
    assert not fake.requests("POST", "jobs"), "nothing was created"


def test_without_a_secret_a_url_with_no_password_stays_a_plain_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET", raising=False)
    assert k8s.url_secret_from_env() is None
    job = job_manifest(a_run(), Settings(), ENGINE_ENV)
    assert {"name": "RUNQ_API_URL", "value": ENGINE_ENV["RUNQ_API_URL"]} in env_of(job)


@pytest.mark.parametrize(
    "name, key", [("Runq_Redis", "url"), ("runq-redis", "a key"), ("-x", "url")]
)
def test_an_invalid_secret_name_or_key_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", name)
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET_KEY", key)
    with pytest.raises(InfrastructureError, match="is not a valid Secret (name|key)"):
        k8s.url_secret_from_env()


def test_the_shipped_agent_hands_jobs_the_url_through_the_secret() -> None:
    container = manifest("Deployment", "runq-agent")["spec"]["template"]["spec"]["containers"][0]
    values = {item["name"]: item.get("value") for item in container["env"]}
    secret = manifest("Secret", values["RUNQ_KUBERNETES_URL_SECRET"])
    assert secret["metadata"]["namespace"] == "runq"
    assert values["RUNQ_KUBERNETES_URL_SECRET_KEY"] in secret["stringData"]
