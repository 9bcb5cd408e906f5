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

Speed
    The scheduler calls this for every deployment on every pass, so the parsed form of
    an expression is cached by its text (:func:`functools.lru_cache`), cron is walked a
    day at a time (croniter picks the days, the times of day are a precomputed tuple),
    and rrules without COUNT start from a DTSTART moved forward by whole periods rather
    than iterating from 2020. An hourly cron over a one-hour horizon costs tens of
    microseconds.
"""

from __future__ import annotations

import copy
import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from heapq import heappop, heappush
from itertools import count as counter
from typing import Annotated, Any, Iterable, Iterator, Literal, Mapping, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from dateutil.rrule import rrulestr
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .errors import InvalidInput

__all__ = [
    "DEFAULT_ANCHOR",
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "Schedule",
    "due_times",
    "parse_interval",
    "parse_schedule",
    "schedule_error",
    "validate_timezone",
]

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


# ---- interval text ------------------------------------------------------------------

_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_INTERVAL_TEXT = re.compile(r"(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_ORDER = "wdhms"


def parse_interval(text: str) -> float:
    """Seconds in ``3600``, ``90s``, ``1h30m``, ``1h 30m``, ``2d`` or ``1w``.

    Units go from largest to smallest, each at most once, so ``30m1h`` (probably a
    typo) is refused rather than guessed.
    """
    raw = str(text)
    cleaned = raw.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        seconds = _unit_seconds(raw, cleaned)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid interval {raw!r}: it must be a duration greater than zero")
    return seconds


def _unit_seconds(raw: str, cleaned: str) -> float:
    """The ``1h30m`` form; raises ValueError naming ``raw`` when it is not one."""
    hint = "use e.g. 3600, 90s, 1h30m, 1h 30m or 2d"
    if not _INTERVAL_TEXT.fullmatch(cleaned):
        raise ValueError(f"invalid interval {raw!r}: {hint}")
    parts = _INTERVAL_PART.findall(cleaned)
    ranks = [_UNIT_ORDER.index(unit) for _, unit in parts]
    if ranks != sorted(set(ranks)):
        raise ValueError(f"invalid interval {raw!r}: give each unit once, largest first ({hint})")
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in parts)


def _interval_seconds(value: Any) -> float:
    """Accept seconds, a ``timedelta`` or ``1h30m`` text; refuse anything not > 0."""
    if isinstance(value, bool):
        raise ValueError(f"invalid interval {value!r}: give a number of seconds")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = parse_interval(value)
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        raise ValueError(f"invalid interval {value!r}: give a number of seconds")
    if not math.isfinite(seconds) or round(seconds * 1e6) <= 0:
        raise ValueError(f"invalid interval {value!r}: it must be greater than zero seconds")
    return seconds


def _check_anchor(anchor: datetime | None) -> datetime | None:
    """An anchor at least two days inside datetime's range, so any zone can convert it."""
    if anchor is not None and not _FIRST_ANCHOR <= anchor.replace(tzinfo=None) <= _LAST_ANCHOR:
        raise ValueError(
            f"invalid anchor_date {anchor.isoformat()}: it must be between "
            f"{_FIRST_ANCHOR.date().isoformat()} and {_LAST_ANCHOR.date().isoformat()}"
        )
    return anchor


_FIRST_ANCHOR = datetime.min + 2 * _ONE_DAY
_LAST_ANCHOR = datetime.max - 2 * _ONE_DAY


# ---- the models -----------------------------------------------------------------------


