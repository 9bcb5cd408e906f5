"""The queue gauges metrics show, read from Redis at scrape time for every queue.

One ``queue_gauges.lua`` call per queue (read-only, one slot each), sent in bounded round
trips: on one server, pipelines of at most ``batch`` calls; on a Redis Cluster, where
redis-py pipelines no script, the calls are grouped by the node owning each queue's slot
and pipelined on that node's own connection. A call a node answers with a redirect (a
slot moving during resharding) is sent again through the cluster client, which follows
it. The queues' health (``readiness.py``) needs the agents registry: one read, and one
more for the live agents' records when there are some. So a scrape of N queues costs
about ``2 + N / batch`` round trips per node, never N.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from pydantic import BaseModel, Field

from .checks import ms
from .core import BrokerCore, translated_failures
from .keys import QueueKeys
from .models import Agent
from .readiness import judge
from .registry import read_live_agents
from .timeutil import ms_to_datetime

GAUGE_BATCH = 500  # script calls per pipeline: bounds a round trip's reply size


class QueueGauges(BaseModel):
    """One queue's figures as its metrics show them (the same counts as ``inspect``)."""

    name: str
    scheduled: int = Field(description="runs SCHEDULED, due or not")
    due_now: int = Field(description="SCHEDULED runs whose due time has come: the backlog")
    late: int = Field(description="SCHEDULED runs past their due time by the late threshold")
    active: int = Field(description="runs PENDING, RUNNING or CANCELLING (slots taken)")
    concurrency_limit: int | None
    is_paused: bool
    agents: int = Field(description="live agents serving the queue (as work-queue ls counts)")
    agents_at_limit: int = Field(description="of those, agents at their own --limit")
    is_healthy: bool = Field(description="the health work-queue ls and the UI show (readiness.py)")
    oldest_due_age_seconds: float = Field(description="how long the oldest due run has waited")


def decode(name: str, reply: Sequence[Any], live: Sequence[Agent], now: datetime) -> QueueGauges:
    """A queue_gauges.lua reply (see its header) as :class:`QueueGauges`; ``live``: the
    agents alive in the registry; ``now``: Redis' time."""
    scheduled, due, late, active, limit, paused, polled, oldest_ms, _ = reply
    polls = {polled[i]: ms_to_datetime(float(polled[i + 1])) for i in range(0, len(polled), 2)}
    health = judge(
        name=name,
        is_paused=int(paused) == 1,
        late_runs=int(late),
        polls=polls,
        last_polled=max(polls.values(), default=None),
        live_agents=live,
        now=now,
    )
    return QueueGauges(
        name=name,
        scheduled=int(scheduled),
        due_now=int(due),
        late=int(late),
        active=int(active),
        concurrency_limit=int(limit) if limit not in ("", None) else None,
        is_paused=int(paused) == 1,
        agents=health.agents,
        agents_at_limit=len(health.agents_at_limit),
        is_healthy=health.is_healthy,
        oldest_due_age_seconds=int(oldest_ms) / 1000,
    )


def read_queue_gauges(core: BrokerCore, *, batch: int = GAUGE_BATCH) -> list[QueueGauges]:
    """The gauges of every queue, by name (a queue deleted meanwhile is left out).

    Raises:
        BrokerUnavailable: Redis cannot be reached or refused a command.
    """
    with translated_failures(core.url):
        names = sorted(core.client.smembers(core.keys.queue_names))
        replies = (
            _replies_by_node(core, names, batch)
            if core.cluster
            else _replies(core, core.client, names, batch)
        )
        # Judged as inspect judges: against the registry's live agents (a gone agent's
        # poll lingers; a full one polls no more), at Redis' time as a script read it.
        now = next((ms_to_datetime(int(r[8])) for r in replies.values() if r), None)
        if now is None:  # no queue, or every one deleted meanwhile
            return []
        live = read_live_agents(core, now)
    return [decode(name, replies[name], live, now) for name in names if replies.get(name)]


def _call(core: BrokerCore, keys: QueueKeys, client: Any = None) -> Any:
    return core.scripts.queue_gauges(
        keys,
        agents_window_ms=ms(core.settings.agent_window_seconds),
        late_after_ms=ms(core.settings.late_after_seconds),
        client=client,
    )


def _replies(core: BrokerCore, client: Any, names: Sequence[str], batch: int) -> dict[str, Any]:
    """Pipelines of at most ``batch`` calls on ``client`` (one server, or one node); a
    call refused there (a redirect) goes again through the Broker's own client."""
    replies: dict[str, Any] = {}
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        pipe = client.pipeline(transaction=False)
        for name in chunk:
            _call(core, core.keys.queue(name), pipe)
        for name, reply in zip(chunk, pipe.execute(raise_on_error=False)):
            if isinstance(reply, redis.ResponseError):
                reply = _call(core, core.keys.queue(name))
            replies[name] = reply
    return replies


def _replies_by_node(core: BrokerCore, names: Sequence[str], batch: int) -> dict[str, Any]:
    """On a cluster: the queues grouped by the node owning their slot, each group
    pipelined on that node's connection."""
    cluster: redis.RedisCluster = core.client
    groups: dict[str, tuple[Any, list[str]]] = {}
    for name in names:
        node = cluster.get_node_from_key(core.keys.queue(name).config)
        groups.setdefault(node.name, (node, []))[1].append(name)
    replies: dict[str, Any] = {}
    for node, members in groups.values():
        replies.update(_replies(core, cluster.get_redis_connection(node), members, batch))
    return replies
