"""``runq deployment ...``: describe what to run and where, then run it.

A deployment names an entrypoint, its default parameters, the work queue its runs go to
and the infrastructure they run on. It can be written with flags (``create``) or as a
YAML file kept in version control (``apply``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from runq.broker import Broker
from runq.display.schedules import describe_schedule
from runq.display.time_text import both

from .connection import with_broker
from .deployment_define import apply, create
from .deployment_schedule import (
    clear_schedule,
    pause_schedule,
    resume_schedule,
    set_schedule,
)
from .durations import Duration
from .output import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    render_record,
    wants_json,
)
from .param_types import IsoDateTime, param_option


@click.group("deployment")
def deployment() -> None:
    """Manage deployments: what a flow run executes, on which queue and infrastructure.

    \b
    Examples:
        runq deployment create etl --entrypoint flows/etl.py:main -q nightly
        runq deployment apply etl.yaml
        runq deployment run etl --param day=2024-05-01
    """


# The commands that define a deployment (deployment_define) and change its schedule
# (deployment_schedule) live in their own modules; all are registered on this group.
deployment.add_command(create)
deployment.add_command(apply)


@deployment.command("ls")
@output_option
@with_broker
def ls(broker: Broker, output: str) -> None:
    """List deployments with their work queue and infrastructure.

    \b
    Examples:
        runq deployment ls
        runq deployment ls -o json
    """
    deployments = broker.list_deployments()
    if wants_json(output):
        print_json(deployments)
        return
    table = new_table(
        "Deployments",
        ["Name", "ID", "Flow", "Work Queue", "Infrastructure", "Entrypoint", "Schedule"],
    )
    for item in deployments:
        target = item.entrypoint or " ".join(item.command or [])
        add_row(
            table,
            item.name,
            item.id,
            item.flow_name,
            item.work_queue_name,
            item.infrastructure.type,
            target,
            describe_schedule(item),
        )
    print_table(table)


@deployment.command("inspect")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@output_option
@with_broker
def inspect(broker: Broker, name_or_id: str, output: str) -> None:
    """Show every field of a deployment (its code's path and parameter schema too).

    NAME_OR_ID is the deployment's name, its id, or Prefect's FLOW/DEPLOYMENT.

    \b
    Examples:
        runq deployment inspect etl
        runq deployment inspect main/etl
        runq deployment inspect etl -o json
    """
    found = broker.read_deployment(name_or_id)
    if wants_json(output):
        print_json(found)
        return
    now = broker.server_time()
    fields = found.model_dump(mode="json")
    fields.update(created=both(found.created, now), updated=both(found.updated, now))
    click.echo(render_record("Deployment", {"id": fields.pop("id"), **fields}))


@deployment.command("delete")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def delete(broker: Broker, name_or_id: str) -> None:
    """Delete a deployment; its flow runs stay on their work queues.

    \b
    Example:
        runq deployment delete etl
    """
    deleted = broker.delete_deployment(name_or_id)
    click.echo(f"Deleted deployment {deleted.name!r}")


@deployment.command("set-work-queue")
@click.argument("name", metavar="NAME_OR_ID")
@click.argument("queue", metavar="QUEUE_NAME_OR_ID")
@with_broker
def set_work_queue(broker: Broker, name: str, queue: str) -> None:
    """Send the deployment's future runs to another work queue.

    Runs created from now on (by `deployment run` or the schedule) go to QUEUE (a name,
    created if needed, or the id of an existing queue), and the future runs its schedule
    made move there; runs created by hand
    stay where they are. Point a deployment at a queue your own agent polls to debug its
    runs locally.

    \b
    Examples:
        runq deployment set-work-queue etl my-laptop
        runq deployment set-work-queue etl 0b6c7c1e-3f0a-4a52-9c3e-2f4d1a7e5b90
    """
    updated = broker.update_deployment(name, work_queue_name=queue)
    click.echo(
        f"Deployment {updated.name!r} now sends new flow runs to work queue "
        f"{updated.work_queue_name!r}."
    )


@deployment.command("run")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@param_option
@click.option(
    "--start-in", type=Duration(), help="Start after a delay: 10m, 1h30m, 45s or seconds."
)
@click.option(
    "--start-at",
    type=IsoDateTime(),
    help="Start at this time, e.g. 2024-05-01T09:30:00+02:00 (no zone: this machine's).",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="A tag given to this run beside its deployment's (a concurrency limit of that "
    "name applies to it). Repeatable.",
)
@click.option(
    "--timeout",
    type=Duration(minimum=1.0),
    help="Stop this run, FAILED (TimedOut), if it still runs this long after it started "
    "(instead of its deployment's timeout): 30m, 2h, seconds.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Print each state change until the run ends; exit 0 only if it Completed.",
)
@with_broker
def run(
    broker: Broker,
    name_or_id: str,
    params: dict[str, Any],
    start_in: float | None,
    start_at: datetime | None,
    tags: tuple[str, ...],
    timeout: float | None,
    watch: bool,
) -> None:
    """Create a flow run of a deployment, due now or later.

    NAME_OR_ID is the deployment's name, its id, or Prefect's FLOW/DEPLOYMENT. The
    parameters (the deployment's defaults merged with --param) are checked against its
    parameter schema first: a missing, unknown or ill-typed one creates nothing.

    \b
    Examples:
        runq deployment run etl
        runq deployment run main/etl --param day=2024-05-01 --param dry_run=true --start-in 10m
        runq deployment run etl --start-at 2024-05-01T09:30:00Z
        runq deployment run etl --tag 'customer:acme' --tag warehouse
        runq deployment run etl --watch
        runq deployment run etl --timeout 30m
    """
    if start_in is not None and start_at is not None:
        raise click.UsageError("Give --start-in or --start-at, not both.")
    created = broker.create_flow_run(
        deployment=name_or_id,
        parameters=params,
        start_in_seconds=start_in or 0,
        scheduled_start_time=start_at,
        tags=tags,
        timeout_seconds=timeout,
    )
    now = broker.server_time()
    click.echo(
        "\n".join(
            [
                f"Created flow run {created.name!r}.",
                f"└── ID: {created.id}",
                f"└── Parameters: {json.dumps(created.parameters)}",
                f"└── Scheduled start time: {both(created.expected_start_time, now)}",
                f"└── Work queue: {created.work_queue_name!r}",
                *([f"└── Tags: {created.tags}"] if tags else []),
            ]
        )
    )
    if watch:
        from .run_watch import watch_run

        click.get_current_context().exit(watch_run(broker, str(created.id)))


deployment.add_command(set_schedule)
deployment.add_command(clear_schedule)
deployment.add_command(pause_schedule)
deployment.add_command(resume_schedule)
