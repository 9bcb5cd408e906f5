"""Schedules (cron, interval, RFC 5545 rrule) and the one function that says when they run.

Everything here is pure: no Redis, no clock. The scheduler calls :func:`due_times` with
Redis' now to learn which runs to materialize, and ``runq schedule preview`` prints what
the very same function returns, so a preview can never disagree with the scheduler.

Bounds
    ``due_times(schedule, start, end=..., count=...)`` returns aware UTC datetimes ``t``
    with ``start <= t <= end`` (both inclusive, Prefect's convention), strictly
    increasing, at most ``count`` of them. A run due exactly at ``start`` is included:
    the scheduler passes Redis' now, and if an earlier pass made that run already its
    idempotency key (deployment id + due time) makes the repeat harmless. Naive
    ``start``/``end`` are UTC.

Daylight saving time (the rules; tests/test_schedules.py checks each one)
    Cron, rrule and intervals of a day or more describe *wall-clock* times in the
    schedule's IANA zone. A wall time becomes UTC as follows:

    1. It exists once: that instant.
    2. It does not exist (the spring-forward gap): one run, shifted forward by the length
       of the gap, i.e. read with the offset in force before the change. 02:30 on
       2026-03-08 in America/New_York runs at 03:30 EDT (07:30 UTC). When the shifted
       instant is one the schedule has anyway (``0 * * * *``: 02:00 -> 03:00), it runs
       once: a spring-forward day has 23 hourly runs.
    3. It occurs twice (the fall-back fold): one run, at the *first* occurrence
       (01:30 EDT, not 01:30 EST) -- unless the schedule repeats every hour, in which
       case it runs at both, once per distinct UTC instant: ``0 * * * *`` runs 25 times
       on a fall-back day, never twice at the same instant. "Repeats every hour" means a
       cron whose hour field is ``*``, a step (``*/2``, ``1-23/2``) or lists all 24 hours;
       an rrule whose FREQ is HOURLY, MINUTELY or SECONDLY without BYHOUR, or whose
       BYHOUR lists all 24 hours. A daily 01:30 job runs once; an hourly one keeps its
       cadence in real time.

    Intervals of a day or more (>= 86400 s) keep the anchor's local wall-clock time
    (a daily 09:00 run stays at 09:00 local, 23 or 25 real hours apart on the change),
    under rules 2 and 3 with "first occurrence". Shorter intervals step in absolute time
    from the anchor and ignore DST: every 30 minutes is every 1800 s of real time.

Anchors and DTSTART
    The default anchor (and the default rrule DTSTART) is 2020-01-01 00:00 wall time in
    the schedule's zone. A naive ``anchor_date`` is a wall time in the schedule's zone;
    an aware one is converted to it. The interval grid extends both ways from the anchor
    (the anchor fixes the phase, not a first run). An rrule DTSTART without a zone is a
    wall time in the schedule's zone; one with ``TZID=`` (or ``Z``) must name that same
    zone (or UTC for a UTC schedule), so a rule never silently means two zones.
    ``UNTIL=...Z`` is converted to the zone; RDATE/EXDATE values are wall times in it.

Modules
    The schedule models and their parsing are in ``schedule_models.py``; time zones and
    the wall-clock -> UTC rules in ``wallclock.py``; each kind's times in ``cron.py``,
    ``rrule.py`` and ``intervals.py``. Their public names are importable from here.

Speed
    The scheduler calls this for every deployment on every pass, so the parsed form of
    an expression is cached by its text (:func:`functools.lru_cache`), cron is walked a
    day at a time (croniter picks the days, the times of day are a precomputed tuple),
    and rrules without COUNT start from a DTSTART moved forward by whole periods rather
    than iterating from 2020. An hourly cron over a one-hour horizon costs tens of
    microseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .cron import _cron_plan, _cron_walls
from .intervals import _interval_times
from .rrule import _rrule_plan, _rrule_walls
from .schedule_models import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    Schedule,
    duration_seconds,
    parse_interval,
    parse_schedule,
    schedule_error,
)
from .wallclock import DEFAULT_ANCHOR, _collect, _earliest_wall, _zone, validate_timezone

__all__ = [
    "DEFAULT_ANCHOR",
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "Schedule",
    "due_times",
    "duration_seconds",
    "parse_interval",
    "parse_schedule",
    "schedule_error",
    "validate_timezone",
]

# ---- the entry point ------------------------------------------------------------------


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def due_times(
    schedule: CronSchedule | IntervalSchedule | RRuleSchedule,
    start: datetime,
    *,
    end: datetime | None = None,
    count: int | None = None,
) -> list[datetime]:
    """The due times of ``schedule`` with ``start <= t <= end``, at most ``count`` of them.

    Aware UTC datetimes, strictly increasing, no two equal; naive ``start``/``end`` are
    UTC. At least one of ``end`` and ``count`` is required so the answer is finite. DST
    is handled by the rules in the module docstring.
    """
    if end is None and count is None:
        raise ValueError("due_times needs an end, a count or both")
    if count is not None and count < 0:
        raise ValueError(f"invalid count {count!r}: it must be >= 0")
    begin = _naive_utc(start)
    finish = _naive_utc(end) if end is not None else None
    if count == 0 or (finish is not None and finish < begin):
        return []
    found = _naive_due_times(schedule, begin, finish, count)
    return [moment.replace(tzinfo=UTC) for moment in found]


def _naive_due_times(
    schedule: CronSchedule | IntervalSchedule | RRuleSchedule,
    start: datetime,
    end: datetime | None,
    limit: int | None,
) -> list[datetime]:
    if isinstance(schedule, IntervalSchedule):
        return _interval_times(schedule, start, end, limit)
    zone = _zone(schedule.timezone)
    first = _earliest_wall(start, zone)
    if isinstance(schedule, CronSchedule):
        cron = _cron_plan(schedule.cron, schedule.day_or)
        return _collect(_cron_walls(cron, first), zone, cron.hourly, start, end, limit)
    if isinstance(schedule, RRuleSchedule):
        rule = _rrule_plan(schedule.rrule, schedule.timezone)
        return _collect(_rrule_walls(rule, first), zone, rule.hourly, start, end, limit)
    raise TypeError(f"not a schedule: {schedule!r}")
