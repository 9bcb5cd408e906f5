"""Where flow runs execute: one small interface, one module per kind of infrastructure.

The agent hands an infrastructure a claimed run and the environment of its engine
(``runq flow-run execute RUN_ID`` with ``RUNQ_API_URL`` and the claim token); it gets back
a handle it can poll for the exit status and stop on cancellation.
"""

from __future__ import annotations

from typing import Protocol

from runq.broker import Broker, Deployment, FlowRun


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
    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> Handle:
        """Start the engine for ``run``; raises InfrastructureError when it cannot."""


def for_deployment(deployment: Deployment | None, broker: Broker) -> Infrastructure:
    """The infrastructure a deployment asks for (process when it names none)."""
    settings = deployment.infrastructure if deployment else None
    if settings is None or settings.type == "process":
        from .process import ProcessInfrastructure

        return ProcessInfrastructure(broker, settings)
    if settings.type == "docker":
        from .docker import DockerInfrastructure

        return DockerInfrastructure(broker, settings)
    from .kubernetes import KubernetesInfrastructure

    return KubernetesInfrastructure(broker, settings)
