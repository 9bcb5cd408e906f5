"""``runq flow-run retry | delete | reindex``: an operator's actions on runs.

Retry and delete are the operator's own writes: they need no claim token (the Lua
scripts behind them compare states instead), and each refuses a run in the wrong state
with one line before anything is written.
"""

from __future__ import annotations

import click

from runq.broker import Broker, WorkQueueNotFound
from runq.broker.states import LIVE_STATES
from runq.display.text import quoted

from .common import fail, with_broker


@click.command("retry")
@click.argument("run_ref", metavar="RUN")
@with_broker
def retry(broker: Broker, run_ref: str) -> None:
    """Run a FAILED, CRASHED or CANCELLED flow run again (RUN: its id or its name).

    It goes back to SCHEDULED, due now, on its queue (the Retry button of Prefect's UI);
    its run count grows by one when it runs again. A run in any other state is refused.

    \b
    Examples:
        runq flow-run retry 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run retry crimson-lemur
    """
    run = broker.retry_flow_run(run_ref)
    click.echo(
        f"Retrying flow run {run.name!r} ({run.id}): Scheduled on work queue "
        f"{run.work_queue_name!r}, due now."
    )


@click.command("delete")
@click.argument("run_ref", metavar="RUN")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@with_broker
def delete(broker: Broker, run_ref: str, yes: bool) -> None:
    """Delete a flow run, its record and its logs (RUN: its id or its name).

    A run in flight (PENDING, RUNNING or CANCELLING) is refused: cancel it first. Asks
    for confirmation unless --yes.

    \b
    Examples:
        runq flow-run delete crimson-lemur
        runq flow-run delete 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e --yes
    """
    run = broker.read_flow_run(run_ref)
    if run.state.type in LIVE_STATES:
        fail(
            f"Flow run {run.name!r} ({run.id}) is {run.state.type.value}: cancel it first "
            f"(runq flow-run cancel {run.id})."
        )
    if not yes and not click.confirm(
        f"Delete flow run {run.name!r} ({run.id}, {run.state.name})?", default=False
    ):
        fail("Aborted: nothing was deleted.")
    broker.delete_flow_run(str(run.id))
    click.echo(f"Deleted flow run {run.name!r} ({run.id})")


@click.command("reindex")
@click.option("-q", "--queue", metavar="NAME_OR_ID", help="Only this work queue's runs.")
@with_broker
def reindex(broker: Broker, queue: str | None) -> None:
    """Index runs written before runq kept listing indexes (an upgrade, once).

    Listings by state, deployment or flow name read indexes; runs stored by an older
    runq are missing from them until indexed. Safe to run again, and while agents run.

    \b
    Examples:
        runq flow-run reindex
        runq flow-run reindex --queue nightly
    """
    if queue is None:
        names = [found.name for found in broker.list_work_queues()]
    else:
        try:
            names = [broker.read_work_queue(queue).name]
        except WorkQueueNotFound:  # a deleted queue's kept history, or the one-line error
            names = []
            total = broker.reindex_runs(queue)
    if names:
        total = 0
        for number, name in enumerate(names, 1):
            click.echo(
                f"[{number}/{len(names)}] Indexing the runs of work queue {quoted(name)}...",
                err=True,
            )
            total += broker.reindex_runs(name)
    scope = f"work queue {quoted(queue)}" if queue else "every work queue"
    noun = "run" if total == 1 else "runs"
    click.echo(f"Indexed {total} {noun} of {scope}.")
