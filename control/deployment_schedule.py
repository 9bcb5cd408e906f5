"""The schedule commands of ``runq deployment``: set, clear, pause and resume.

The broker removes or (re)creates a schedule's future runs itself; these commands only
change the deployment's ``schedule`` / ``is_schedule_active`` fields and confirm it.
"""

from __future__ import annotations

from typing import Any

import click

from runq.broker import Broker
from runq.display.schedules import describe_schedule

from .connection import with_broker
from .schedule import KIND_FLAGS, AnySchedule, schedule_options


@click.command("set-schedule")
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


@click.command("clear-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def clear_schedule(broker: Broker, name_or_id: str) -> None:
    """Remove the deployment's schedule and the future runs it made.

    \b
    Example:
        runq deployment clear-schedule etl
    """
    change_schedule(broker, name_or_id, "Cleared", schedule=None)


@click.command("pause-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def pause_schedule(broker: Broker, name_or_id: str) -> None:
    """Stop the schedule making runs, and remove the future runs it made.

    \b
    Example:
        runq deployment pause-schedule etl
    """
    change_schedule(broker, name_or_id, "Paused", is_schedule_active=False)


@click.command("resume-schedule")
@click.argument("name_or_id", metavar="NAME_OR_ID")
@with_broker
def resume_schedule(broker: Broker, name_or_id: str) -> None:
    """Let the schedule make runs again (created at once for the horizon).

    \b
    Example:
        runq deployment resume-schedule etl
    """
    change_schedule(broker, name_or_id, "Resumed", is_schedule_active=True)
