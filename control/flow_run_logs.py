"""``runq flow-run logs``: print a run's log, whole, its first or last lines, or follow it.

A head or tail read costs what it prints (one ``XRANGE``/``XREVRANGE ... COUNT``), so
``--tail 20`` of a long log is as cheap as of a short one.
"""

from __future__ import annotations

import click

from runq.broker import Broker, BrokerUnavailable, FlowRun, LogLine
from runq.broker.backoff import Backoff
from runq.broker.run_logs import MAX_LOG_READ_LINES
from runq.broker.text import strip_controls

from .common import with_broker
from .connection import say_recovered, sit_out

LINES = click.IntRange(min=1, max=MAX_LOG_READ_LINES)


@click.command("logs")
@click.argument("run_ref", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("-n", "--tail", type=LINES, metavar="N", help="Only the last N lines.")
@click.option("--head", type=LINES, metavar="N", help="Only the first N lines.")
@click.option(
    "--raw",
    is_flag=True,
    help="Print lines exactly as the flow wrote them, escape sequences included.",
)
@with_broker
def logs(
    broker: Broker, run_ref: str, follow: bool, tail: int | None, head: int | None, raw: bool
) -> None:
    """Print the logs of a flow run (RUN: its id or its name).

    Terminal control sequences (colors, cursor moves, window titles, clipboard writes)
    and control characters other than tab are removed from every line, on a terminal
    or not, so a flow's output cannot drive the terminal that shows it (a pipe often
    ends on one: `| tail`). --raw prints the lines as stored, e.g. to see colors in
    `less -R`. A run keeps the last RUNQ_LOG_MAX_BYTES_PER_RUN bytes of its log (4 MiB
    by default); when older lines were dropped, the first line says how many.
    --tail N with --follow prints the last N lines, then the new ones as they come.

    \b
    Examples:
        runq flow-run logs 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e
        runq flow-run logs crimson-lemur --tail 50 --follow
        runq flow-run logs crimson-lemur --head 10
        runq flow-run logs 0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e --raw | less -R
    """
    if head is not None and (tail is not None or follow):
        raise click.UsageError("--head cannot be combined with --tail or --follow.")
    run = broker.read_flow_run(run_ref)
    if head is not None or tail is not None:
        print_end(broker, run, head=head, tail=tail, follow=follow, raw=raw)
        return
    print_logs(broker, run, follow, raw=raw)


def print_end(
    broker: Broker,
    run: FlowRun,
    *,
    head: int | None,
    tail: int | None,
    follow: bool,
    raw: bool,
) -> None:
    """Print the first ``head`` or last ``tail`` lines; with ``follow``, go on from there."""
    run_id = str(run.id)
    lines = (
        broker.read_log_head(run_id, head)
        if head is not None
        else broker.read_log_tail(run_id, tail or 1)
    )
    last = print_lines(lines, "0", raw=raw)
    if follow:
        follow_logs(broker, run, raw=raw, after=last)
    elif not lines:
        click.echo(f"No logs yet for flow run {run.name!r} ({run.id}).")


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


def follow_logs(broker: Broker, run: FlowRun, *, raw: bool = False, after: str = "0") -> None:
    """Print new lines (after line id ``after``) as they come until the run has ended and
    a second passed in silence.

    A Redis restart does not end it (a follower is often the operator's only window on a
    run): it retries with backoff, with one line per attempt on stderr, and goes on from
    the last line printed, so no line is skipped or printed twice.
    """
    last, outage = after, Backoff(broker.url, cap=2.0)  # someone is watching: a short cap
    while True:
        try:
            lines = broker.read_logs(run.id, after=last, block_seconds=1.0)
            ended = not lines and broker.read_flow_run(run.id).state.is_terminal
        except BrokerUnavailable as error:
            sit_out(outage, error)
            continue
        say_recovered(outage)
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