class CronSchedule(BaseModel):
    """Runs at the wall-clock times a cron expression names, in ``timezone``.

    ``day_or`` is croniter's: when both day-of-month and day-of-week are restricted, a
    day matches either (True, classic cron) or must match both (False).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["cron"] = "cron"
    cron: str
    timezone: TimeZoneName = "UTC"
    day_or: bool = True

    @model_validator(mode="after")
    def _parse(self) -> "CronSchedule":
        _cron_plan(self.cron, self.day_or)
        return self


class IntervalSchedule(BaseModel):
    """Runs every ``interval`` seconds on a grid fixed by ``anchor_date``.

    A day or more keeps the anchor's local wall time across DST; less steps in real
    time (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["interval"] = "interval"
    interval: Annotated[float, BeforeValidator(_interval_seconds)] = Field(
        description="seconds (> 0); a timedelta or text such as '1h30m' is accepted"
    )
    anchor_date: Annotated[datetime | None, AfterValidator(_check_anchor)] = Field(
        None, description="a point of the grid; naive means wall time in `timezone`"
    )
    timezone: TimeZoneName = "UTC"


class RRuleSchedule(BaseModel):
    """Runs at the wall-clock times an RFC 5545 recurrence rule names, in ``timezone``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["rrule"] = "rrule"
    rrule: str
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _parse(self) -> "RRuleSchedule":
        _rrule_plan(self.rrule, self.timezone)
        return self


Schedule = Annotated[
    Union[CronSchedule, IntervalSchedule, RRuleSchedule], Field(discriminator="type")
]
_SCHEDULE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Schedule)
_KINDS = ("cron", "interval", "rrule")


def schedule_error(error: ValidationError) -> str:
    """One line from a pydantic error: our own messages as written, others with their field."""
    messages = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        loc = [str(part) for part in item.get("loc", ())]
        if len(loc) > 1 and loc[0] in _KINDS:  # the union's tag, not a field
            loc = loc[1:]
        if cause is not None:
            messages.append(str(cause))
        elif item.get("type") == "extra_forbidden":
            messages.append(f"unknown schedule field {'.'.join(loc)!r}")
        else:
            messages.append(f"{'.'.join(loc)}: {item['msg']}" if loc else item["msg"])
    return " ".join("; ".join(messages).split())


def parse_schedule(
    data: Mapping[str, Any] | BaseModel,
) -> CronSchedule | IntervalSchedule | RRuleSchedule:
    """Validate a schedule given as a dict (YAML, JSON, CLI flags) or a model.

    A missing ``type`` is inferred from the key present (``cron``, ``interval`` or
    ``rrule``) so hand-written files stay short. Raises InvalidInput with one line.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump()
    values = dict(data)
    if "type" not in values:
        kinds = [kind for kind in _KINDS if kind in values]
        if len(kinds) != 1:
            raise InvalidInput("A schedule needs exactly one of 'cron', 'interval' or 'rrule'.")
        values["type"] = kinds[0]
    try:
        return _SCHEDULE_ADAPTER.validate_python(values)
    except ValidationError as error:
        raise InvalidInput(schedule_error(error)) from None


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
    aware = start.replace(tzinfo=timezone.utc)
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


# ---- cron -----------------------------------------------------------------------------

_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: croniter's ``R`` picks random values at parse time: replicas would disagree.
_RANDOM_TOKEN = re.compile(r"(?<![a-z])r(?![a-z])", re.IGNORECASE)
_BRACKETED = re.compile(r"^\[[^\]]*\]")


@dataclass(frozen=True)
class _CronPlan:
    """A cron expression split into what decides the days and the times within a day."""

    times: tuple[timedelta, ...]
    seconds: tuple[int, ...]
    days: croniter | None
    hourly: bool


def _expanded(values: list[Any], full: range) -> list[int]:
    return list(full) if values == ["*"] else sorted(int(v) for v in values)


@lru_cache(maxsize=4096)
def _cron_plan(expression: str, day_or: bool) -> _CronPlan:
    """Parse and check a cron expression once; the plan is shared by every later call.

    Minutes, hours (and croniter's optional seconds) never depend on the day, so a day's
    runs are the product of those sets; croniter only has to find the matching days.
    """
    fields = _CRON_ALIASES.get(expression.strip().lower(), expression).split()
    if any(_RANDOM_TOKEN.search(field) for field in fields):
        raise ValueError(
            f"invalid cron expression {expression!r}: random 'R' fields are not allowed "
            "(every scheduler replica must compute the same times)"
        )
    try:
        expanded = croniter(" ".join(fields), DEFAULT_ANCHOR, day_or=day_or).expanded
        days = _day_iterator(fields, expanded, day_or)
    except CroniterBadDateError:
        raise ValueError(
            f"invalid cron expression {expression!r}: it matches no date after 2020-01-01"
        ) from None
    except (CroniterError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(f"invalid cron expression {expression!r}: {_cron_reason(error)}") from None
    minutes = _expanded(expanded[0], range(60))
    hours = _expanded(expanded[1], range(24))
    seconds_field = _expanded(expanded[5], range(60)) if len(expanded) > 5 else [0]
    seconds = tuple(
        sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds_field)
    )
    hourly = "*" in fields[1] or "/" in fields[1] or len(hours) == 24
    return _CronPlan(tuple(timedelta(seconds=s) for s in seconds), seconds, days, hourly)


def _cron_reason(error: Exception) -> str:
    """croniter's message without the expression it repeats in brackets."""
    detail = _BRACKETED.sub("", _message(error)).strip()
    if detail.startswith("is "):
        detail = "a field " + detail
    return detail or type(error).__name__


def _message(error: Exception) -> str:
    """A library's message on one line, a lone surrogate it quotes escaped (pydantic
    cannot carry one in a validation error)."""
    return " ".join(str(error).encode("utf-8", "backslashreplace").decode("utf-8").split())


def _day_iterator(fields: list[str], expanded: list[list[Any]], day_or: bool) -> croniter | None:
    """A croniter that steps over matching days (None when every day matches).

    It keeps the expression's own day, month, weekday and year fields, so every croniter
    feature (L, #, W, names) means what it means there. It is checked to match once.
    """
    day_fields = expanded[2:5] + expanded[6:7]
    if all(values == ["*"] for values in day_fields):
        return None
    day_expression = f"0 0 {fields[2]} {fields[3]} {fields[4]}"
    if len(fields) > 6:
        day_expression += f" 0 {fields[6]}"
    days = croniter(day_expression, DEFAULT_ANCHOR, day_or=day_or)
    days.get_next(datetime)  # raises CroniterBadDateError when no day ever matches
    return days


def _cron_days(plan: _CronPlan, first: date) -> Iterator[date]:
    """Matching days from ``first`` on (a private copy of the cached croniter is stepped)."""
    if plan.days is None:
        day = first
        while True:
            yield day
            try:
                day += _ONE_DAY
            except OverflowError:
                return
    days = copy.copy(plan.days)
    days.set_current(datetime.combine(first, time()) - timedelta(seconds=1), force=True)
    while True:
        try:
            yield days.get_next(datetime).date()
        except CroniterBadDateError:
            return


def _cron_walls(plan: _CronPlan, first: datetime) -> Iterator[datetime]:
    """The expression's wall times from ``first`` on, in order."""
    first_day = first.date()
    into_day = first.hour * 3600 + first.minute * 60 + first.second
    for day in _cron_days(plan, first_day):
        midnight = datetime.combine(day, time())
        skip = bisect_left(plan.seconds, into_day) if day == first_day else 0
        for offset in plan.times[skip:]:
            yield midnight + offset


# ---- rrule ----------------------------------------------------------------------------

_DTSTART = re.compile(
    r"DTSTART(?P<params>;[^:\n]*)?:(?P<value>\d{8}(?:T\d{6})?)(?P<utc>Z?)", re.IGNORECASE
)
_TZID = re.compile(r"TZID=([^;:]+)", re.IGNORECASE)
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
_DTSTART_LINE = re.compile(r"^DTSTART[;:][^\n]*$", re.IGNORECASE | re.MULTILINE)
_PROPERTY_START = re.compile(r"\s+(?=(?:DTSTART|RRULE|EXRULE|RDATE|EXDATE)[:;])", re.IGNORECASE)
_SUB_DAILY = {"HOURLY", "MINUTELY", "SECONDLY"}
_FIXED_PERIODS = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
}
_MONTH_PERIODS = {"MONTHLY": 1, "YEARLY": 12}


