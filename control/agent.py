"""``runq agent ...``: start an agent, and see the agents registered on this Redis."""

from __future__ import annotations

from datetime import datetime

import click

from runq.broker import Agent, Broker
from runq.broker.registry import AGENT_LIVE_SECONDS

from .agent_start import start
from .common import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    relative,
    wants_json,
    with_broker,
)

#: An agent whose last heartbeat is older than this is shown offline; the same bound
#: decides which agents a work queue counts (``work-queue ls``), so the two agree.
ONLINE_SECONDS = AGENT_LIVE_SECONDS


@click.group("agent")
def agent() -> None:
    """Start agents, which pull flow runs from work queues, and see them.

    \b
    Examples:
        runq agent start -q 'my-queue'
        runq agent ls
    """


agent.add_command(start)


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


@agent.command("ls")
@output_option
@with_broker
def ls(broker: Broker, output: str) -> None:
    """List registered agents, most recent heartbeat first.

    An agent is online when it sent a heartbeat in the last 60 seconds (only those
    count as a work queue's agents in `runq work-queue ls`); agents silent for a day
    drop off the list. An agent holding as many runs as its own --limit shows "at its
    limit" (JSON: at_limit): it claims again when one of its runs ends.

    \b
    Examples:
        runq agent ls
        runq agent ls -o json
    """
    agents = broker.list_agents()
    now = broker.server_time()
    if wants_json(output):
        print_json([{**a.model_dump(mode="json"), "status": status_of(a, now)} for a in agents])
        return
    table = new_table("Agents", ["ID", "Name", "Work Queues", "Host", "Last Heartbeat", "Status"])
    for item in agents:
        add_row(
            table,
            item.id,
            item.name,
            ", ".join(item.work_queues),
            item.hostname,
            relative(item.last_heartbeat, now),
            status_text(item, now),
        )
    print_table(table)
