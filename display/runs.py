"""How flow runs are shown: their deployment's name, the "Late" state, their JSON shape.

Runs still SCHEDULED more than ``RUNQ_LATE_RUNS_AFTER_SECONDS`` past their due time are
shown with the state name "Late", as Prefect shows them (a display name only: their state
type stays SCHEDULED). ``flow-run ls -o json``, ``work-queue preview -o json`` and the
UI's ``/api/`` give a run the same shape through :func:`run_json` and
:func:`preview_json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from runq.broker import Broker, FlowRun
from runq.broker.settings import RunqSettings


def deployment_namer(broker: Broker, runs: Sequence[FlowRun]) -> Callable[[FlowRun], str]:
    """A function giving a run's deployment name (its id once the deployment is deleted)."""
    known = {str(d.id): d.name for d in broker.list_deployments()} if runs else {}

    def name_of(run: FlowRun) -> str:
        if run.deployment_id is None:
            return ""
        return known.get(str(run.deployment_id), str(run.deployment_id))

    return name_of


def as_shown(run: FlowRun, now: datetime, late_after: float | None = None) -> FlowRun:
    """The run with its state named "Late" when it is late (a display name only);
    ``late_after`` is the threshold when the caller read it already (default:
    :func:`late_after_seconds`)."""
    threshold = late_after_seconds() if late_after is None else late_after
    if not run.is_late(now, threshold):
        return run
    return run.model_copy(update={"state": run.state.model_copy(update={"name": "Late"})})


def run_json(run: FlowRun, now: datetime, late_after: float | None = None) -> dict[str, Any]:
    """A run as ``flow-run ls -o json`` prints it: its fields, a late run's state "Late"."""
    data: dict[str, Any] = as_shown(run, now, late_after).model_dump(mode="json")
    return data


def preview_json(run: FlowRun, now: datetime, late_after: float | None = None) -> dict[str, Any]:
    """A SCHEDULED run as ``work-queue preview -o json`` prints it: :func:`run_json` and
    ``is_late``."""
    threshold = late_after_seconds() if late_after is None else late_after
    return {**run_json(run, now, threshold), "is_late": run.is_late(now, threshold)}


def late_after_seconds() -> float:
    """``RUNQ_LATE_RUNS_AFTER_SECONDS``, validated: how overdue a run must be to be late."""
    return RunqSettings.from_env().late_runs_after_seconds
