"""Cron schedules: the parsed plan of an expression and its wall-clock times, a day at
a time (croniter picks the days)."""

from __future__ import annotations

import copy
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .wallclock import _ONE_DAY, DEFAULT_ANCHOR

if TYPE_CHECKING:
    from croniter import croniter
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


@lru_cache(maxsize=1)
def _croniter() -> ModuleType:
    """croniter, imported on first use and without the subprocess its import starts.

    croniter 7 calls ``platform.architecture()`` when imported, which runs ``file -b``
    on the interpreter (some 10-30 ms, and a process): every agent, scheduler and engine
    paid it, engines that never look at a schedule included. Imported here, lazily, with
    the answer Python itself knows (the size of a pointer) for the one call.
    """
    import platform
    import struct

    real = platform.architecture
    platform.architecture = lambda *args, **kwargs: (f"{struct.calcsize('P') * 8}bit", "")
    try:
        import croniter
    finally:
        platform.architecture = real
    return croniter


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
    cron = _croniter()
    try:
        expanded = cron.croniter(" ".join(fields), DEFAULT_ANCHOR, day_or=day_or).expanded
        days = _day_iterator(fields, expanded, day_or)
    except cron.CroniterBadDateError:
        raise ValueError(
            f"invalid cron expression {expression!r}: it matches no date after 2020-01-01"
        ) from None
    except (cron.CroniterError, ValueError, KeyError, TypeError, IndexError) as error:
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
    days: croniter = _croniter().croniter(day_expression, DEFAULT_ANCHOR, day_or=day_or)
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
        except _croniter().CroniterBadDateError:
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
