"""What the pages and the JSON API show, gathered from the Broker once per request.

Both the HTML pages and ``/api/`` read through these functions, so a page and its JSON
twin can never disagree, and the JSON keeps the CLI's ``-o json`` field names (the
models' fields plus what ``runq work-queue ls -o json`` adds: ``late_runs``,
``is_healthy``, ``status``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from runq.broker import (
    Agent,
    Broker,
    ConcurrencyLimit,
    Deployment,
    FlowRun,
    NotFound,
    StateType,
    WorkQueue,
)
from runq.broker.readiness import QueueHealth
from runq.display.agents import status_of as agent_status
from runq.display.queues import queue_health, queue_json
from runq.display.runs import preview_json, run_json, run_names
from runq.display.schedules import describe_schedule
from runq.display.time_text import seconds_text

#: Runs a listing page shows at once.
PAGE_SIZE = 50
#: Queues the Work Queues page shows at once.
QUEUES_PER_PAGE = 50
#: A deployment's recent runs shown on the deployments page.
RECENT_PER_DEPLOYMENT = 5
#: State names offered beside the types in the runs filter (the Broker indexes them).
STATE_NAMES = ("Late", "AwaitingRetry", "AwaitingConcurrencySlot")


def queue_row(
    broker: Broker, queue: WorkQueue, now: datetime, health: QueueHealth | None = None
) -> dict[str, Any]:
    """One queue as ``work-queue ls -o json`` prints it (with ``problems`` in words),
    plus ``ui_status``: the same judgement (broker/readiness.py) in the page's words,
    Ready (healthy), Not ready or Paused."""
    health = health or queue_health(broker, queue, now)
    data = queue_json(queue, health)
    data["ui_status"] = health.label
    return data


def queues(broker: Broker, prefix: str | None) -> list[dict[str, Any]]:
    now = broker.server_time()
    found = broker.list_work_queues(prefix or None)
    return [queue_row(broker, q, now, h) for q, h in zip(found, broker.work_queue_health(found))]


def queue_rows(broker: Broker, names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of these queues, in this order (a queue deleted meanwhile is left out)."""
    now = broker.server_time()
    found = []
    for name in names:
        try:
            found.append(broker.read_work_queue(name))
        except NotFound:
            continue
    return [queue_row(broker, q, now, h) for q, h in zip(found, broker.work_queue_health(found))]


