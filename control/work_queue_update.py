"""``runq work-queue update``: change a queue's description, limit and fair sharing after
its creation.

All change in one atomic write (``queue_update.lua``), so a refused value leaves the
queue as it was; a raised limit wakes the queue's agents, as ``set-concurrency-limit``
does.
"""

from __future__ import annotations

import click

from runq.broker import Broker
from runq.broker.work_queues import UNCHANGED, Unchanged

from .common import with_broker


@click.command("update")
@click.argument("name", metavar="NAME_OR_ID")
@click.option("-d", "--description", help="The new description ('' clears it).")
@click.option("-l", "--limit", type=int, help="The new concurrency limit (0 holds every run).")
@click.option("--no-limit", is_flag=True, help="Remove the concurrency limit.")
@click.option(
    "--fair-by",
    metavar="KEY",
    help="Hand out due runs round-robin across the values of tags KEY:VALUE (tenants).",
)
@click.option("--no-fair-by", is_flag=True, help="Hand out due runs in due order again.")
@with_broker
def update(
    broker: Broker,
    name: str,
    description: str | None,
    limit: int | None,
    no_limit: bool,
    fair_by: str | None,
    no_fair_by: bool,
) -> None:
    """Change a work queue's description, concurrency limit and/or fair sharing; the rest
    stays.

    \b
    Examples:
        runq work-queue update 'etl' --description 'nightly loads, owner: data team'
        runq work-queue update 'etl' -d '' --limit 5
        runq work-queue update a51adf8c-58bb-4949-abe6-1b87af46eabd --no-limit
        runq work-queue update 'shared' --fair-by tenant
    """
    if limit is not None and no_limit:
        raise click.UsageError("Give --limit N or --no-limit, not both.")
    if fair_by is not None and no_fair_by:
        raise click.UsageError("Give --fair-by KEY or --no-fair-by, not both.")
    if (
        description is None
        and limit is None
        and not no_limit
        and fair_by is None
        and not no_fair_by
    ):
        raise click.UsageError(
            "Nothing to update: give --description, --limit, --no-limit, --fair-by or --no-fair-by."
        )
    new_limit: int | None | Unchanged = None if no_limit else UNCHANGED if limit is None else limit
    new_fair: str | None | Unchanged = (
        None if no_fair_by else UNCHANGED if fair_by is None else fair_by
    )
    queue = broker.update_work_queue(
        name, description=description, concurrency_limit=new_limit, fair_by=new_fair
    )
    lines = [f"Updated work queue {queue.name!r}:"]
    if description is not None:
        lines.append(f"    description - {queue.description!r}")
    if limit is not None or no_limit:
        lines.append(f"    concurrency limit - {queue.concurrency_limit}")
    if fair_by is not None or no_fair_by:
        lines.append(f"    fair by - {queue.fair_by}")
    click.echo("\n".join(lines))
