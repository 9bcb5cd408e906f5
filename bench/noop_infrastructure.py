"""What the agent benchmarks share: an in-process infrastructure and a percentile.

The infrastructure completes each run through the broker as a real engine would, so a
benchmark measures the agent and Redis, not a process start.
"""

from __future__ import annotations

from runq.broker import Broker, Deployment, FlowRun, StateType


class DoneHandle:
    """The handle of a run that already completed."""

    infrastructure_id = "noop"

    def poll(self) -> int:
        return 0

    def stop(self, grace_seconds: float) -> int:
        return 0


class NoopInfrastructure:
    """Completes each run in-process as its engine would, through the broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> DoneHandle:
        token = env["RUNQ_FLOW_RUN_TOKEN"]
        self.broker.set_state(run.id, StateType.RUNNING, token=token)
        self.broker.set_state(run.id, StateType.COMPLETED, token=token)
        return DoneHandle()


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` of the sorted samples (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
