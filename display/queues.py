"""A work queue as every view shows it: its health, its status word, its JSON shape.

The judgement itself is the broker's (``broker/readiness.py``): served by a live agent
that polled it within 60 s or is at its own limit, no late runs. ``work-queue ls`` and
``inspect``, their ``-o json``, and the UI's pages and ``/api/`` all show it from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runq.broker import Broker, WorkQueue
from runq.broker.readiness import QueueHealth


def queue_health(broker: Broker, queue: WorkQueue, now: datetime | None = None) -> QueueHealth:
    """The queue's health as every runq view judges it (``broker/readiness.py``).

    ``now`` is accepted for the callers that read Redis' clock already; the judgement
    reads it again with the agents registry, so both come from one instant.
    """
    return broker.work_queue_health([queue])[0]


def status_of(queue: WorkQueue, health: QueueHealth) -> str:
    """The one-word status of ``ls``: paused wins over health."""
    return health.status


def queue_json(queue: WorkQueue, health: QueueHealth) -> dict[str, Any]:
    """The queue's model fields plus its late-run count, health, status, the problems
    in words, how many live agents serve it (the Agents column of ``ls``) and those of
    them at their own limit."""
    data = queue.model_dump(mode="json")
    data.update(
        late_runs=health.late_runs,
        is_healthy=health.is_healthy,
        status=health.status,
        problems=health.problem_texts(),
        agents_serving=health.agents,
        agents_at_limit=[agent.model_dump() for agent in health.agents_at_limit],
    )
    return data


def busy_note(health: QueueHealth) -> str:
    """``agent a-1 at its limit (3)``: why a healthy queue's runs may wait."""
    return ", ".join(f"agent {a.name} at its limit ({a.limit})" for a in health.agents_at_limit)
