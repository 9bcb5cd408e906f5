"""The ``runq`` command line: the root group, its error contract and the console script.

Contract: exit 0 on success; 1 on a runtime error, with one line on stderr; 2 on a usage
error (Click's own message). No traceback unless ``RUNQ_DEBUG=1``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from runq.broker import RunqError
from runq.broker.settings import debug_enabled
from runq.display.text import error_line

from .agent import agent
from .common import fail, printable
from .concurrency_limit import concurrency_limit
from .config import config
from .deployment import deployment
from .exporter import exporter
from .flow_run import flow_run
from .schedule import schedule
from .scheduler import scheduler
from .server import server
from .ui import ui
from .work_queue import work_queue

#: Other spellings operators type, as Prefect accepts ``work-queues``.
ALIASES = {
    "work-queues": "work-queue",
    "deployments": "deployment",
    "flow-runs": "flow-run",
    "agents": "agent",
}


class RunqGroup(click.Group):
    """The root group: resolves aliases and turns runq's errors into one line and exit 1.

    Click's usage errors (exit 2) keep Click's usage block, but their message quotes
    arguments as typed: its control characters are escaped so it stays one line.
    """

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            raise printable_usage(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunqError as error:
            fail(str(error))
        except click.UsageError as error:
            raise printable_usage(error) from None


def printable_usage(error: click.UsageError) -> click.UsageError:
    """The same usage error, its message on one printable line."""
    # Rewritten in place (click types ``message`` as final): a subclass (BadParameter,
    # NoSuchOption...) keeps its own way of showing it.
    setattr(error, "message", printable(error.message))
    return error


@click.group(cls=RunqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runq")
def cli() -> None:
    """runq: work queues and agents on Redis, the model of Prefect 2's.

    Every command talks to the Redis given by --api or RUNQ_API_URL, or else to the
    embedded local server (started on demand under RUNQ_HOME, default ~/.runq).
    Set RUNQ_DEBUG=1 to see full tracebacks; `runq config view` shows every setting.

    \b
    Examples:
        runq work-queue create 'my-queue' --limit 5
        runq deployment create etl --entrypoint flows/etl.py:main -q 'my-queue'
        runq deployment run etl
        runq work-queue preview 'my-queue'
    """


for group in (work_queue, deployment, flow_run, agent, schedule, scheduler, server, config):
    cli.add_command(group)
cli.add_command(concurrency_limit)
cli.add_command(exporter)
cli.add_command(ui)


def main() -> None:
    """The console script: anything unexpected is still one line and exit 1."""
    try:
        cli.main(prog_name="runq")
    except Exception as error:  # a bug or an environment fault, not a usage mistake
        if debug_enabled():
            raise
        click.echo(
            f"Unexpected error ({type(error).__name__}): {error_line(error)}. "
            "Set RUNQ_DEBUG=1 for the traceback.",
            err=True,
        )
        sys.exit(1)
