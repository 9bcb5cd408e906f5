"""A schedule in words: one line for a table cell or the caption of a preview.

``deployment ls``, ``set-schedule``'s confirmation, ``schedule preview`` and the UI's
Deployments page name a schedule with these functions.
"""

from __future__ import annotations

from runq.broker import Deployment
from runq.broker.schedule_models import CronSchedule, IntervalSchedule, RRuleSchedule

from .time_text import seconds_text


def describe(
    schedule: CronSchedule | IntervalSchedule | RRuleSchedule, *, short: bool = False
) -> str:
    """One line naming the schedule.

    The long form, for the caption of ``schedule preview``, spells out all that decides
    the due times (day rule, anchor, zone). The short form, for a table cell
    (``deployment ls``), names only the kind and expression, and the zone unless UTC.
    """
    if isinstance(schedule, CronSchedule):
        what = f"cron {schedule.cron if short else repr(schedule.cron)}"
        detail = "" if schedule.day_or else " (days: both must match)"
    elif isinstance(schedule, IntervalSchedule):
        step = schedule.interval
        # seconds_text rounds to whole seconds: 0.5 s would read "every 0s"
        every = seconds_text(step) if step == int(step) else f"{step:g}s"
        what = f"every {every}"
        anchor = schedule.anchor_date.isoformat() if schedule.anchor_date else "2020-01-01T00:00:00"
        detail = f" from {anchor}"
    else:
        rule = " ".join(schedule.rrule.split())  # a DTSTART line and an RRULE line: one line
        what = f"rrule {rule if short else repr(rule)}"
        detail = ""
    if short:
        return what if schedule.timezone == "UTC" else f"{what} ({schedule.timezone})"
    return f"{what}{detail} in {schedule.timezone}"


def describe_schedule(item: Deployment) -> str:
    """One line for tables: what the deployment's schedule is, and whether it is paused."""
    if item.schedule is None:
        return ""
    text = describe(item.schedule, short=True)
    return text if item.is_schedule_active else f"{text} [paused]"
