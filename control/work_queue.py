"""``runq work-queue ...``: create, list, inspect, preview, pause and limit work queues.

The commands and their output follow Prefect 2's ``prefect work-queue`` so an operator
who knows one knows the other; the data comes from the broker, judged by Redis' clock.
"""

from __future__ import annotations

import math
from typing import Any

import click

from runq.broker import Broker
from runq.broker.queue_settings import checked_fair_by
from runq.broker.work_queues import MOVE_HINT, WorkQueueInUse
from runq.display.queues import busy_note, queue_health, queue_json, status_of
from runq.display.runs import deployment_namer, late_after_seconds, preview_json
from runq.display.text import quoted
from runq.display.time_text import both, hours_text, relative

from .common import (
    add_row,
    fail,
    marked,
    new_table,
    output_option,
    print_json,
    print_table,
    render_record,
    wants_json,
    with_broker,
)
from .work_queue_update import update


@click.group("work-queue")
def work_queue() -> None:
    """Manage work queues: the named channels between deployments and agents.

    \b
    Examples:
        runq work-queue create 'my-queue' --limit 5
        runq work-queue ls
        runq work-queue update 'my-queue' -d 'nightly loads' --limit 3
        runq work-queue preview 'my-queue' --hours 12
    """


@work_queue.command("create")
@click.argument("name")
@click.option(
    "-l", "--limit", type=int, help="Most runs PENDING or RUNNING at once (default: none)."
)
@click.option("-d", "--description", default="", help="Free text shown by inspect.")
@click.option(
    "--fair-by",
    metavar="KEY",
    help="Hand out due runs round-robin across the values of tags KEY:VALUE (tenants).",
)
@with_broker
def create(
    broker: Broker, name: str, limit: int | None, description: str, fair_by: str | None
) -> None:
    """Create a work queue; an existing name is an error and is left unchanged.

    \b
    Examples:
        runq work-queue create 'test-queue'
        runq work-queue create 'k8s' --limit 5 -d 'jobs for the cluster'
        runq work-queue create 'shared' --fair-by tenant
    """
    if fair_by is not None:
        checked_fair_by(fair_by)  # before the queue exists: a bad key creates nothing
    queue = broker.create_work_queue(name, concurrency_limit=limit, description=description)
    if fair_by is not None:
        queue = broker.update_work_queue(queue.name, fair_by=fair_by)
    lines = [
        "Created work queue with properties:",
        f"    name - {queue.name!r}",
        f"    id - {queue.id}",
        f"    concurrency limit - {queue.concurrency_limit}",
    ]
    if queue.fair_by:
        lines.append(f"    fair by - {queue.fair_by!r}")
    if queue.description:
        lines.append(f"    description - {queue.description!r}")
    lines += [
        "",
        "Start an agent to pick up flow runs from the work queue:",
        f"    runq agent start -q {quoted(queue.name)}",
        "",
        "Inspect the work queue:",
        f"    runq work-queue inspect {quoted(queue.name)}",
    ]
    click.echo("\n".join(lines))


@work_queue.command("ls")
@click.option(
    "-m", "--match", "prefix", metavar="PREFIX", help="Only queues whose name starts with PREFIX."
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also show description, created and last polled."
)
@output_option
@with_broker
def ls(broker: Broker, prefix: str | None, verbose: bool, output: str) -> None:
    """List work queues with their limits, runs, agents and status.

    Active counts runs PENDING or RUNNING (what the concurrency limit bounds); Agents
    counts the live agents serving the queue (online in `runq agent ls`); a queue is
    healthy when a live agent polled it in the last 60 s, or its agents are all busy at
    their own --limit, and none of its runs is late (the UI's Ready, the metric
    runq_queue_healthy).

    \b
    Examples:
        runq work-queue ls
        runq work-queue ls --verbose
        runq work-queue ls --match 'k8s-' --output json
    """
    queues = broker.list_work_queues(prefix)
    now = broker.server_time()
    healths = broker.work_queue_health(queues)
    if wants_json(output):
        print_json([queue_json(q, h) for q, h in zip(queues, healths)])
        return
    columns = ["Name", "ID", "Concurrency Limit", "Active", "Scheduled", "Agents", "Status"]
    if verbose:
        columns += ["Description", "Created", "Last Polled"]
    table = new_table("Work Queues", columns, caption="(**) denotes a paused queue")
    for queue, health in zip(queues, healths):
        cells: list[Any] = [
            marked(queue.name, queue.is_paused),
            queue.id,
            queue.concurrency_limit,
            queue.active_runs,
            queue.scheduled_runs,
            health.agents,
            status_of(queue, health),
        ]
        if verbose:
            cells += [
                queue.description,
                f"{queue.created.astimezone():%Y-%m-%d %H:%M:%S}",
                relative(queue.last_polled, now),
            ]
        add_row(table, *cells)
    print_table(table)


