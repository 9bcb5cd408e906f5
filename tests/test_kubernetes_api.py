"""The agent's API conversation: Jobs are created, watched, followed, stopped, and end right."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from runq.agent.infrastructure import InfrastructureError
from runq.agent.infrastructure.kubernetes import (
    KubernetesHandle,
)
from runq.broker import Broker, FlowRun
from tests.kubernetes_fake import FakeKubernetes
from tests.kubernetes_fake_cluster import job_pod
from tests.kubernetes_helpers import (  # noqa: F401
    ENGINE_ENV,
    Echo,
    claimed,
    fake,
    finish_pod,
    handles,
    messages,
    running,
    submit,
    validate,
    wait_until,
)

# ---- the conversation -----------------------------------------------------------------


def test_a_job_runs_to_completion_and_its_log_is_echoed(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles, env={"EXTRA": "1"})
    job = handle.job_name
    assert handle.infrastructure_id == f"runq:{job}"
    [create] = fake.requests("POST", "jobs")
    assert create.path == "/apis/batch/v1/namespaces/runq/jobs"
    validate(create.body)
    container = create.body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["runq", "flow-run", "execute", str(claimed.id)]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["EXTRA"] == "1" and env["RUNQ_API_URL"] == ENGINE_ENV["RUNQ_API_URL"]
    assert create.body["metadata"]["labels"]["runq.io/flow-run-id"] == str(claimed.id)
    assert create.body["metadata"]["labels"]["runq.io/agent-id"] == "agent-1"

    # Pending, and the pod watch breaks meanwhile: it is resumed, nothing is concluded.
    fake.put("pods", job_pod(job, f"{job}-abcde", "Pending", waiting=("ContainerCreating", "")))
    fake.wait_for(lambda: fake.open["pods"] == 1, "the pod watch")
    fake.cut("pods")
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", watch=True)) == 2, "the pod watch to resume"
    )
    assert handle.poll() is None

    fake.put("pods", job_pod(job, f"{job}-abcde", "Running", running=True))
    fake.wait_for(lambda: fake.open["log"] == 1, "the log stream")
    fake.log(f"{job}-abcde", "hello", "world")
    wait_until(
        lambda: messages(broker, claimed) == ["hello", "world"], "the lines in the run's log"
    )
    assert handle.poll() is None

    fake.put("pods", job_pod(job, f"{job}-abcde", "Succeeded", exit_code=0))
    fake.close_log(f"{job}-abcde")
    fake.set_job_condition(job, "Complete")
    assert wait_until(lambda: handle.poll() is not None, "the Job's end") and handle.poll() == 0
    assert handle.reason is None
    assert messages(broker, claimed) == ["hello", "world"]
    [log_call] = fake.requests("GET", "pods", log=True)
    assert log_call.query["follow"] == "true" and log_call.query["container"] == "runq"
    assert not fake.requests("DELETE", "jobs")


@pytest.mark.parametrize("how", ["timeout", "dropped", "expired"])
def test_the_job_watch_resumes_and_never_concludes_from_a_break(
    how: str,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job = handle.job_name
    finish_pod(fake, job, f"{job}-abcde", 0, "done")
    fake.wait_for(lambda: fake.open["jobs"] == 1, "the Job watch")
    [first] = fake.requests("GET", "jobs", watch=True)
    if how == "timeout":
        fake.end("jobs")
    elif how == "dropped":
        fake.cut("jobs")
    else:
        fake.compact()
        fake.cut("jobs")
    expected_watches = 3 if how == "expired" else 2  # expired: the retry gets 410, lists, watches
    fake.wait_for(
        lambda: (
            fake.open["jobs"] == 1
            and len(fake.requests("GET", "jobs", watch=True)) == expected_watches
        ),
        "the Job watch to resume",
    )
    watches = fake.requests("GET", "jobs", watch=True)
    lists = fake.requests("GET", "jobs", watch=False)
    if how == "expired":
        assert len(lists) == 2, "a 410 Gone makes it list again"
        assert int(watches[-1].query["resourceVersion"]) > int(first.query["resourceVersion"])
    else:
        assert len(lists) == 1, "a plain break resumes without listing"
        assert watches[1].query["resourceVersion"] == first.query["resourceVersion"]
    assert handle.poll() is None and handle.reason is None

    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 0 and handle.reason is None


@pytest.mark.parametrize(
    "reason, pod_status",
    [
        (
            "ImagePullBackOff",
            {"waiting": ("ImagePullBackOff", 'Back-off pulling image "runq:nope"')},
        ),
        ("ErrImagePull", {"waiting": ("ErrImagePull", "manifest unknown")}),
        ("Unschedulable", {"unschedulable": "0/3 nodes are available: 3 Insufficient cpu."}),
    ],
)
def test_a_pod_that_cannot_start_fails_with_its_reason_after_the_pod_timeout(
    reason: str,
    pod_status: dict[str, Any],
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    started = time.monotonic()
    handle = submit(fake, broker, claimed, handles, pod_watch_timeout_seconds=1)
    fake.put("pods", job_pod(handle.job_name, f"{handle.job_name}-abcde", "Pending", **pod_status))
    wait_until(lambda: handle.poll() is not None, "the start failure")
    assert time.monotonic() - started >= 1.0, "it waited for the pod watch timeout"
    assert handle.poll() == -1
    assert reason in handle.reason and "could not start" in handle.reason
    message = pod_status.get("unschedulable") or pod_status["waiting"][1]
    assert message in handle.reason
    [delete] = fake.requests("DELETE", "jobs")
    assert delete.body["propagationPolicy"] == "Foreground", (
        "a stuck Job must not start the run later"
    )


def test_a_slow_but_ordinary_pending_pod_is_waited_for(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle = submit(fake, broker, claimed, handles, pod_watch_timeout_seconds=1)
    job = handle.job_name
    fake.put("pods", job_pod(job, f"{job}-abcde", "Pending", waiting=("ContainerCreating", "")))
    # Two pod watches after the deadline (each ends at the deadline or by us) and still waiting.
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", watch=True)) == 2 and fake.open["pods"] == 1,
        "the pod watch past the deadline",
    )
    assert handle.poll() is None
    finish_pod(fake, job, f"{job}-abcde", 0)
    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 0


def test_a_failed_container_reports_its_exit_code_and_the_job_failure(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job = handle.job_name
    finish_pod(
        fake, job, f"{job}-abcde", 3, "Traceback (most recent call last):", "RuntimeError: boom"
    )
    fake.set_job_condition(
        job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    )
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 3
    assert "BackoffLimitExceeded" in handle.reason
    assert messages(broker, claimed) == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_a_broken_log_stream_is_reopened_without_duplicates(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job, pod = handle.job_name, f"{handle.job_name}-abcde"
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.log(pod, "one", "two")
    wait_until(lambda: messages(broker, claimed) == ["one", "two"], "the first lines")
    fake.cut("log")
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", log=True)) == 2 and fake.open["log"] == 1,
        "the log stream to reopen",
    )
    assert "sinceSeconds" in fake.requests("GET", "pods", log=True)[1].query
    fake.log(pod, "three")
    fake.put("pods", job_pod(job, pod, "Succeeded", exit_code=0))
    fake.close_log(pod)
    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert messages(broker, claimed) == ["one", "two", "three"]


def test_stop_deletes_the_job_in_the_foreground_and_reports_the_pods_exit(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle, job, pod = running(fake, broker, claimed, handles)
    result: list[int] = []
    stopper = threading.Thread(target=lambda: result.append(handle.stop(5)))
    stopper.start()
    fake.wait_for(lambda: fake.requests("DELETE", "jobs"), "the DELETE")
    [delete] = fake.requests("DELETE", "jobs")
    assert delete.path == f"/apis/batch/v1/namespaces/runq/jobs/{job}"
    assert (
        delete.body["propagationPolicy"] == "Foreground" and delete.body["gracePeriodSeconds"] == 5
    )
    assert handle.poll() is None, "stopping is not stopped: the pod has its grace period"
    # The cluster: SIGTERM ends the container (the engine exits 130 here), then the Job goes.
    fake.put("pods", job_pod(job, pod, "Failed", exit_code=130))
    fake.close_log(pod)
    fake.wait_for(
        lambda: any(call.path.endswith(f"/pods/{pod}") for call in fake.calls), "the pod read"
    )
    fake.remove("pods", pod)
    fake.remove("jobs", job)
    stopper.join(10)
    assert result == [130] and handle.poll() == 130


def test_a_job_deleted_by_someone_else_is_reported_not_waited_for(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle, job, pod = running(fake, broker, claimed, handles)
    fake.remove("pods", pod)
    fake.close_log(pod)
    fake.remove("jobs", job)
    wait_until(lambda: handle.poll() is not None, "the verdict")
    assert handle.poll() == -1 and "deleted before it finished" in handle.reason


def test_a_refused_job_is_an_infrastructure_error(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    fake.refuse_create = (
        403,
        'jobs.batch is forbidden: User "system:serviceaccount:runq:x" cannot create',
    )
    with pytest.raises(InfrastructureError, match="403 .*jobs.batch is forbidden"):
        submit(fake, broker, claimed, handles)


def test_a_customization_that_does_not_apply_creates_nothing(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    with pytest.raises(InfrastructureError, match="customizations"):
        submit(
            fake,
            broker,
            claimed,
            handles,
            customizations=[{"op": "remove", "path": "/spec/nothing"}],
        )
    assert not fake.requests("POST", "jobs")
