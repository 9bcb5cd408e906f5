"""``runq flow-run ...``: find, inspect and cancel flow runs, and read their logs.

Runs still SCHEDULED more than ``RUNQ_LATE_RUNS_AFTER_SECONDS`` past their due time are
shown with the state name "Late", as Prefect shows them; their state type stays
SCHEDULED, which is what agents and filters go by.
"""

from __future__ import annotations

import time
from uuid import UUID

import click

from runq.broker import Broker, BrokerUnavailable, FlowRun, LogLine, StateType
from runq.broker.backoff import Backoff
from runq.broker.text import strip_controls

from .common import (
    add_row,
    as_shown,
    both,
    deployment_namer,
    new_table,
    output_option,
    print_json,
    print_table,
    relative,
    render_record,
    wants_json,
    with_broker,
)

STATE_TYPES = [state.value for state in StateType]


@click.group("flow-run")
def flow_run() -> None:
    """Find, inspect and cancel flow runs.

    \b
    Examples:
        runq flow-run ls --state scheduled --queue nightly
        runq flow-run inspect 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run cancel 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
    """


def deployment_id_of(broker: Broker, name_or_id: str) -> str:
    """A deployment's id; an id is taken as is so runs of a deleted deployment stay findable."""
    try:
        return str(UUID(name_or_id))
    except ValueError:
        return str(broker.read_deployment(name_or_id).id)


@flow_run.command("ls")
@click.option("-q", "--queue", help="Only runs of this work queue.")
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATE_TYPES, case_sensitive=False),
    help="Only runs in this state type. Repeatable.",
)
@click.option("-d", "--deployment", metavar="NAME_OR_ID", help="Only runs of this deployment.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="At most this many runs.",
)
@output_option
@with_broker
def ls(
    broker: Broker,
    queue: str | None,
    states: tuple[str, ...],
    deployment: str | None,
    limit: int,
    output: str,
) -> None:
    """List flow runs, newest first.

    \b
    Examples:
        runq flow-run ls
        runq flow-run ls --queue nightly --state running --state pending
        runq flow-run ls --deployment etl --limit 5 -o json
    """
    runs = broker.list_flow_runs(
        queue,
        states=[state.upper() for state in states] or None,
        deployment_id=deployment_id_of(broker, deployment) if deployment else None,
        limit=limit,
    )
    now = broker.server_time()
    runs = [as_shown(run, now) for run in runs]
    if wants_json(output):
        print_json(runs)
        return
    names = deployment_namer(broker, runs)
    table = new_table(
        "Flow Runs", ["ID", "Name", "Flow", "Deployment", "Work Queue", "State", "When"]
    )
    for run in runs:
        add_row(
            table,
            run.id,
            run.name,
            run.flow_name or "",
            names(run),
            run.work_queue_name,
            run.state.name,
            relative(run.start_time or run.expected_start_time, now),
        )
    print_table(table)


@flow_run.command("inspect")
@click.argument("run_id", metavar="ID")
@output_option
@with_broker
def inspect(broker: Broker, run_id: str, output: str) -> None:
    """Show every field of a flow run.

    \b
    Examples:
        runq flow-run inspect 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run inspect 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e -o json
    """
    now = broker.server_time()
    run = as_shown(broker.read_flow_run(run_id), now)
    if wants_json(output):
        print_json(run)
        return
    fields = run.model_dump(mode="json")
    for key in (
        "expected_start_time",
        "created",
        "start_time",
        "end_time",
        "claimed_at",
        "heartbeat_at",
    ):
        moment = getattr(run, key)
        fields[key] = both(moment, now) if moment else None
    if run.state.timestamp:
        fields["state"]["timestamp"] = both(run.state.timestamp, now)
    click.echo(render_record("FlowRun", fields))


