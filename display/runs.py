"""How flow runs are shown: their deployment's name, the "Late" state, their JSON shape.

Runs still SCHEDULED more than ``RUNQ_LATE_RUNS_AFTER_SECONDS`` past their due time are
shown with the state name "Late", as Prefect shows them (a display name only: their state
type stays SCHEDULED). ``flow-run ls -o json``, ``work-queue preview -o json`` and the
UI's ``/api/`` give a run the same shape through :func:`run_json` and
:func:`preview_json`. A run waiting for a concurrency slot keeps its state name,
AwaitingConcurrencySlot, rather than "Late": its due time passed because its limit was
full, which that name says; :func:`limit_line` says where it stands in the limit's line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runq.broker import Broker, ConcurrencyLimit, FlowRun, NotFound
from runq.broker.settings import RunqSettings

#: Runs of a limit's line read to find a waiting run's place in it.
LINE_READ = 1000


def deployment_namer(broker: Broker, runs: Sequence[FlowRun]) -> Callable[[FlowRun], str]:
    """A function giving a run's deployment name (its id once the deployment is deleted)."""
    known = {str(d.id): d.name for d in broker.list_deployments()} if runs else {}

    def name_of(run: FlowRun) -> str:
        if run.deployment_id is None:
            return ""
        return known.get(str(run.deployment_id), str(run.deployment_id))

    return name_of


def run_names(broker: Broker, run_ids: Sequence[str]) -> dict[str, str]:
    """Run id -> name of each run (empty for a run deleted meanwhile): what a concurrency
    limit's holders and waiting runs are shown by."""
    found: dict[str, str] = {}
    for run_id in dict.fromkeys(run_ids):
        try:
            found[run_id] = broker.read_flow_run(run_id).name
        except NotFound:
            found[run_id] = ""
    return found


def as_shown(run: FlowRun, now: datetime, late_after: float | None = None) -> FlowRun:
    """The run with its state named "Late" when it is late (a display name only);
    ``late_after`` is the threshold when the caller read it already (default:
    :func:`late_after_seconds`)."""
    threshold = late_after_seconds() if late_after is None else late_after
    if run.awaiting_limit or not run.is_late(now, threshold):  # its limit's line says more
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


@dataclass(frozen=True)
class LimitLine:
    """Where a run waiting for a concurrency slot stands (``flow-run inspect``, the UI):
    ``limit`` is None when the limit was deleted meanwhile; ``place`` (1 = next) is None
    past the first :data:`LINE_READ` runs of the line."""

    slot: str  # the limit's name, or KEY:VALUE under a KEY:* limit
    limit: ConcurrencyLimit | None
    holders: list[str]  # run ids holding the slots of that value (the first LINE_READ)
    held: int
    place: int | None
    in_line: int

    def text(self) -> str:
        """``Waiting for concurrency limit 'w': 1/1 slots held; place 2 of 3 in line.``"""
        if self.limit is None:
            return (
                f"Waiting for concurrency limit {self.slot!r}, which no longer exists: "
                "it goes back to its work queue."
            )
        cap = self.limit.limit
        slots = f"{self.held}/{cap} slots held" if cap is not None else f"{self.held} held"
        if self.limit.rate is not None:
            slots += f", at most {self.limit.rate} starts"
        if self.place is not None:
            place = f"place {self.place} of {self.in_line} in line"
        elif self.in_line >= LINE_READ:
            place = f"past the first {LINE_READ} of {self.in_line} in line"
        else:  # read as its turn came
            place = "its turn has come: it goes back to its work queue"
        return f"Waiting for concurrency limit {self.slot!r}: {slots}; {place}."


def limit_line(broker: Broker, run: FlowRun) -> LimitLine | None:
    """The line ``run`` waits in (None for a run not waiting for a concurrency slot)."""
    name, value = run.awaiting_limit, run.awaiting_limit_value
    if not name:
        return None
    slot = f"{name[:-1]}{value}" if value else name
    try:
        detail = broker.inspect_concurrency_limit(name, max_listed=LINE_READ)
    except NotFound:
        return LimitLine(slot, None, [], 0, None, 0)
    holders = [h.run_id for h in detail.holders if h.value == value]
    line = [w for w in detail.waiting if w.value == value]
    per_value = detail.limit.per_value
    return LimitLine(
        slot=slot,
        limit=detail.limit,
        holders=holders,
        held=len(holders) if per_value else detail.limit.active,
        place=next((w.place for w in line if w.run_id == str(run.id)), None),
        in_line=len(line) if per_value else detail.limit.waiting,
    )
