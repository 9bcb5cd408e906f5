"""The Docker infrastructure end to end: a real Docker engine, the runq image, real agents.

The image is ``RUNQ_TEST_IMAGE`` (default ``runq:latest``, built by
deploy/build-local-images.sh, as CI does). Containers use the host's network so the
engine inside reaches the test Redis on 127.0.0.1; the flows folder is mounted.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, ended, state_of, wait_for

docker = pytest.importorskip("docker")

IMAGE = os.environ.get("RUNQ_TEST_IMAGE", "runq:latest")

# Fixtures of this module: one Redis for these slow tests, a flows folder, agent processes.
redis_server = agent_helpers.redis_server
agents = agent_helpers.agents
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # no engine here: say so, CI has one
        pytest.skip(f"no Docker engine reachable: {error}")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"image {IMAGE} is not built (deploy/build-local-images.sh builds it)")
    yield client
    for container in client.containers.list(all=True, filters={"label": "runq.io/flow-run-id"}):
        try:
            container.remove(force=True)  # the kept (not auto_remove) containers of these tests
        except docker.errors.APIError as error:
            # gone meanwhile, or already being removed (auto_remove, an agent's clean-up)
            if error.status_code not in (404, 409):
                raise


@pytest.fixture
def workdir(tmp_path: Path, docker_client) -> Path:
    """The flows folder, readable and writable by the image's non-root user."""
    (tmp_path / "flows.py").write_text(agent_helpers.FLOWS)
    tmp_path.chmod(0o777)
    (tmp_path / "flows.py").chmod(0o644)
    return tmp_path


def docker_deploy(
    broker: Broker,
    workdir: Path,
    name: str,
    queue: str,
    function: str | None = None,
    **infrastructure,
) -> None:
    settings = {
        "type": "docker",
        "image": IMAGE,
        "network_mode": "host",
        "volumes": [f"{workdir}:/flows"],
        "image_pull_policy": "never",
        **infrastructure,
    }
    fields = {"entrypoint": f"/flows/flows.py:{function}"} if function else {"command": ["true"]}
    broker.create_deployment(name=name, work_queue_name=queue, infrastructure=settings, **fields)


def containers_of(client, run_id) -> list:
    return client.containers.list(all=True, filters={"label": f"runq.io/flow-run-id={run_id}"})