@work_queue.command("inspect")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@output_option
@with_broker
def inspect(broker: Broker, name_or_id: str, output: str) -> None:
    """Show every field of a work queue, its counters, live agents and health.

    \b
    Examples:
        runq work-queue inspect 'test-queue'
        runq work-queue inspect a51adf8c-58bb-4949-abe6-1b87af46eabd -o json
    """
    queue = broker.read_work_queue(name_or_id)
    now = broker.server_time()
    health = queue_health(broker, queue, now)
    if wants_json(output):
        print_json(queue_json(queue, health))
        return
    status = status_of(queue, health)
    notes = health.problem_texts() + ([busy_note(health)] if health.agents_at_limit else [])
    if notes:
        status += f" ({'; '.join(notes)})"
    fields = {
        "id": str(queue.id),
        "name": queue.name,
        "description": queue.description,
        "concurrency_limit": queue.concurrency_limit,
        "is_paused": queue.is_paused,
        "fair_by": queue.fair_by,
        "created": both(queue.created, now),
        "updated": both(queue.updated, now),
        "last_polled": both(queue.last_polled, now),
        "active_runs": queue.active_runs,
        "scheduled_runs": queue.scheduled_runs,
        "late_runs": health.late_runs,
        "agents": [f"{a.id} (polled {relative(a.last_polled, now)})" for a in queue.agents],
        "is_healthy": health.is_healthy,
        "status": status,
    }
    click.echo(render_record("WorkQueue", fields))


#: A century: far enough for any schedule, near enough to stay a number of milliseconds.
MAX_PREVIEW_HOURS = 24 * 366 * 100


def finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Click callback: refuse ``inf`` and ``nan``, which FloatRange lets through."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number")
    return value


@work_queue.command("preview")
@click.argument("name", metavar="NAME_OR_ID")
@click.option(
    "--hours",
    type=click.FloatRange(min=0, max=MAX_PREVIEW_HOURS),
    callback=finite,
    default=1.0,
    show_default=True,
    help="How far ahead to look.",
)
@output_option
@with_broker
def preview(broker: Broker, name: str, hours: float, output: str) -> None:
    """Show the SCHEDULED runs due within the next HOURS, oldest first.

    It reads the same schedule agents claim from, so a run listed here is what an agent
    polling the queue would get next. Runs more than RUNQ_LATE_RUNS_AFTER_SECONDS
    (default 15) past their start time are late, marked (**).

    \b
    Examples:
        runq work-queue preview 'test-queue'
        runq work-queue preview 'test-queue' --hours 12
        runq work-queue preview a51adf8c-58bb-4949-abe6-1b87af46eabd
    """
    name = broker.work_queue_name(name)
    runs = broker.preview(name, hours=hours)
    now = broker.server_time()
    threshold = late_after_seconds()
    if wants_json(output):
        print_json([preview_json(run, now, threshold) for run in runs])
        return
    if not runs:
        click.echo(f"No runs scheduled on work queue {name!r} in the next {hours_text(hours)}.")
        return
    names = deployment_namer(broker, runs)
    table = new_table(
        None, ["Scheduled Start", "Run ID", "Name", "Deployment"], caption="(**) denotes a late run"
    )
    for run in runs:
        start = f"{run.expected_start_time.astimezone():%Y-%m-%d %H:%M:%S}"
        add_row(table, marked(start, run.is_late(now, threshold)), run.id, run.name, names(run))
    print_table(table)


