"""Run the engine in a Docker container (docker SDK).

The container runs ``runq flow-run execute RUN_ID`` with the engine's environment and
runq's labels (flow run, deployment, agent). ``auto_remove`` is done by runq, not by
Docker: the agent reads the exit status and the last log lines first, then removes the
container, so the status is never lost to a removal. Containers left behind by an agent
that died are removed by label at the next submission.

The Redis URL is in the container's environment, which ``docker inspect`` shows to anyone
who may talk to the Docker engine. With ``RUNQ_DOCKER_URL_FILE`` set (in the agent's
environment: the path, on the Docker host, of a file holding the URL the engines use),
the file is bind-mounted read-only at ``/run/secrets/runq-api-url`` and the container gets
``RUNQ_API_URL_FILE`` pointing at it instead of ``RUNQ_API_URL``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount
from requests.exceptions import RequestException

from runq.broker import Broker, Deployment, DockerInfrastructure, FlowRun
from runq.broker.connection import is_cluster_url
from runq.broker.settings import (
    AGENT_ID_ENV,
    API_URL_ENV,
    API_URL_FILE_ENV,
    DOCKER_URL_FILE_ENV,
    REDIS_CLUSTER_ENV,
    RunqSettings,
)
from runq.engine.line_sink import LineSink

from . import LABEL_AUTO_REMOVE, InfrastructureError, engine_entrypoint, run_labels

#: Where the file named by ``RUNQ_DOCKER_URL_FILE`` is mounted in the container.
CONTAINER_URL_FILE = "/run/secrets/runq-api-url"


#: Seconds one Docker API call may take (docker-py's default is 60): creating a container
#: copies the image's whole root on a busy engine with the vfs storage driver, and a
#: slow answer is not a failed start.
API_TIMEOUT_SECONDS = 300


def connect(settings: DockerInfrastructure) -> docker.DockerClient:
    """The Docker engine of the settings (``docker_url``), else the environment's."""
    try:
        if settings.docker_url:
            return docker.DockerClient(base_url=settings.docker_url, timeout=API_TIMEOUT_SECONDS)
        return docker.from_env(timeout=API_TIMEOUT_SECONDS)
    except DockerException as error:
        raise InfrastructureError(f"cannot reach the Docker engine: {error}") from None


def ensure_image(client: docker.DockerClient, image: str, policy: str) -> None:
    """Pull according to ``image_pull_policy``; a missing image is said plainly."""
    if policy != "always":
        try:
            client.images.get(image)
            return
        except ImageNotFound:
            if policy == "never":
                raise InfrastructureError(
                    f"image {image!r} is not present and image_pull_policy is 'never'"
                ) from None
    try:
        client.images.pull(image)
    except (APIError, DockerException) as error:
        raise InfrastructureError(
            f"image {image!r} not found and could not be pulled: {error}"
        ) from None


LEFTOVER_SWEEP_SECONDS = 60.0
_last_leftover_sweep = 0.0


def remove_leftovers_now_and_then(client: docker.DockerClient) -> None:
    """Sweep leftovers at most once a minute: a container listing is not free, and
    submissions come in bursts."""
    global _last_leftover_sweep
    if time.monotonic() - _last_leftover_sweep >= LEFTOVER_SWEEP_SECONDS:
        _last_leftover_sweep = time.monotonic()
        remove_leftovers(client)


def remove_leftovers(client: docker.DockerClient) -> int:
    """Remove exited auto-remove containers whose agent died before removing them."""
    removed = 0
    for container in client.containers.list(
        all=True, filters={"label": f"{LABEL_AUTO_REMOVE}=true", "status": "exited"}
    ):
        try:
            container.remove()
            removed += 1
        except (NotFound, APIError):
            pass  # another agent removed it, or Docker is removing it (auto_remove)
    return removed


class LogPump(threading.Thread):
    """Echoes the container's output (attached before it started) to the agent's output
    (``stream_output``). The engine in the container stores it in the run's log itself,
    so the log keeps flowing while this agent restarts."""

    def __init__(self, broker: Broker, run: FlowRun, output: Any, echo: bool) -> None:
        super().__init__(name=f"runq-docker-logs-{run.id}", daemon=True)
        self.output = output
        self.sink = LineSink(broker, run, echo, store=False)

    def run(self) -> None:
        try:
            for out, err in self.output:
                for stream, chunk in (("stdout", out), ("stderr", err)):
                    if chunk:
                        self.sink.feed(stream, chunk)
        except (APIError, DockerException):
            pass  # the container is gone: what was read is stored
        self.sink.close()