def queues_page(broker: Broker, prefix: str, page: str) -> dict[str, Any]:
    """Page ``page`` (1-based; past the end: the last) of the queues by name: the names
    are one read, and only the page's queues are read in full, so a page costs the same
    with 20 queues or 20,000."""
    names = broker.work_queue_names([prefix] if prefix else ())
    pages = max(1, -(-len(names) // QUEUES_PER_PAGE))
    number = min(max(int(page), 1), pages) if page.isdigit() and len(page) < 10 else 1
    start = (number - 1) * QUEUES_PER_PAGE
    shown = names[start : start + QUEUES_PER_PAGE]
    return {
        "queues": queue_rows(broker, shown),
        "total": len(names),
        "page": number,
        "pages": pages,
        "first_shown": start + 1,
        "last_shown": start + len(shown),
    }


def shown_runs(broker: Broker, runs: Sequence[FlowRun]) -> list[dict[str, Any]]:
    """Runs as ``flow-run ls -o json`` prints them (the threshold read once per request)."""
    now, late_after = broker.server_time(), broker.settings.late_after_seconds
    return [run_json(run, now, late_after) for run in runs]


def list_runs(
    broker: Broker,
    *,
    queue: str | None = None,
    deployment: str | None = None,
    flow: str | None = None,
    state: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
) -> list[FlowRun]:
    """Runs newest first through the Broker's listing indexes (a page costs what it
    shows, never the history). ``state`` is a state type (``FAILED``) or name
    (``Late``); ``before`` a run id: the page of runs created before it."""
    return broker.list_flow_runs(
        queue or None,
        states=[state] if state else None,
        deployment_id=str(broker.read_deployment(deployment).id) if deployment else None,
        flow_name=flow or None,
        before=before or None,
        limit=limit,
    )


def run_detail(broker: Broker, run_id: str) -> dict[str, Any]:
    """One run as ``flow-run inspect -o json`` prints it, plus why it waits."""
    from .waiting import reasons

    run = broker.read_flow_run(run_id)
    now = broker.server_time()
    data = run_json(run, now, broker.settings.late_after_seconds)
    data.setdefault("state_history", [])
    data["waiting"] = [reason.model_dump() for reason in reasons(broker, run, now)]
    return data


def deployment_row(broker: Broker, item: Deployment) -> dict[str, Any]:
    """A deployment as ``deployment ls -o json`` prints it, with its schedule in words,
    its next scheduled run and its most recent runs."""
    data = item.model_dump(mode="json")
    data["schedule_text"] = describe_schedule(item)
    data["controls_text"] = controls_text(item)
    upcoming = broker.list_flow_runs(
        deployment_id=str(item.id), states=[StateType.SCHEDULED], limit=100
    )
    data["next_run_time"] = (
        min(run.expected_start_time for run in upcoming).isoformat() if upcoming else None
    )
    recent = broker.list_flow_runs(deployment_id=str(item.id), limit=RECENT_PER_DEPLOYMENT)
    data["recent_runs"] = shown_runs(broker, recent)
    return data


def controls_text(item: Deployment) -> str:
    """Its own concurrency limit (with the collision strategy) and its timeout, in words."""
    parts = []
    if item.concurrency_limit is not None:
        parts.append(f"at most {item.concurrency_limit} in flight ({item.collision_strategy})")
    if item.timeout_seconds is not None:
        parts.append(f"timeout {seconds_text(item.timeout_seconds)}")
    return "; ".join(parts)


def deployments(broker: Broker) -> list[dict[str, Any]]:
    return [deployment_row(broker, item) for item in broker.list_deployments()]


def agent_rows(broker: Broker, agents: Sequence[Agent]) -> list[dict[str, Any]]:
    """Agents as ``agent ls -o json`` prints them, plus the runs each holds."""
    now = broker.server_time()
    holding: dict[str, list[dict[str, Any]]] = {}
    for name in {queue for item in agents for queue in item.work_queues}:
        # a queue deleted since its agent registered holds no runs: read as none
        for run in broker.in_flight_runs(name):
            if run.agent_id:
                holding.setdefault(run.agent_id, []).append(
                    {"id": str(run.id), "name": run.name, "state": run.state.name}
                )
    return [
        {
            **item.model_dump(mode="json"),
            "status": agent_status(item, now),
            "runs_in_flight": holding.get(item.id, []),
        }
        for item in agents
    ]


def queue_page(broker: Broker, name_or_id: str) -> dict[str, Any]:
    """Everything the page of one queue shows: settings, counters, upcoming runs (what
    ``preview`` shows, late ones marked), runs in flight, recent runs, its agents."""
    queue = broker.read_work_queue(name_or_id)
    now = broker.server_time()
    return {
        "queue": queue_row(broker, queue, now),
        "upcoming": queue_preview(broker, queue.name, 24)[:PAGE_SIZE],
        "in_flight": shown_runs(broker, broker.in_flight_runs(queue.name)),
        "recent": shown_runs(broker, broker.list_flow_runs(queue.name, limit=20)),
    }


def queue_preview(broker: Broker, name: str, hours: float) -> list[dict[str, Any]]:
    """What ``work-queue preview -o json`` prints: SCHEDULED runs due within ``hours``,
    earliest first, each with ``is_late``."""
    now = broker.server_time()
    threshold = broker.settings.late_after_seconds
    return [preview_json(run, now, threshold) for run in broker.preview(name, hours=hours)]


def limit_row(limit: ConcurrencyLimit) -> dict[str, Any]:
    """A concurrency limit as ``concurrency-limit ls -o json`` prints it, plus its rate
    as typed (``rate_text``: ``10/m``) and whether it caps each value of ``KEY:*`` tags."""
    data: dict[str, Any] = limit.model_dump(mode="json")
    data["rate_text"] = None if limit.rate is None else str(limit.rate)
    data["per_value"] = limit.per_value
    return data


def limits(broker: Broker) -> list[dict[str, Any]]:
    return [limit_row(item) for item in broker.list_concurrency_limits()]


def limit_detail(broker: Broker, name: str) -> dict[str, Any]:
    """What ``concurrency-limit inspect -o json`` prints: the limit, the runs holding its
    slots and the runs waiting, in the order they start, each with its ``run_name``."""
    detail = broker.inspect_concurrency_limit(name)
    data: dict[str, Any] = detail.model_dump(mode="json")
    data["limit"] = limit_row(detail.limit)
    entries = [*data["holders"], *data["waiting"]]
    names = run_names(broker, [entry["run_id"] for entry in entries])
    for entry in entries:
        entry["run_name"] = names.get(entry["run_id"], "")
    return data