@dataclass(frozen=True)
class _RRulePlan:
    """A rule as naive wall times, with DTSTART apart so it can be moved forward cheaply.

    ``period`` (fixed) or ``months`` is a span every RRULE/EXRULE of the text repeats on;
    None when DTSTART must stay where it is (COUNT, or periods that do not line up).
    """

    body: str
    dtstart: datetime
    period: timedelta | None
    months: int | None
    hourly: bool


def _rule_parts(text: str) -> list[dict[str, str]]:
    """The ``KEY=VALUE`` parts of every RRULE and EXRULE line (bare ``FREQ=...`` included)."""
    rules = []
    for line in text.splitlines():
        name, sep, body = line.partition(":")
        if not sep:
            name, body = "RRULE", line
        if name.strip().upper() not in {"RRULE", "EXRULE"}:
            continue
        parts = (p.split("=", 1) for p in body.upper().split(";") if "=" in p)
        rules.append({key.strip(): value.strip() for key, value in parts})
    return rules


def _normalize_rrule(text: str, tz: str) -> tuple[str, datetime]:
    """The rule without its DTSTART line, in naive wall times of ``tz``, and that DTSTART.

    One-line input (``DTSTART:... RRULE:...`` or a literal ``\\n``) is split into lines;
    a DTSTART zone must be ``tz``; ``UNTIL=...Z`` is converted to ``tz`` wall time.
    """
    original = text
    text = _PROPERTY_START.sub("\n", text.replace("\\n", "\n").strip())
    dtstart = DEFAULT_ANCHOR
    match = _DTSTART.search(text)
    if match:
        _check_dtstart_zone(original, match, tz)
        value = match.group("value").upper()
        try:
            dtstart = datetime.strptime(value, "%Y%m%dT%H%M%S" if "T" in value else "%Y%m%d")
        except ValueError:
            raise ValueError(f"invalid rrule {original!r}: bad DTSTART {value}") from None
        text = _DTSTART_LINE.sub("", text).strip()

    def to_wall(until: re.Match[str]) -> str:
        try:
            moment = datetime.strptime(until.group(1), "%Y%m%dT%H%M%S")
            wall = moment.replace(tzinfo=timezone.utc).astimezone(_zone(tz))
        except (ValueError, OverflowError):  # no such date, or past year 9999 in the zone
            raise ValueError(f"invalid rrule {original!r}: bad UNTIL {until.group(1)}Z") from None
        return "UNTIL=" + wall.strftime("%Y%m%dT%H%M%S")

    return _UNTIL_UTC.sub(to_wall, text), dtstart