class ContainerHandle:
    """A started container, watched by a thread that waits for it to stop."""

    def __init__(self, container: Any, auto_remove: bool, docker_url: str | None) -> None:
        self.container = container
        self.auto_remove = auto_remove
        self.infrastructure_id = f"{docker_url or 'docker'}:{container.id[:12]}"
        self.exit_code: int | None = None
        self.pump: LogPump | None = None
        self._waiter = threading.Thread(target=self._wait, name="runq-docker-wait", daemon=True)

    def _wait(self) -> None:
        """``not-running`` answers at once for a container that already exited."""
        try:
            self.exit_code = int(self.container.wait(condition="not-running")["StatusCode"])
        except Exception:  # the engine restarted, the connection broke: poll() asks again
            self.exit_code = None

    def _status_now(self) -> int | None:
        """The exit status from an inspection, when the wait could not give it."""
        try:
            self.container.reload()
        except NotFound:
            return -1
        except Exception:  # the engine is unreachable for now
            return None
        state = self.container.attrs.get("State", {})
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def poll(self) -> int | None:
        if self._waiter.is_alive():
            return None
        if self.exit_code is None:
            self.exit_code = self._status_now()
            if self.exit_code is None:
                return None
        if self.pump is not None:
            self.pump.join(timeout=5)
        if self.auto_remove:
            try:
                self.container.remove(force=True)
            except Exception:  # already gone, or the engine is away: leftovers go later
                pass
        return self.exit_code

    def stop(self, grace_seconds: float) -> int:
        """``docker stop``: SIGTERM, SIGKILL after the grace period; returns the status."""
        try:
            self.container.stop(timeout=max(0, int(grace_seconds)))
        except Exception:  # already gone, or the engine is away
            pass
        self._waiter.join(timeout=grace_seconds + 30)
        return self.exit_code if self.exit_code is not None else -1


def container_options(
    run: FlowRun, settings: DockerInfrastructure, env: dict[str, str], url_file: str | None = None
) -> dict[str, Any]:
    """The arguments of ``containers.create`` (after the image) for ``run``.

    ``url_file``: the path on the Docker host of a file holding the Redis URL; it is then
    mounted read-only and named by ``RUNQ_API_URL_FILE``, and the URL is left out of the
    environment (which ``docker inspect`` shows).

    Raises:
        InfrastructureError: ``url_file`` is not an absolute path.
    """
    labels = {
        **settings.labels,
        **run_labels(run, env.get(AGENT_ID_ENV, "")),
        LABEL_AUTO_REMOVE: "true" if settings.auto_remove else "false",
    }
    environment = {**settings.env, **env}
    mounts = None
    if url_file:
        if not os.path.isabs(url_file):
            raise InfrastructureError(
                f"{DOCKER_URL_FILE_ENV} {url_file!r} must be an absolute path on the Docker host"
            )
        url = environment.pop(API_URL_ENV, "")
        if is_cluster_url(url):
            environment.setdefault(REDIS_CLUSTER_ENV, "1")  # the file's URL may be redis://
        environment[API_URL_FILE_ENV] = CONTAINER_URL_FILE
        # A Mount, not a volume string: a missing source is an error, never an empty
        # directory Docker would create in its place.
        mounts = [Mount(target=CONTAINER_URL_FILE, source=url_file, type="bind", read_only=True)]
    return {
        "entrypoint": list(settings.command or engine_entrypoint()),
        "command": [str(run.id)],
        "environment": environment,
        "labels": labels,
        "network": settings.network,
        "network_mode": settings.network_mode,
        "volumes": settings.volumes or None,
        "mounts": mounts,
        "mem_limit": settings.mem_limit,
        "detach": True,
    }


class DockerRunner:
    """Creates one container per run from the deployment's :class:`DockerInfrastructure`."""

    def __init__(self, broker: Broker, settings: DockerInfrastructure | None = None) -> None:
        self.broker = broker
        self.settings = settings or DockerInfrastructure()

    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> ContainerHandle:
        settings = self.settings
        options = container_options(run, settings, env, RunqSettings.from_env().docker_url_file)
        client = connect(settings)
        try:
            remove_leftovers_now_and_then(client)
            ensure_image(client, settings.image, settings.image_pull_policy)
        except (APIError, DockerException, RequestException) as error:
            raise InfrastructureError(f"the Docker engine failed: {error}") from None
        container = None
        try:
            container = client.containers.create(settings.image, **options)
            # Attached before it starts: a container that exits at once still has all
            # its output read.
            output = container.attach(stream=True, logs=True, demux=True)
            container.start()
        except (APIError, DockerException, RequestException) as error:
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception:
                    pass
            raise InfrastructureError(
                f"cannot start a container of {settings.image!r}: {error}"
            ) from None
        handle = ContainerHandle(container, settings.auto_remove, settings.docker_url)
        handle._waiter.start()
        handle.pump = LogPump(self.broker, run, output, settings.stream_output)
        handle.pump.start()
        return handle
