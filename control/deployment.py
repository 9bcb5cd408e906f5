"""``runq deployment ...``: describe what to run and where, then run it.

A deployment names an entrypoint, its default parameters, the work queue its runs go to
and the infrastructure they run on. It can be written with flags (``create``) or as a
YAML file kept in version control (``apply``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from runq.broker import Broker, Deployment, DeploymentExists, DeploymentNotFound

from .common import (
    Duration,
    IsoDateTime,
    add_row,
    both,
    env_callback,
    json_object_callback,
    new_table,
    output_option,
    params_callback,
    print_json,
    print_table,
    quoted,
    render_record,
    wants_json,
    with_broker,
)
from .schedule import KIND_FLAGS, AnySchedule, describe, schedule_options
from .specfile import load_deployment_spec

INFRASTRUCTURES = ("process", "docker", "kubernetes")


def describe_schedule(item: Deployment) -> str:
    """One line for tables: what the schedule is, and whether it is paused."""
    if item.schedule is None:
        return ""
    text = describe(item.schedule, short=True)
    return text if item.is_schedule_active else f"{text} [paused]"


@click.group("deployment")
def deployment() -> None:
    """Manage deployments: what a flow run executes, on which queue and infrastructure.

    \b
    Examples:
        runq deployment create etl --entrypoint flows/etl.py:main -q nightly
        runq deployment apply etl.yaml
        runq deployment run etl --param day=2024-05-01
    """


def infrastructure_settings(infra: str, image: str | None, env: dict[str, str]) -> dict[str, Any]:
    """The ``infrastructure`` field from the flags; ``--image`` needs a container."""
    settings: dict[str, Any] = {"type": infra, "env": env}
    if image is not None:
        if infra == "process":
            raise click.UsageError("--image needs --infra docker or --infra kubernetes.")
        settings["image"] = image
    return settings


def print_next_steps(deployment: Deployment, verb: str) -> None:
    """What was stored, and the two commands an operator runs next."""
    click.echo(
        "\n".join(
            [
                f"{verb} deployment {deployment.name!r} with id '{deployment.id}'.",
                "",
                "To execute its flow runs, start an agent that pulls work from its work queue:",
                f"    runq agent start -q {quoted(deployment.work_queue_name)}",
                "",
                "To run it once now:",
                f"    runq deployment run {quoted(deployment.name)}",
            ]
        )
    )


@deployment.command("create")
@click.argument("name")
@click.option(
    "--entrypoint",
    required=True,
    metavar="PATH.py:FUNC|module:func",
    help="The function a run calls.",
)
@click.option(
    "-q",
    "--work-queue",
    "work_queue_name",
    default="default",
    show_default=True,
    help="The work queue its runs go to (created if needed).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    callback=params_callback,
    help="A default parameter; the value is read as JSON when it is JSON. Repeatable.",
)
@click.option(
    "--params-json",
    metavar="JSON",
    callback=json_object_callback,
    help="Default parameters as one JSON object (--param entries win).",
)
@click.option(
    "--infra",
    type=click.Choice(INFRASTRUCTURES),
    default="process",
    show_default=True,
    help="Where its runs execute.",
)
@click.option("--image", help="Container image (docker or kubernetes).")
@click.option(
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=env_callback,
    help="An environment variable of the run. Repeatable.",
)
@click.option("--tag", "tags", multiple=True, help="A tag given to its runs. Repeatable.")
@click.option("--retries", type=int, default=0, show_default=True, help="Retries of a failed run.")
@click.option(
    "--retry-delay",
    type=Duration(),
    default=0,
    metavar="SECONDS",
    help="Wait before a retry: seconds or a duration such as 30s, 5m.",
)
@click.option("-d", "--description", default="", help="Free text.")
@schedule_options
@click.option(
    "--skip-if-late-by", type=Duration(), metavar="DURATION",
    help="Cancel, instead of start, a run claimed later than this past its due time.",
)
@with_broker
def create(
    broker: Broker,
    name: str,
    entrypoint: str,
    work_queue_name: str,
    params: dict[str, Any],
    params_json: dict[str, Any],
    infra: str,
    image: str | None,
    env: dict[str, str],
    tags: tuple[str, ...],
    retries: int,
    retry_delay: float,
    description: str,
    given_schedule: AnySchedule | None,
    skip_if_late_by: float | None,
) -> None:
    """Create a deployment; an existing name is an error and is left unchanged.

    With a schedule (--cron, --interval or --rrule, in --timezone) its runs are created
    at once for the scheduler's horizon: `work-queue preview` shows them.

    \b
    Examples:
        runq deployment create etl --entrypoint flows/etl.py:main -q nightly
        runq deployment create report --entrypoint reports.daily:build \\
            --param region=eu --param days=7 --infra docker --image acme/report:1.4 \\
            --env LOG_LEVEL=debug --tag reports --retries 2 --retry-delay 1m
        runq deployment create nightly --entrypoint flows/etl.py:main \\
            --cron '30 2 * * *' --timezone Europe/London --skip-if-late-by 1h
    """
    refuse_taken(broker, name)
    created = broker.create_deployment(
        name=name,
        entrypoint=entrypoint,
        work_queue_name=work_queue_name,
        parameters={**params_json, **params},
        infrastructure=infrastructure_settings(infra, image, env),
        tags=list(tags),
        retries=retries,
        retry_delay_seconds=retry_delay,
        description=description,
        schedule=given_schedule.model_dump() if given_schedule else None,
        skip_if_late_by_seconds=skip_if_late_by,
    )
    print_next_steps(created, "Created")


def refuse_taken(broker: Broker, name: str) -> None:
    """Refuse a name another deployment has, before anything is written.

    (Broker.create_deployment would create the work queue before it found the name taken.)
    """
    try:
        found = broker.read_deployment(name)
    except DeploymentNotFound:
        return
    if found.name == name:  # not merely a deployment whose id is this text
        raise DeploymentExists(name)


@deployment.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_broker
def apply(broker: Broker, file: Path) -> None:
    """Create or update a deployment, by name, from a YAML file.

    The file holds the fields of `deployment create` under their model names. It is
    validated as a whole first: an invalid file changes nothing and the error names the
    field and its line. Fields the file leaves out take their defaults. The document,
    YAML aliases expanded, may take RUNQ_MAX_DEPLOYMENT_BYTES of JSON (1 MiB by default).

    \b
    Example:
        runq deployment apply etl.yaml
    \b
    where etl.yaml holds:
        name: etl
        entrypoint: flows/etl.py:main
        work_queue_name: nightly
        parameters: {region: eu, days: 7}
        infrastructure: {type: docker, image: acme/etl:2.0, env: {LOG_LEVEL: info}}
        tags: [etl]
        retries: 2
        retry_delay_seconds: 60
    """
    spec = load_deployment_spec(file, broker.settings.max_deployment_bytes)
    try:
        broker.read_deployment(spec.name)
    except DeploymentNotFound:
        print_next_steps(broker.create_deployment(spec), "Created")
        return
    print_next_steps(broker.update_deployment(spec.name, **spec.model_dump()), "Updated")


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
    """Show every field of a deployment.

    \b
    Examples:
        runq deployment inspect etl
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
@click.argument("name")
@click.argument("queue")
@with_broker
def set_work_queue(broker: Broker, name: str, queue: str) -> None:
    """Send the deployment's future runs to another work queue.

    Runs created from now on (by `deployment run` or the schedule) go to QUEUE, created
    if needed, and the future runs its schedule made move there; runs created by hand
    stay where they are. Point a deployment at a queue your own agent polls to debug its
    runs locally.

    \b
    Example:
        runq deployment set-work-queue etl my-laptop
    """
    updated = broker.update_deployment(name, work_queue_name=queue)
    click.echo(
        f"Deployment {updated.name!r} now sends new flow runs to work queue "
        f"{updated.work_queue_name!r}."
    )


