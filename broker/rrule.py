"""RFC 5545 rrule schedules: normalizing a rule to the schedule's zone, its parsed plan
and its wall-clock times."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from dateutil.rrule import rrulestr

from .cron import _message
from .wallclock import _UTC_NAMES, DEFAULT_ANCHOR, _zone

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
            wall = moment.replace(tzinfo=UTC).astimezone(_zone(tz))
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
    following: Iterator[datetime] = rule.xafter(first, inc=True)
    return following
