"""The docker-compose stack: Redis, scheduler and agent from local images, end to end.

The images come from ``RUNQ_TEST_IMAGE`` and ``RUNQ_TEST_REDIS_IMAGE`` (defaults
``runq:latest`` and ``runq-redis:7``, built by deploy/build-local-images.sh as CI does),
handed to docker-compose.yml through its RUNQ_IMAGE / REDIS_IMAGE variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("RUNQ_TEST_IMAGE", "runq:latest")
REDIS_IMAGE = os.environ.get("RUNQ_TEST_REDIS_IMAGE", "runq-redis:7")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compose() -> list[str]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    try:
        client = docker.from_env()
        client.ping()
        for image in (IMAGE, REDIS_IMAGE):
            client.images.get(image)
    except Exception as error:  # no engine or no image here: say which
        pytest.skip(f"the compose stack needs a Docker engine and local images: {error}")
    return [
        "docker-compose",
        "--project-directory",
        str(ROOT),
        "-f",
        str(ROOT / "docker-compose.yml"),
    ]


@pytest.fixture
def stack(compose: list[str]):
    env = {
        **os.environ,
        "RUNQ_IMAGE": IMAGE,
        "REDIS_IMAGE": REDIS_IMAGE,
        "COMPOSE_PROJECT_NAME": "runqtest",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose, *args], env=env, capture_output=True, text=True, check=check, timeout=300
        )

    run("up", "-d", "--no-build")
    try:
        yield run
    finally:
        run("down", "-v", check=False)


def runq(stack, *args: str) -> subprocess.CompletedProcess:
    return stack("exec", "-T", "agent", "runq", *args, check=False)


def test_the_stack_runs_a_scheduled_deployment_to_completed(stack) -> None:
    deadline = time.monotonic() + 120
    while (
        created := runq(
            stack,
            "deployment",
            "create",
            "hello",
            "--entrypoint",
            "examples/flows.py:hello",
            "-q",
            "default",
            "--interval",
            "2",
        )
    ).returncode:
        assert time.monotonic() < deadline, f"the stack never answered: {created.stderr}"
        time.sleep(1)
    deadline = time.monotonic() + 180
    while True:
        listed = runq(stack, "flow-run", "ls", "--state", "COMPLETED", "-o", "json")
        done = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
        if done:
            break
        assert time.monotonic() < deadline, "no run of the schedule completed"
        time.sleep(1)
    assert done[0]["state"]["type"] == "COMPLETED"
    assert "auto-scheduled" in done[0]["tags"]
    logs = runq(stack, "flow-run", "logs", done[0]["id"])
    assert "Hello, world!" in logs.stdout
    # the ui service serves the same Redis (asked from inside its container)
    # (off loopback in its container, reads need the token: the compose file's default)
    fetch = (
        "import urllib.request as u; print(u.urlopen(u.Request('http://127.0.0.1:4200/api/work-queues', "
        "headers={'Authorization': 'Bearer runq-local-development-token'})).read().decode())"
    )
    api = stack("exec", "-T", "ui", "python", "-c", fetch, check=False)
    assert api.returncode == 0 and '"name":"default"' in api.stdout, api.stderr
