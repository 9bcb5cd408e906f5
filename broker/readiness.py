"""A work queue's health: the one judgement the CLI, the UI, the JSON API and the metrics show.

A queue is *served* by the live agents (registry heartbeat at most ``AGENT_LIVE_SECONDS``
old) that polled it within the agents window, and by live agents at their own
``--limit`` that name it among their queues: a full agent claims nothing, so its polls
stop, yet it takes the queue's runs again as soon as one of its own ends. The queue is
**healthy** (the UI's "Ready") when a serving agent with room polled it within
``HEALTHY_POLL_SECONDS`` (Prefect's 60 s) or every serving agent is at its limit, and
none of its runs is late; a paused queue's status is "paused" whatever else holds.

:func:`judge` is pure: it reads nothing, so two callers given the same facts never
disagree. The facts come from one queue read (its counters and each agent's last poll,
``queue_read.lua`` or ``queue_gauges.lua``) and one read of the registry
(:meth:`AgentRegistry.live_agents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .models import Agent, WorkQueue

__all__ = [
    "HEALTHY_POLL_SECONDS",
    "AgentAtLimit",
    "Problem",
    "QueueHealth",
    "judge",
    "judge_queue",
    "span",
]

#: A queue with room in a live agent is healthy while one polled it this recently.
HEALTHY_POLL_SECONDS = 60.0

Status = Literal["healthy", "unhealthy", "paused"]
#: The UI's words for the same statuses.
LABELS: dict[str, str] = {"healthy": "Ready", "unhealthy": "Not ready", "paused": "Paused"}
NO_LIVE_AGENT = "no live agent polls it"
NEVER_POLLED = "never polled by an agent"


class Problem(BaseModel):
    """Why a queue is unhealthy: a stable ``kind`` for scripts, ``text`` for people."""

    kind: Literal["no_agent", "agents_silent", "late_runs"]
    text: str


class AgentAtLimit(BaseModel):
    """A live agent serving the queue that holds as many runs as its own --limit."""

    id: str
    name: str
    limit: int


class QueueHealth(BaseModel):
    """The judgement of one queue at one instant (Redis' clock)."""

    status: Status
    is_healthy: bool = Field(description="served by a live agent and no run late (paused or not)")
    late_runs: int
    agents: int = Field(description="live agents serving the queue, at their limit or not")
    agents_at_limit: list[AgentAtLimit] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    waits_for_agents: bool = Field(
        False,
        description="every serving agent is at its own limit: due runs wait for one of "
        "their runs to end",
    )

    @property
    def label(self) -> str:
        """``Ready``, ``Not ready`` or ``Paused``: the UI's word for :attr:`status`."""
        return LABELS[self.status]

    def problem_texts(self) -> list[str]:
        return [problem.text for problem in self.problems]


def span(seconds: float) -> str:
    """``45 s``, ``4 min``, ``2 h 5 min``, ``3 days``: how long, for people."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def judge(
    *,
    name: str,
    is_paused: bool,
    late_runs: int,
    polls: Mapping[str, datetime],
    last_polled: datetime | None,
    live_agents: Sequence[Agent],
    now: datetime,
) -> QueueHealth:
    """The health of the queue ``name``.

    Args:
        name: the queue's name (agents at their limit name it among their queues).
        is_paused: the queue's pause flag.
        late_runs: its SCHEDULED runs past their due time by the late threshold.
        polls: agent id -> last poll of this queue, for the agents within the window.
        last_polled: the queue's latest poll by any agent, live or gone (for the words).
        live_agents: the registry's live agents (:meth:`AgentRegistry.live_agents`).
        now: Redis' time.
    """
    live = {agent.id: agent for agent in live_agents}
    polled = {agent_id: at for agent_id, at in polls.items() if agent_id in live}
    full = [
        AgentAtLimit(id=agent.id, name=agent.name, limit=agent.at_limit)
        for agent in live_agents
        if agent.at_limit is not None and (agent.id in polled or name in agent.work_queues)
    ]
    full_ids = {agent.id for agent in full}
    with_room = {agent_id: at for agent_id, at in polled.items() if agent_id not in full_ids}
    fresh = [at for at in with_room.values() if (now - at).total_seconds() <= HEALTHY_POLL_SECONDS]
    problems: list[Problem] = []
    if not polled and not full:
        text = NEVER_POLLED if last_polled is None else NO_LIVE_AGENT
        problems.append(Problem(kind="no_agent", text=text))
    elif not fresh and not full:
        ago = span((now - max(with_room.values())).total_seconds())
        problems.append(Problem(kind="agents_silent", text=f"last polled {ago} ago"))
    if late_runs:
        plural = "" if late_runs == 1 else "s"
        problems.append(Problem(kind="late_runs", text=f"{late_runs} late run{plural}"))
    status: Status = "paused" if is_paused else "unhealthy" if problems else "healthy"
    return QueueHealth(
        status=status,
        is_healthy=not problems,
        late_runs=late_runs,
        agents=len(set(polled) | full_ids),
        agents_at_limit=full,
        problems=problems,
        waits_for_agents=bool(full) and not fresh,
    )


def judge_queue(queue: WorkQueue, live_agents: Sequence[Agent], now: datetime) -> QueueHealth:
    """:func:`judge` over a queue as ``read_work_queue`` / ``list_work_queues`` return it."""
    return judge(
        name=queue.name,
        is_paused=queue.is_paused,
        late_runs=queue.late_runs,
        polls={agent.id: agent.last_polled for agent in queue.agents},
        last_polled=queue.last_polled,
        live_agents=live_agents,
        now=now,
    )
