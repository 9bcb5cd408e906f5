"""``runq schedule ...``: see when a cron, interval or rrule schedule runs, before deploying it.

``preview`` prints what :func:`broker.schedules.due_times` returns -- the very function
the scheduler uses -- so what it shows is what will be materialized, DST changes
included. It needs no Redis: the default start is this machine's clock.

The options and :func:`schedule_from_options` are reusable by commands that take a
schedule (``deployment create``): decorate with :func:`schedule_options`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import click

from broker import InvalidInput
from broker.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    due_times,
    parse_schedule,
)

from .common import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    seconds_text,
    wants_json,
)

AnySchedule = CronSchedule | IntervalSchedule | RRuleSchedule


@click.group("schedule")
def schedule() -> None:
    """Work out when a schedule runs, in its timezone and in UTC.

    \b
    Examples:
        runq schedule preview --cron '0 9 * * 1-5' --timezone Europe/Paris
        runq schedule preview --interval 1h30m --anchor 2026-01-01T08:00
        runq schedule preview --rrule 'FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7' -n 5
    """


class LocalIsoTime(click.ParamType):
    """An ISO-8601 time or date kept naive when it has no zone (the schedule's zone decides)."""

    name = "ISO-8601"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an ISO-8601 time such as 2026-03-08T09:30 or 2026-03-08")


def schedule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --cron/--day-or/--interval/--anchor/--rrule/--timezone to a command."""
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
            default="UTC",
            show_default=True,
            help="IANA zone the schedule's wall-clock times are in.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def schedule_from_options(
    cron: str | None,
    day_or: bool | None,
    interval: str | None,
    anchor: datetime | None,
    rrule: str | None,
    tz: str,
) -> AnySchedule:
    """The schedule the options describe; usage mistakes exit 2, bad values raise InvalidInput."""
    kinds = (("--cron", cron), ("--interval", interval), ("--rrule", rrule))
    given = [name for name, value in kinds if value is not None]
    if len(given) != 1:
        found = f" (got {' and '.join(given)})" if given else ""
        raise click.UsageError(f"Give exactly one of --cron, --interval or --rrule{found}.")
    if day_or is not None and cron is None:
        raise click.UsageError("--day-or/--day-and go with --cron.")
    if anchor is not None and interval is None:
        raise click.UsageError("--anchor goes with --interval.")
    if cron is not None:
        data: dict[str, Any] = {"type": "cron", "cron": cron, "day_or": day_or is not False}
    elif interval is not None:
        data = {"type": "interval", "interval": interval, "anchor_date": anchor}
    else:
        data = {"type": "rrule", "rrule": rrule}
    return parse_schedule({**data, "timezone": tz})


def describe(schedule: AnySchedule) -> str:
    """One line naming the schedule, for captions and listings."""
    zone = f"in {schedule.timezone}"
    if isinstance(schedule, CronSchedule):
        days = "" if schedule.day_or else " (days: both must match)"
        return f"cron {schedule.cron!r}{days} {zone}"
    if isinstance(schedule, IntervalSchedule):
        anchor = schedule.anchor_date.isoformat() if schedule.anchor_date else "2020-01-01T00:00:00"
        step = schedule.interval
        every = seconds_text(step) if step == int(step) else f"{step:g}s"
        return f"every {every} from {anchor} {zone}"
    return f"rrule {' '.join(schedule.rrule.split())!r} {zone}"


def start_instant(start: datetime | None, zone: ZoneInfo) -> datetime:
    """``--start`` as an aware instant: naive is a wall time in the schedule's zone; none is now."""
    if start is None:
        return datetime.now(timezone.utc)
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
    cron: str | None,
    day_or: bool | None,
    interval: str | None,
    anchor: datetime | None,
    rrule: str | None,
    tz: str,
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
    plan = schedule_from_options(cron, day_or, interval, anchor, rrule, tz)
    zone = ZoneInfo(plan.timezone)
    try:
        first = start_instant(start, zone)
        times = due_times(plan, first, count=count)
    except (OverflowError, ValueError) as error:
        raise InvalidInput(f"Cannot compute due times from --start {start}: {error}") from None
    if wants_json(output):
        print_json(
            [{"local": t.astimezone(zone).isoformat(), "utc": t.isoformat()} for t in times]
        )
        return
    if not times:
        click.echo(f"{describe(plan)} has no due time at or after {first.isoformat()}.")
        return
    table = new_table(f"Next {len(times)} due times", ["Local", "UTC"], caption=describe(plan))
    for moment in times:
        add_row(table, local_text(moment.astimezone(zone)), clock(moment))
    print_table(table)
