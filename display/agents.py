"""An agent's status as ``runq agent ls`` and the UI's Agents page show it."""

from __future__ import annotations

from datetime import datetime

from runq.broker import Agent
from runq.broker.registry import AGENT_LIVE_SECONDS

#: An agent whose last heartbeat is older than this is shown offline; the same bound
#: decides which agents a work queue counts (``work-queue ls``), so the two agree.
ONLINE_SECONDS = AGENT_LIVE_SECONDS


def status_of(item: Agent, now: datetime) -> str:
    """``online`` while the agent heartbeats, ``offline`` after a minute of silence."""
    silent = (now - item.last_heartbeat).total_seconds()
    return "online" if silent <= ONLINE_SECONDS else "offline"


def status_text(item: Agent, now: datetime) -> str:
    """:func:`status_of`, and for an online agent holding as many runs as its own
    ``--limit``: ``online, at its limit (3)`` (it claims nothing until one ends)."""
    status = status_of(item, now)
    if status == "online" and item.at_limit is not None:
        status += f", at its limit ({item.at_limit})"
    return status
