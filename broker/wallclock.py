"""Time zones and wall-clock time: how a schedule's local times become UTC instants
(the DST rules of :mod:`broker.schedules`' docstring)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from heapq import heappop, heappush
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

#: The default anchor and rrule DTSTART: a wall time, read in the schedule's zone.
DEFAULT_ANCHOR = datetime(2020, 1, 1)
#: Intervals of at least this many seconds keep the anchor's wall-clock time.
WALL_CLOCK_INTERVAL = 86400.0
#: No zone's UTC offset reaches this; used to know when a wall time is surely past `end`.
_MAX_OFFSET = timedelta(hours=48)
#: Where to look for an offset change near `start` (the widest ever was Samoa's 24 h).
_NEAR = timedelta(days=2)
_ONE_DAY = timedelta(days=1)
#: Zone names an rrule's ``DTSTART:...Z`` agrees with (compared upper-case).
_UTC_NAMES = frozenset(
    {"UTC", "ETC/UTC", "ETC/UCT", "UCT", "ETC/UNIVERSAL", "UNIVERSAL", "ETC/ZULU", "ZULU"}
    | {"GMT", "ETC/GMT", "ETC/GMT0", "GMT0"}
)


# ---- time zones -----------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    """The zone named ``name``; cached because every due-time computation needs one."""
    return ZoneInfo(name)


#: Far longer than any IANA zone name. zoneinfo imports a package per ``/`` of a key
#: (tzdata), recursively: a long ``a/a/a/...`` would end in a RecursionError.
_ZONE_NAME_MAX_LENGTH = 100


def validate_timezone(name: str) -> str:
    """Check an IANA zone name (``Europe/Paris``) so a typo fails at once, not at run time."""
    try:
        if len(name) > _ZONE_NAME_MAX_LENGTH:
            raise ValueError("too long")
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(
            f"unknown IANA time zone {name!r}: use a name such as 'UTC' or 'Europe/Paris'"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(validate_timezone)]


# ---- from wall-clock time to UTC ------------------------------------------------------


def _instants(wall: datetime, zone: ZoneInfo, both: bool) -> tuple[tuple[datetime, ...], bool]:
    """The naive-UTC instants of a naive wall time, and whether it exists exactly once.

    ``fold=0`` reads a time with the offset in force before a change: for a time in a
    gap that is the shift forward by the gap (rule 2), for a doubled time it is the first
    occurrence (rule 3); ``fold=1`` gives the second occurrence, kept only when ``both``.
    """
    before = wall.replace(tzinfo=zone).utcoffset()
    after = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None
    first = wall - before
    if before == after:
        return (first,), True
    if both and before > after:
        return (first, wall - after), False
    return (first,), False


def _earliest_wall(start: datetime, zone: ZoneInfo) -> datetime:
    """The earliest wall time that can map to an instant at or after ``start`` (naive UTC).

    Normally the wall time of ``start`` itself; near an offset change a doubled or
    shifted wall time up to the size of the jump earlier can still land after ``start``.
    """
    aware = start.replace(tzinfo=UTC)
    here = _offset(aware, zone)
    offsets = [here]
    for delta in (-_NEAR, _NEAR):
        try:
            offsets.append(_offset(aware + delta, zone))
        except OverflowError:  # within two days of year 1 or 9999
            continue
    return start + here - (max(offsets) - min(offsets))


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    """The zone's UTC offset at an aware instant."""
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def _collect(
    walls: Iterable[datetime],
    zone: ZoneInfo,
    both: bool,
    start: datetime,
    end: datetime | None,
    limit: int | None,
) -> list[datetime]:
    """Turn increasing wall times into increasing, distinct UTC instants within the bounds.

    Doubled and shifted wall times can map out of order or onto one instant, so their
    instants wait in a heap. A wall time that exists once is a barrier: no later wall
    time maps before it (a fold or gap would be needed in between, and that wall time
    would then be doubled or missing itself), so everything up to it is final.
    """
    found: list[datetime] = []
    pending: list[datetime] = []
    last_wall = end + _MAX_OFFSET if end is not None else None
    for wall in walls:
        try:
            instants, regular = _instants(wall, zone, both)
        except OverflowError:  # within hours of year 1 or 9999: no UTC instant to give
            continue
        for instant in instants:
            heappush(pending, instant)
        if regular:
            if _release(pending, instants[0], found, start, end, limit):
                return found
        elif last_wall is not None and wall > last_wall:
            break
    _release(pending, None, found, start, end, limit)
    return found


def _release(
    pending: list[datetime],
    upto: datetime | None,
    found: list[datetime],
    start: datetime,
    end: datetime | None,
    limit: int | None,
) -> bool:
    """Move final instants (<= ``upto``; all when None) into ``found``; True when done."""
    while pending and (upto is None or pending[0] <= upto):
        instant = heappop(pending)
        if instant < start or (found and instant <= found[-1]):
            continue
        if end is not None and instant > end:
            return True
        found.append(instant)
        if limit is not None and len(found) >= limit:
            return True
    return False
