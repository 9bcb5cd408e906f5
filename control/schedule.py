"""``runq schedule ...``: see when a cron, interval or rrule schedule runs, before deploying it.

``preview`` prints what :func:`broker.schedules.due_times` returns -- the very function
the scheduler uses -- so what it shows is what will be materialized, DST changes
included. It needs no Redis: the default start is this machine's clock.

Every command that takes a schedule (``deployment create``, ``set-schedule``) uses the
same flags: decorate it with :func:`schedule_options`, which hands it the schedule
:func:`schedule_from_flags` makes of them; ``runq.display.schedules.describe`` names a
schedule in one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from runq.broker import InvalidInput
from runq.broker.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    due_times,
    parse_schedule,
)
from runq.display.schedules import describe

from .common import (
    LocalIsoTime,
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    wants_json,
)

AnySchedule = CronSchedule | IntervalSchedule | RRuleSchedule
#: The flags that each name a kind of schedule; a command takes exactly one of them.
KIND_FLAGS = "--cron, --interval or --rrule"
#: The parameters :func:`schedule_options` adds, in :func:`schedule_from_flags`' order.
_FLAG_PARAMS = ("cron", "day_or", "interval", "anchor", "rrule", "tz")


@click.group("schedule")
def schedule() -> None:
    """Work out when a schedule runs, in its timezone and in UTC.

    \b
    Examples:
        runq schedule preview --cron '0 9 * * 1-5' --timezone Europe/Paris
        runq schedule preview --interval 1h30m --anchor 2026-01-01T08:00
        runq schedule preview --rrule 'FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7' -n 5
    """


def schedule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --cron/--day-or/--interval/--anchor/--rrule/--timezone and hand ``given_schedule``.

    One definition for every command that takes a schedule (``schedule preview``,
    ``deployment create`` and ``set-schedule``), so the same flags mean the same
    schedule, with the same errors, everywhere: what ``preview`` shows is what a
    deployment given those flags will run. The command receives ``given_schedule`` (see
    :func:`schedule_from_flags`) instead of the six flags. Put it above ``with_broker``:
    a mistake in the flags is then reported before any connection to Redis is made.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in _FLAG_PARAMS}
        return command(*args, given_schedule=schedule_from_flags(**flags), **kwargs)

    options = [
        click.option("--cron", metavar="EXPR", help="Cron expression, e.g. '0 9 * * 1-5'."),
        click.option(
            "--day-or/--day-and",
            "day_or",
            default=None,
            help="With --cron, when day-of-month and day-of-week are both set: run on "
            "days matching either (default, classic cron) or both.",
        ),
        click.option(
            "--interval",
            metavar="DURATION",
            help="Every DURATION: seconds (3600) or 90s, 1h30m, '1h 30m', 2d, 1w.",
        ),
        click.option(
            "--anchor",
            type=LocalIsoTime(),
            help="With --interval, a time on the grid (default 2020-01-01T00:00); "
            "without an offset it is read in --timezone.",
        ),
        click.option(
            "--rrule",
            metavar="RRULE",
            help="RFC 5545 rule, e.g. 'FREQ=DAILY;BYHOUR=9' or 'DTSTART:20260101T090000 "
            "RRULE:FREQ=WEEKLY'; DTSTART is read in --timezone.",
        ),
        click.option(
            "--timezone",
            "tz",
            metavar="TZ",
            default=None,  # not "UTC": a --timezone given without a schedule is a mistake
            help="IANA zone the schedule's wall-clock times are in.  [default: UTC]",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def schedule_from_flags(
    cron: str | None,
    day_or: bool | None,
    interval: str | None,
    anchor: datetime | None,
    rrule: str | None,
    tz: str | None,
) -> AnySchedule | None:
    """The schedule the flags describe, validated; None when no schedule flag is given.

    Whether no schedule is allowed is the command's call (``deployment create`` makes
    a deployment without one, ``preview`` refuses). Flags that do not fit together are
    usage errors (exit 2); a bad value (cron, interval, rrule, zone) is the one-line
    InvalidInput of :func:`parse_schedule` (exit 1), the same text in every command.
    """
    kinds = (("--cron", cron), ("--interval", interval), ("--rrule", rrule))
    given = [name for name, value in kinds if value is not None]
    if not given and day_or is None and anchor is None and tz is None:
        return None
    if len(given) != 1:  # two kinds, or a detail (--timezone, ...) of no schedule
        found = f" (got {' and '.join(given)})" if given else ""
        raise click.UsageError(f"Give exactly one of {KIND_FLAGS}{found}.")
    if day_or is not None and cron is None:
        raise click.UsageError("--day-or/--day-and go with --cron.")
    if anchor is not None and interval is None:
        raise click.UsageError("--anchor goes with --interval.")
    zone = {} if tz is None else {"timezone": tz}
    if cron is not None:
        return parse_schedule({"cron": cron, "day_or": day_or is not False, **zone})
    if interval is not None:
        return parse_schedule({"interval": interval, "anchor_date": anchor, **zone})
    return parse_schedule({"rrule": rrule, **zone})


def start_instant(start: datetime | None, zone: ZoneInfo) -> datetime:
    """``--start`` as an aware instant: naive is a wall time in the schedule's zone; none is now."""
    if start is None:
        return datetime.now(UTC)
    if start.tzinfo is None:
        return start.replace(tzinfo=zone)
    return start