def test_a_flow_completes_in_a_container_with_its_logs(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    docker_deploy(broker, workdir, "hello", "docker", "hello")
    run = broker.create_flow_run(deployment="hello", parameters={"name": "docker"})
    agents.start("docker")
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    done = broker.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.result == "Hello, docker!"
    assert "Hello, docker!" in [line.message for line in broker.read_logs(run.id)]
    assert done.infrastructure_id.startswith("docker:")


def test_a_failing_command_is_failed_with_its_exit_code(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    broker.create_deployment(
        name="exit3",
        command=["sh", "-c", "exit 3"],
        work_queue_name="docker-fail",
        infrastructure={
            "type": "docker",
            "image": IMAGE,
            "network_mode": "host",
            "image_pull_policy": "never",
        },
    )
    run = broker.create_flow_run(deployment="exit3")
    agents.start("docker-fail")
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    failed = broker.read_flow_run(run.id)
    assert failed.state.type is StateType.FAILED
    assert "exited with status 3" in failed.state.message


@pytest.mark.parametrize(
    "image, policy, reason",
    [
        ("runq-missing:nope", "never", "is not present and image_pull_policy is 'never'"),
        ("127.0.0.1:1/runq-missing:nope", "if-not-present", "not found and could not be pulled"),
    ],
)
def test_a_missing_image_is_crashed_plainly(
    broker: Broker, agents: Agents, workdir: Path, image: str, policy: str, reason: str
) -> None:
    docker_deploy(
        broker, workdir, "missing", "docker-missing", "hello", image=image, image_pull_policy=policy
    )
    run = broker.create_flow_run(deployment="missing")
    agents.start("docker-missing")
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    crashed = broker.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.message.startswith("could not start:") and reason in crashed.state.message
    assert broker.read_work_queue("docker-missing").active_runs == 0


def test_cancel_stops_the_labelled_container(
    broker: Broker, agents: Agents, workdir: Path, docker_client
) -> None:
    docker_deploy(broker, workdir, "long", "docker-cancel", "sleepy", labels={"team": "data"})
    deployment = broker.read_deployment("long")
    run = broker.create_flow_run(
        deployment="long", parameters={"seconds": 300, "record_to": "/flows/t.jsonl"}
    )
    agents.start("docker-cancel")
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 120, "RUNNING")
    [container] = containers_of(docker_client, run.id)
    labels = container.labels
    assert labels["runq.io/deployment-id"] == str(deployment.id) and labels["team"] == "data"
    assert labels["runq.io/agent-id"] == broker.read_flow_run(run.id).agent_id
    broker.cancel_flow_run(run.id)
    wait_for(lambda: state_of(broker, run.id) is StateType.CANCELLED, 120, "CANCELLED")
    container.reload()
    assert container.status == "exited", "stopped (and kept: auto_remove is off)"
    container.remove()


def test_auto_remove_keeps_the_exit_code(
    broker: Broker, agents: Agents, workdir: Path, docker_client
) -> None:
    docker_deploy(
        broker,
        workdir,
        "gone",
        "docker-auto",
        "hello",
        auto_remove=True,
        command=["sh", "-c", "exit 7"],
    )
    run = broker.create_flow_run(deployment="gone")
    agents.start("docker-auto")
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    crashed = broker.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.message == "infrastructure exited with status 7"
    wait_for(lambda: not containers_of(docker_client, run.id), 120, "Docker to remove it")


# ---- the Redis URL from a mounted file, not the environment -----------------------------


def a_run():
    from runq.broker import FlowRun

    return FlowRun.model_validate(
        {
            "id": "0b9c7d5e-7c2f-4a57-9a6f-3d5e8b1f2a44",
            "name": "brave-otter",
            "work_queue_name": "q",
            "state": {"type": "PENDING", "name": "Pending", "timestamp": "2024-05-01T12:00:00Z"},
            "expected_start_time": "2024-05-01T12:00:00Z",
            "created": "2024-05-01T12:00:00Z",
        }
    )


def test_a_url_file_is_mounted_read_only_in_place_of_the_url() -> None:
    """What the container is created with (no engine needed): ``docker inspect`` would show
    the environment, so the URL is not in it."""
    from runq.agent.infrastructure.docker import CONTAINER_URL_FILE, container_options
    from runq.broker import DockerInfrastructure as Settings

    env = {"RUNQ_API_URL": "redis://runq-engine:s3cret@redis:6379/0", "RUNQ_AGENT_ID": "a-1"}
    settings = Settings(env={"RUNQ_API_URL": "redis://:other@x/0", "LOG_LEVEL": "debug"})
    options = container_options(a_run(), settings, env, "/etc/runq/engine-url")
    assert "RUNQ_API_URL" not in options["environment"] and "s3cret" not in repr(options)
    assert options["environment"]["RUNQ_API_URL_FILE"] == CONTAINER_URL_FILE
    assert options["environment"]["LOG_LEVEL"] == "debug"
    [mount] = options["mounts"]
    assert mount == {
        "Target": CONTAINER_URL_FILE,
        "Source": "/etc/runq/engine-url",
        "Type": "bind",
        "ReadOnly": True,
    }
    clustered = container_options(
        a_run(), Settings(), {"RUNQ_API_URL": "redis+cluster://h:7000"}, "/u"
    )
    assert clustered["environment"]["RUNQ_REDIS_CLUSTER"] == "1"
    plain = container_options(a_run(), Settings(), env)  # no file configured: as before
    assert plain["environment"]["RUNQ_API_URL"] == env["RUNQ_API_URL"] and plain["mounts"] is None


def test_a_relative_url_file_is_refused_in_one_line() -> None:
    from runq.agent.infrastructure import InfrastructureError
    from runq.agent.infrastructure.docker import container_options
    from runq.broker import DockerInfrastructure as Settings

    with pytest.raises(
        InfrastructureError, match="RUNQ_DOCKER_URL_FILE 'engine-url' must be an absolute path"
    ):
        container_options(a_run(), Settings(), {}, "engine-url")


def test_the_engine_reads_its_url_from_the_mounted_file(
    broker: Broker, agents: Agents, workdir: Path, docker_client, redis_url: str
) -> None:
    url_file = workdir / "engine-url"
    url_file.write_text(redis_url + "\n")
    url_file.chmod(0o644)  # readable by the image's non-root user
    docker_deploy(broker, workdir, "from-file", "docker-url-file", "hello")
    run = broker.create_flow_run(deployment="from-file", parameters={"name": "file"})
    agents.start("docker-url-file", env={"RUNQ_DOCKER_URL_FILE": str(url_file)})
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    assert broker.read_flow_run(run.id).state.type is StateType.COMPLETED
    [container] = containers_of(docker_client, run.id)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert "RUNQ_API_URL" not in env and env["RUNQ_API_URL_FILE"] == "/run/secrets/runq-api-url"
    [mount] = [
        m for m in container.attrs["Mounts"] if m["Destination"] == "/run/secrets/runq-api-url"
    ]
    assert mount["RW"] is False
    with contextlib.suppress(docker.errors.NotFound):  # the agent may remove it first
        container.wait(timeout=60)  # COMPLETED is written before the engine exits
        container.remove()


def test_a_missing_url_file_is_crashed_plainly(
    broker: Broker, agents: Agents, workdir: Path, docker_client
) -> None:
    docker_deploy(broker, workdir, "no-file", "docker-no-file", "hello")
    run = broker.create_flow_run(deployment="no-file")
    agents.start("docker-no-file", env={"RUNQ_DOCKER_URL_FILE": str(workdir / "missing")})
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    crashed = broker.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert (
        crashed.state.message.startswith("could not start:")
        and "does not exist" in crashed.state.message
    )