@flow_run.command("cancel")
@click.argument("run_id", metavar="ID")
@with_broker
def cancel(broker: Broker, run_id: str) -> None:
    """Cancel a flow run.

    A SCHEDULED or PENDING run is CANCELLED at once; a RUNNING run becomes CANCELLING and
    the agent that runs it stops its infrastructure, then marks it CANCELLED.

    \b
    Example:
        runq flow-run cancel 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
    """
    run = broker.cancel_flow_run(run_id)
    if run.state.type is StateType.CANCELLING:
        click.echo(f"Flow run {run.name!r} ({run.id}) is cancelling: its agent will stop it.")
    else:
        click.echo(f"Cancelled flow run {run.name!r} ({run.id})")


@flow_run.command("logs")
@click.argument("run_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option(
    "--raw",
    is_flag=True,
    help="Print lines exactly as the flow wrote them, escape sequences included.",
)
@with_broker
def logs(broker: Broker, run_id: str, follow: bool, raw: bool) -> None:
    """Print the logs of a flow run.

    Terminal control sequences (colors, cursor moves, window titles, clipboard writes)
    and control characters other than tab are removed from every line, on a terminal
    or not, so a flow's output cannot drive the terminal that shows it (a pipe often
    ends on one: `| tail`). --raw prints the lines as stored, e.g. to see colors in
    `less -R`. A run keeps the last RUNQ_LOG_MAX_BYTES_PER_RUN bytes of its log (4 MiB
    by default); when older lines were dropped, the first line says how many.

    \b
    Examples:
        runq flow-run logs 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run logs 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e --follow
        runq flow-run logs 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e --raw | less -R
    """
    print_logs(broker, broker.read_flow_run(run_id), follow, raw=raw)


def print_logs(broker: Broker, run: FlowRun, follow: bool, *, raw: bool = False) -> None:
    """Print the run's log lines (every page, not only the first 1000); with ``follow``,
    keep printing new ones until it ends. Control sequences are stripped unless ``raw``."""
    if follow:
        follow_logs(broker, run, raw=raw)
        return
    last, printed = "0", False
    while lines := broker.read_logs(run.id, after=last):  # pages of up to 1000 lines
        last, printed = print_lines(lines, last, raw=raw), True
    if not printed:
        click.echo(f"No logs yet for flow run {run.name!r} ({run.id}).")


def follow_logs(broker: Broker, run: FlowRun, *, raw: bool = False) -> None:
    """Print new lines as they come until the run has ended and a second passed in silence.

    A Redis restart does not end it (a follower is often the operator's only window on a
    run): it retries with backoff, with one line per attempt on stderr, and goes on from
    the last line printed, so no line is skipped or printed twice.
    """
    last, outage = "0", Backoff(broker.url, cap=2.0)  # someone is watching: a short cap
    while True:
        try:
            lines = broker.read_logs(run.id, after=last, block_seconds=1.0)
            ended = not lines and broker.read_flow_run(run.id).state.is_terminal
        except BrokerUnavailable as error:
            delay, notice = outage.failed(error)
            click.echo(notice, err=True)
            time.sleep(delay)
            continue
        if back := outage.recovered():
            click.echo(back, err=True)
        last = print_lines(lines, last, raw=raw)
        if ended:
            return


def print_lines(lines: list[LogLine], last: str, *, raw: bool = False) -> str:
    """Print log lines, control sequences stripped unless ``raw``; returns the id of the
    last one printed (``last`` when none)."""
    for line in lines:
        stamp = line.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
        message = line.message if raw else strip_controls(line.message)
        click.echo(f"{stamp} | {line.stream:<6} | {message}", color=True if raw else None)
        last = line.id
    return last


@flow_run.command("execute", context_settings={"ignore_unknown_options": True})
@click.argument("run_id", metavar="ID")
@click.option("--api", metavar="URL", help="Redis URL; default RUNQ_API_URL.")
def execute_command(run_id: str, api: str | None) -> None:
    """Execute one claimed flow run (what an agent starts in the infrastructure).

    The agent sets RUNQ_FLOW_RUN_TOKEN, the claim's fencing token, and RUNQ_API_URL.

    \b
    Example:
        RUNQ_FLOW_RUN_TOKEN=7 runq flow-run execute 01a2274a-df0a-7000-a4c7-288447221c35
    """
    from .execute import main as execute

    raise SystemExit(execute([run_id, *(["--api", api] if api else [])]))