def clock(moment: datetime) -> str:
    """``2026-03-08 03:30:00`` (with microseconds only when there are any)."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "")


def local_text(moment: datetime) -> str:
    """A local time with its zone abbreviation and offset: ``2026-03-08 03:30:00 EDT (-04:00)``."""
    offset = moment.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if len(offset) >= 5 else offset
    name = moment.tzname() or ""
    label = f"{name} ({offset})" if name and name[0] not in "+-" else f"({offset})"
    return f"{clock(moment)} {label}"


@schedule.command("preview")
@schedule_options
@click.option(
    "--start",
    type=LocalIsoTime(),
    help="First time to consider (included); without an offset it is read in --timezone. "
    "Default: now.",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 10000),
    default=10,
    show_default=True,
    help="How many due times to show.",
)
@output_option
def preview(
    given_schedule: AnySchedule | None,
    start: datetime | None,
    count: int,
    output: str,
) -> None:
    """Show the next due times of a schedule, in its timezone and in UTC.

    It computes them with the scheduler's own function, so across a DST change it shows
    exactly what will run: a time skipped by spring-forward runs once, shifted forward
    by the gap (02:30 -> 03:30); a time repeated by fall-back runs once, at its first
    occurrence, except for schedules that repeat every hour, which run at each distinct
    instant (25 hourly runs that day, none doubled). Intervals of a day or more keep
    the anchor's local time; shorter ones step in real time.

    \b
    Examples:
        runq schedule preview --cron '30 2 * * *' --timezone America/New_York --start 2026-03-07
        runq schedule preview --cron '0 * * * *' --timezone Europe/London --start 2026-10-25 -n 26
        runq schedule preview --cron '0 0 13 * 5' --day-and
        runq schedule preview --interval 1d --anchor 2026-01-01T09:00 --timezone Australia/Sydney
        runq schedule preview --interval 1h30m --start 2026-05-01T00:00Z -o json
        runq schedule preview --rrule 'DTSTART:20260105T090000 RRULE:FREQ=WEEKLY;INTERVAL=2'
    """
    if given_schedule is None:
        raise click.UsageError(f"Give exactly one of {KIND_FLAGS}.")
    zone = ZoneInfo(given_schedule.timezone)
    try:
        first = start_instant(start, zone)
        times = due_times(given_schedule, first, count=count)
    except (OverflowError, ValueError) as error:
        raise InvalidInput(f"Cannot compute due times from --start {start}: {error}") from None
    if wants_json(output):
        print_json([{"local": t.astimezone(zone).isoformat(), "utc": t.isoformat()} for t in times])
        return
    if not times:
        click.echo(f"{describe(given_schedule)} has no due time at or after {first.isoformat()}.")
        return
    caption = describe(given_schedule)
    table = new_table(f"Next {len(times)} due times", ["Local", "UTC"], caption=caption)
    for moment in times:
        add_row(table, local_text(moment.astimezone(zone)), clock(moment))
    print_table(table)
