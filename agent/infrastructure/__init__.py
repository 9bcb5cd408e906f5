"""Where flow runs execute: one small interface, one module per kind of infrastructure.

The agent hands an infrastructure runner a claimed run and the environment of its engine
(``runq flow-run execute RUN_ID`` with ``RUNQ_API_URL`` and the claim token); it gets back
a handle it can poll for the exit status and stop on cancellation.

The runners (``ProcessRunner``, ``DockerRunner``, ``KubernetesRunner``) are named apart
from the deployment's settings models they run (``runq.broker.ProcessInfrastructure``,
``DockerInfrastructure``, ``KubernetesInfrastructure``). What every runner shares is
defined here once: the engine's command and the labels runq puts on containers and Jobs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol

from runq.broker import Broker, Deployment, FlowRun

#: The engine's entry point, after the program that runs it.
ENGINE_ARGS = ("flow-run", "execute")
#: The console script, for images where ``runq`` is on PATH (Docker, Kubernetes).
CONSOLE_SCRIPT: tuple[str, ...] = ("runq",)

# Labels runq puts on the containers and Jobs it starts (the agent finds them by these).
LABEL_RUN = "runq.io/flow-run-id"
LABEL_DEPLOYMENT = "runq.io/deployment-id"
LABEL_AGENT = "runq.io/agent-id"
LABEL_AUTO_REMOVE = "runq.io/auto-remove"


def this_interpreter() -> tuple[str, ...]:
    """``python -m runq`` of the agent's own interpreter, so the agent's venv is used."""
    return (sys.executable, "-m", "runq")


def engine_entrypoint(program: Sequence[str] | None = None) -> list[str]:
    """The command that executes a run, without the run id: ``program`` (default the
    console script ``runq``; :func:`this_interpreter` for a local process) followed by
    ``flow-run execute``."""
    return [*(CONSOLE_SCRIPT if program is None else program), *ENGINE_ARGS]


def engine_command(
    run: FlowRun, program: Sequence[str] | None = None, command: Sequence[str] | None = None
) -> list[str]:
    """The whole command of ``run``'s engine: ``command`` when the deployment's
    infrastructure overrides it, else :func:`engine_entrypoint` of ``program``; then
    the run id."""
    return [*(command or engine_entrypoint(program)), str(run.id)]


def run_labels(run: FlowRun, agent_id: str) -> dict[str, str]:
    """runq's own labels of ``run``'s container or Job (they win over the operator's)."""
    return {
        LABEL_RUN: str(run.id),
        LABEL_DEPLOYMENT: str(run.deployment_id or ""),
        LABEL_AGENT: agent_id,
    }


class InfrastructureError(Exception):
    """The run could not be started; the message says why (it becomes the CRASHED message)."""


class Handle(Protocol):
    """A started run's infrastructure."""

    infrastructure_id: str

    def poll(self) -> int | None:
        """The exit status once it has ended, else None."""

    def stop(self, grace_seconds: float) -> int:
        """Ask it to stop, force it after ``grace_seconds``; returns the exit status."""


class Infrastructure(Protocol):
    """What the agent calls a runner through."""

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> Handle:
        """Start the engine for ``run``; raises InfrastructureError when it cannot."""


def for_deployment(deployment: Deployment | None, broker: Broker) -> Infrastructure:
    """The runner of the infrastructure a deployment asks for (process when it names none)."""
    settings = deployment.infrastructure if deployment else None
    if settings is None or settings.type == "process":
        from .process import ProcessRunner

        return ProcessRunner(broker, settings)
    if settings.type == "docker":
        from .docker import DockerRunner

        return DockerRunner(broker, settings)
    from .kubernetes import KubernetesRunner

    return KubernetesRunner(broker, settings)