@deployment.command("run")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    callback=params_callback,
    help="A parameter over the deployment's defaults; read as JSON when it is JSON. Repeatable.",
)
@click.option(
    "--start-in", type=Duration(), help="Start after a delay: 10m, 1h30m, 45s or seconds."
)
@click.option(
    "--start-at",
    type=IsoDateTime(),
    help="Start at this time, e.g. 2024-05-01T09:30:00+02:00 (no zone: this machine's).",
)
@with_broker
def run(
    broker: Broker,
    name_or_id: str,
    params: dict[str, Any],
    start_in: float | None,
    start_at: datetime | None,
) -> None:
    """Create a flow run of a deployment, due now or later.

    \b
    Examples:
        runq deployment run etl
        runq deployment run etl --param day=2024-05-01 --param dry_run=true --start-in 10m
        runq deployment run etl --start-at 2024-05-01T09:30:00Z
    """
    if start_in is not None and start_at is not None:
        raise click.UsageError("Give --start-in or --start-at, not both.")
    created = broker.create_flow_run(
        deployment=name_or_id,
        parameters=params,
        start_in_seconds=start_in or 0,
        scheduled_start_time=start_at,
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
            ]
        )
    )


@deployment.command("set-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@schedule_options
@with_broker
def set_schedule(broker: Broker, name_or_id: str, given_schedule: AnySchedule | None) -> None:
    """Replace the deployment's schedule.

    The future runs the old schedule made (still SCHEDULED) are removed and the new
    schedule's runs are created at once; runs already claimed are never touched.

    \b
    Examples:
        runq deployment set-schedule etl --cron '0 6 * * 1-5' --timezone America/New_York
        runq deployment set-schedule etl --interval 1h30m
        runq deployment set-schedule etl --rrule 'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9'
    """
    if given_schedule is None:
        raise click.UsageError(f"Give the new schedule: {KIND_FLAGS}.")
    updated = broker.update_deployment(
        name_or_id, schedule=given_schedule.model_dump(), is_schedule_active=True
    )
    click.echo(f"Schedule of deployment {updated.name!r} set: {describe_schedule(updated)}")


def change_schedule(broker: Broker, name_or_id: str, done: str, **change: Any) -> None:
    """Apply one schedule switch and confirm it in the one line the three commands share.

    The broker removes or (re)creates the schedule's future runs itself, so clearing,
    pausing and resuming differ only in the field they change and the verb they print.
    """
    updated = broker.update_deployment(name_or_id, **change)
    click.echo(f"{done} the schedule of deployment {updated.name!r}")


@deployment.command("clear-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def clear_schedule(broker: Broker, name_or_id: str) -> None:
    """Remove the deployment's schedule and the future runs it made.

    \b
    Example:
        runq deployment clear-schedule etl
    """
    change_schedule(broker, name_or_id, "Cleared", schedule=None)


@deployment.command("pause-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def pause_schedule(broker: Broker, name_or_id: str) -> None:
    """Stop the schedule making runs, and remove the future runs it made.

    \b
    Example:
        runq deployment pause-schedule etl
    """
    change_schedule(broker, name_or_id, "Paused", is_schedule_active=False)


@deployment.command("resume-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def resume_schedule(broker: Broker, name_or_id: str) -> None:
    """Let the schedule make runs again (created at once for the horizon).

    \b
    Example:
        runq deployment resume-schedule etl
    """
    change_schedule(broker, name_or_id, "Resumed", is_schedule_active=True)
