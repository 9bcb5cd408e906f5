"""How flow runs are shown: their deployment's name, the "Late" state, queue health."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Sequence

from runq.broker import Broker, FlowRun
from runq.broker.readiness import HEALTHY_POLL_SECONDS  # queue health: broker/readiness.py
from runq.broker.settings import RunqSettings

__all__ = ["HEALTHY_POLL_SECONDS", "as_shown", "deployment_namer", "late_after_seconds"]


def deployment_namer(broker: Broker, runs: Sequence[FlowRun]) -> Callable[[FlowRun], str]:
    """A function giving a run's deployment name (its id once the deployment is deleted)."""
    known = {str(d.id): d.name for d in broker.list_deployments()} if runs else {}

    def name_of(run: FlowRun) -> str:
        if run.deployment_id is None:
            return ""
        return known.get(str(run.deployment_id), str(run.deployment_id))

    return name_of


def as_shown(run: FlowRun, now: datetime) -> FlowRun:
    """The run with its state named "Late" when it is late (a display name only)."""
    if not run.is_late(now, late_after_seconds()):
        return run
    return run.model_copy(update={"state": run.state.model_copy(update={"name": "Late"})})


def late_after_seconds() -> float:
    """``RUNQ_LATE_RUNS_AFTER_SECONDS``, validated: how overdue a run must be to be late."""
    return RunqSettings.from_env().late_runs_after_seconds