@work_queue.command("pause")
@click.argument("name", metavar="NAME_OR_ID")
@with_broker
def pause(broker: Broker, name: str) -> None:
    """Pause a work queue: agents get no new runs from it; runs in flight go on.

    \b
    Example:
        runq work-queue pause 'test-queue'
    """
    queue = broker.pause_work_queue(name)
    click.echo(f"Paused work queue {queue.name!r}")


@work_queue.command("resume")
@click.argument("name", metavar="NAME_OR_ID")
@with_broker
def resume(broker: Broker, name: str) -> None:
    """Resume a paused work queue and wake its agents.

    \b
    Example:
        runq work-queue resume 'test-queue'
    """
    queue = broker.resume_work_queue(name)
    click.echo(f"Resumed work queue {queue.name!r}")


@work_queue.command("delete")
@click.argument("name", metavar="NAME_OR_ID")
@click.option(
    "--force",
    is_flag=True,
    help="Delete even while deployments send runs to it (it is then created again for them).",
)
@with_broker
def delete(broker: Broker, name: str, force: bool) -> None:
    """Delete a work queue with its SCHEDULED runs; its run history stays.

    Completed, failed and other ended runs stay readable by id and listed by
    `runq flow-run ls` until RUNQ_RUN_RETENTION_SECONDS purges them. Refused while runs
    are PENDING or RUNNING (wait, or cancel them), and while deployments send their runs
    to the queue: move them with `runq deployment set-work-queue DEPLOYMENT OTHER-QUEUE`,
    or give --force, and the queue is created again, empty, for them, their schedules'
    future runs on it at once. A running agent that serves the queue creates it again
    too: stop it first.

    \b
    Examples:
        runq work-queue delete 'test-queue'
        runq work-queue delete a51adf8c-58bb-4949-abe6-1b87af46eabd --force
    """
    name = broker.work_queue_name(name)
    try:
        broker.delete_work_queue(name, force=force)
    except WorkQueueInUse as in_use:
        named = ", ".join(repr(d) for d in in_use.deployments)
        fail(
            f"Work queue {name!r} is the queue of deployment(s) {named}: move them with "
            f"`{MOVE_HINT}`, or delete it with --force (it is then created again, empty, "
            "for them)."
        )
    click.echo(f"Deleted work queue {name!r}")
    users = sorted(d.name for d in broker.list_deployments() if d.work_queue_name == name)
    if users:
        named = ", ".join(repr(d) for d in users)
        click.echo(
            f"Created work queue {name!r} again for deployment(s) {named}, which send runs "
            f"to it; move them with `{MOVE_HINT}`."
        )


@work_queue.command(
    "set-concurrency-limit",
    context_settings={"ignore_unknown_options": True},  # so "-1" reaches the limit check
)
@click.argument("name", metavar="NAME_OR_ID")
@click.argument("limit", type=int)
@with_broker
def set_concurrency_limit(broker: Broker, name: str, limit: int) -> None:
    """Allow at most LIMIT runs PENDING or RUNNING at once on a queue (0 holds all).

    \b
    Example:
        runq work-queue set-concurrency-limit 'test-queue' 5
    """
    queue = broker.set_concurrency_limit(name, limit)
    click.echo(f"Concurrency limit of {queue.concurrency_limit} set on work queue {queue.name!r}")


@work_queue.command("clear-concurrency-limit")
@click.argument("name", metavar="NAME_OR_ID")
@with_broker
def clear_concurrency_limit(broker: Broker, name: str) -> None:
    """Remove a queue's concurrency limit.

    \b
    Example:
        runq work-queue clear-concurrency-limit 'test-queue'
    """
    queue = broker.clear_concurrency_limit(name)
    click.echo(f"Concurrency limit removed from work queue {queue.name!r}")


work_queue.add_command(update)