def _check_dtstart_zone(text: str, match: re.Match[str], tz: str) -> None:
    """Refuse a DTSTART whose own zone is not the schedule's: the rule would mean two zones."""
    tzid = _TZID.search(match.group("params") or "")
    named = tzid.group(1).strip() if tzid else ("UTC" if match.group("utc") else None)
    if named is None:
        return
    same = named == tz or (named.upper() in _UTC_NAMES and tz.upper() in _UTC_NAMES)
    if not same:
        raise ValueError(
            f"invalid rrule {text!r}: its DTSTART is in {named!r} but the schedule's timezone "
            f"is {tz!r}; drop the zone from DTSTART or set timezone to {named!r}"
        )


@lru_cache(maxsize=4096)
def _rule_from(body: str, dtstart: datetime) -> Any:
    """dateutil's rule (or rule set) for ``body`` starting at ``dtstart``; read-only, shared."""
    return rrulestr(body, dtstart=dtstart, ignoretz=True, unfold=True)


@lru_cache(maxsize=4096)
def _rrule_plan(text: str, tz: str) -> _RRulePlan:
    """Parse and check a rule once per (text, zone); see :class:`_RRulePlan`."""
    body, dtstart = _normalize_rrule(text, tz)
    try:
        _rule_from(body, dtstart)
    except Exception as error:  # dateutil raises ValueError, TypeError, ParserError...
        detail = _message(error) or type(error).__name__
        raise ValueError(f"invalid rrule {text!r}: {detail}") from None
    parts = _rule_parts(body)
    for part in parts:
        _check_rule_part(text, part)
    period, months = _common_period(parts, dtstart)
    hourly = any(_repeats_hourly(p) for p in parts if p)
    return _RRulePlan(body, dtstart, period, months, hourly)


