"""Interval schedules: wall-clock steps for a day or more, real-time steps below."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count as counter
from zoneinfo import ZoneInfo

from .schedule_models import IntervalSchedule
from .wallclock import (
    DEFAULT_ANCHOR,
    WALL_CLOCK_INTERVAL,
    _collect,
    _earliest_wall,
    _instants,
    _zone,
)

# ---- intervals ------------------------------------------------------------------------


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _anchor_wall(schedule: IntervalSchedule, zone: ZoneInfo) -> datetime:
    """The anchor as a naive wall time in the schedule's zone."""
    anchor = schedule.anchor_date or DEFAULT_ANCHOR
    if anchor.tzinfo is None:
        return anchor
    return anchor.astimezone(zone).replace(tzinfo=None)


def _anchor_instant(schedule: IntervalSchedule, zone: ZoneInfo) -> datetime:
    """The anchor as a naive UTC instant (a naive anchor read by rules 2 and 3)."""
    anchor = schedule.anchor_date
    if anchor is not None and anchor.tzinfo is not None:
        return anchor.astimezone(UTC).replace(tzinfo=None)
    return _instants(_anchor_wall(schedule, zone), zone, False)[0][0]


def _interval_times(
    schedule: IntervalSchedule, start: datetime, end: datetime | None, limit: int | None
) -> list[datetime]:
    """Interval due times: wall-clock steps for a day or more, real-time steps below."""
    zone = _zone(schedule.timezone)
    step = round(schedule.interval * 1e6)
    if schedule.interval >= WALL_CLOCK_INTERVAL:
        anchor = _anchor_wall(schedule, zone)
        first = -(-_micros(_earliest_wall(start, zone) - anchor) // step)
        return _collect(_grid(anchor, step, first), zone, False, start, end, limit)
    anchor = _anchor_instant(schedule, zone)
    first = -(-_micros(start - anchor) // step)
    found: list[datetime] = []
    for instant in _grid(anchor, step, first):
        if (end is not None and instant > end) or (limit is not None and len(found) >= limit):
            break
        found.append(instant)
    return found


def _grid(anchor: datetime, step: int, first: int) -> Iterator[datetime]:
    """``anchor + k * step`` microseconds for k = first, first + 1, ... until year 9999."""
    for k in counter(first):
        try:
            yield anchor + timedelta(microseconds=k * step)
        except OverflowError:  # past the last datetime: the schedule has no more times
            return
