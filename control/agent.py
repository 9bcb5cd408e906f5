"""``runq agent ...``: start an agent, and see the agents registered on this Redis."""

from __future__ import annotations

import click

from runq.broker import Broker
from runq.display.agents import status_of, status_text
from runq.display.time_text import relative

from .agent_start import start
from .common import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    wants_json,
    with_broker,
)


@click.group("agent")
def agent() -> None:
    """Start agents, which pull flow runs from work queues, and see them.

    \b
    Examples:
        runq agent start -q 'my-queue'
        runq agent ls
    """


agent.add_command(start)


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