#: RFC 5545 ranges of the BYxxx parts dateutil leaves unchecked (low, high, may be
#: negative). A value outside never matches, and dateutil would search every day up to
#: year 9999 for one: seconds of work for a rule that never runs.
_BY_RANGES = {
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
}
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_rule_part(text: str, part: Mapping[str, str]) -> None:
    """Refuse what dateutil accepts but cannot run: INTERVAL=0 (it would loop forever),
    BYxxx values out of range, month days that no month of BYMONTH has (Feb 30)."""
    interval = part.get("INTERVAL", "1")
    if not interval.isdigit() or int(interval) < 1:
        raise ValueError(f"invalid rrule {text!r}: INTERVAL must be a whole number >= 1")
    found: dict[str, list[int]] = {}
    for key, (low, high, signed) in _BY_RANGES.items():
        found[key] = [int(item) for item in part.get(key, "").split(",") if item]
        for number in found[key]:
            if not low <= (abs(number) if signed else number) <= high:
                raise ValueError(f"invalid rrule {text!r}: {key}={number} is out of range")
    days = found["BYMONTHDAY"]
    months = found["BYMONTH"] or range(1, 13)
    if days and not any(abs(day) <= _MONTH_DAYS[month - 1] for month in months for day in days):
        raise ValueError(f"invalid rrule {text!r}: no month of BYMONTH has those BYMONTHDAY days")


def _common_period(
    parts: list[dict[str, str]], dtstart: datetime
) -> tuple[timedelta | None, int | None]:
    """A span all the rules repeat on, so DTSTART may move by multiples of it.

    Each period of a rule without COUNT is built the same way from its own start, so
    the rule restarted a whole number of periods later yields the same times from there.
    Months move only from a day <= 28 (a 31st has no equal in every month).
    """
    if not parts or any("COUNT" in p for p in parts):
        return None, None
    freqs = [p.get("FREQ", "") for p in parts]
    steps = [int(p.get("INTERVAL", "1") or "1") for p in parts]
    if all(f in _FIXED_PERIODS for f in freqs):
        seconds = [int(_FIXED_PERIODS[f].total_seconds()) * n for f, n in zip(freqs, steps)]
        try:
            return timedelta(seconds=math.lcm(*seconds)), None
        except OverflowError:  # a period beyond any date: nothing to skip
            return None, None
    if all(f in _MONTH_PERIODS for f in freqs) and dtstart.day <= 28:
        return None, math.lcm(*(_MONTH_PERIODS[f] * n for f, n in zip(freqs, steps)))
    return None, None


def _repeats_hourly(parts: Mapping[str, str]) -> bool:
    """Rule 3's "repeats every hour" for one RRULE (see the module docstring)."""
    hours = {h for h in parts.get("BYHOUR", "").split(",") if h}
    if hours:
        return len({int(h) for h in hours}) == 24
    return parts.get("FREQ", "") in _SUB_DAILY


def _moved_dtstart(plan: _RRulePlan, first: datetime) -> datetime:
    """The latest DTSTART a whole number of periods after the rule's, at or before ``first``."""
    if plan.period is not None and first > plan.dtstart:
        return plan.dtstart + plan.period * ((first - plan.dtstart) // plan.period)
    if plan.months is not None and first > plan.dtstart:
        elapsed = (first.year - plan.dtstart.year) * 12 + first.month - plan.dtstart.month
        index = plan.dtstart.year * 12 + plan.dtstart.month - 1
        index += (max(elapsed - 1, 0) // plan.months) * plan.months
        return plan.dtstart.replace(year=index // 12, month=index % 12 + 1)
    return plan.dtstart


def _rrule_walls(plan: _RRulePlan, first: datetime) -> Iterator[datetime]:
    rule = _rule_from(plan.body, _moved_dtstart(plan, first))
    return rule.xafter(first, inc=True)


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
        return anchor.astimezone(timezone.utc).replace(tzinfo=None)
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


# ---- the entry point ------------------------------------------------------------------


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


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
    return [moment.replace(tzinfo=timezone.utc) for moment in found]


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
