"""``runq flow-run ...``: list, inspect and cancel flow runs (retry, delete and reindex
live in :mod:`.flow_run_actions`, logs in :mod:`.flow_run_logs`).

Runs still SCHEDULED more than ``RUNQ_LATE_RUNS_AFTER_SECONDS`` past their due time are
shown with the state name "Late", as Prefect shows them; their state type stays
SCHEDULED, which is what agents and filters go by.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import click
from rich.table import Table

from runq.broker import Broker, FlowRun, StateType
from runq.broker.api import MAX_LIST_LIMIT
from runq.broker.text import strip_controls
from runq.display.runs import as_shown, deployment_namer, limit_line
from runq.display.time_text import both, relative
from runq.engine import entry as engine

from .common import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    render_record,
    wants_json,
    with_broker,
)
from .flow_run_actions import delete, reindex, retry
from .flow_run_logs import logs

STATE_TYPES = [state.value for state in StateType]
#: State names that are not a type's own name: ``--state`` takes them too.
STATE_NAMES = ["Late", "AwaitingRetry", "AwaitingConcurrencySlot"]


@click.group("flow-run")
def flow_run() -> None:
    """Find, inspect, retry, cancel and delete flow runs, and read their logs.

    Every command takes a run by its id or by its name; a name several runs share is
    refused with their ids.

    \b
    Examples:
        runq flow-run ls --state failed --state crashed --queue nightly
        runq flow-run inspect crimson-lemur
        runq flow-run retry 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
    """


def deployment_id_of(broker: Broker, name_or_id: str) -> str:
    """A deployment's id; an id is taken as is so runs of a deleted deployment stay findable."""
    try:
        return str(UUID(name_or_id))
    except ValueError:
        return str(broker.read_deployment(name_or_id).id)


def states_callback(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--state`` values as the broker takes them: a type (``FAILED``) or a name
    (``Late``), whatever the case typed; a word that is both (``failed``) is the type."""
    names = {name.lower(): name for name in STATE_NAMES}
    found = []
    for value in values:
        if value.upper() in STATE_TYPES:
            found.append(value.upper())
        elif value.lower() in names:
            found.append(names[value.lower()])
        else:
            raise click.BadParameter(
                f"{value!r} is not a state type ({', '.join(STATE_TYPES)}) "
                f"or name ({', '.join(STATE_NAMES)})."
            )
    return tuple(dict.fromkeys(found))


@flow_run.command("ls")
@click.option(
    "-q",
    "--queue",
    metavar="NAME_OR_ID",
    help="Only runs of this work queue (a deleted queue's kept history too).",
)
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    callback=states_callback,
    help="Only runs in this state, by type (FAILED, SCHEDULED...) or name (Late, "
    "AwaitingRetry, Crashed...), any case. Repeatable.",
)
@click.option("-d", "--deployment", metavar="NAME_OR_ID", help="Only runs of this deployment.")
@click.option("--flow-name", metavar="FLOW", help="Only runs of this flow.")
@click.option("--before", metavar="RUN", help="Only runs created before this one (paging).")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=MAX_LIST_LIMIT),
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
    flow_name: str | None,
    before: str | None,
    limit: int,
    output: str,
) -> None:
    """List flow runs, newest first.

    A listing reads indexes: it costs what it returns, whatever the history holds. The
    next page starts before the last run shown: --before ID.

    \b
    Examples:
        runq flow-run ls
        runq flow-run ls --queue nightly --state running --state pending
        runq flow-run ls --state late --state AwaitingRetry
        runq flow-run ls --flow-name etl --deployment etl --limit 5 -o json
    """
    runs = broker.list_flow_runs(
        queue,
        states=list(states) or None,
        deployment_id=deployment_id_of(broker, deployment) if deployment else None,
        flow_name=flow_name,
        limit=limit,
        before=broker.resolve_flow_run_id(before) if before else None,
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
@click.argument("run_ref", metavar="RUN")
@output_option
@with_broker
def inspect(broker: Broker, run_ref: str, output: str) -> None:
    """Show every field of a flow run and its state history (RUN: its id or its name).

    \b
    Examples:
        runq flow-run inspect 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run inspect crimson-lemur -o json
    """
    now = broker.server_time()
    run = as_shown(broker.read_flow_run(run_ref), now)
    if wants_json(output):
        print_json(run)
        return
    fields = run.model_dump(mode="json", exclude={"state_history"})
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
    if line := limit_line(broker, run):  # the limit, its slots held, the run's place
        click.echo(line.text())
    print_table(history_table(run, now))


def history_table(run: FlowRun, now: datetime) -> Table:
    """The run's state history, oldest first: when, type, name, message."""
    table = new_table("State History", ["When", "Type", "Name", "Message"])
    for state in run.state_history:
        when = both(state.timestamp, now) if state.timestamp else ""
        add_row(table, when, state.type.value, state.name, strip_controls(state.message or ""))
    return table


@flow_run.command("cancel")
@click.argument("run_ref", metavar="RUN")
@with_broker
def cancel(broker: Broker, run_ref: str) -> None:
    """Cancel a flow run (RUN: its id or its name).

    A SCHEDULED or PENDING run is CANCELLED at once; a RUNNING run becomes CANCELLING and
    the agent that runs it stops its infrastructure, then marks it CANCELLED.

    \b
    Examples:
        runq flow-run cancel 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run cancel crimson-lemur
    """
    run = broker.cancel_flow_run(broker.resolve_flow_run_id(run_ref))
    if run.state.type is StateType.CANCELLING:
        click.echo(f"Flow run {run.name!r} ({run.id}) is cancelling: its agent will stop it.")
    else:
        click.echo(f"Cancelled flow run {run.name!r} ({run.id})")


for command in (logs, retry, delete, reindex):
    flow_run.add_command(command)


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
    raise SystemExit(engine.main([run_id, *(["--api", api] if api else [])]))
