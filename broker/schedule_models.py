"""The schedule models (cron, interval, rrule), interval text, and parsing a schedule
from a dict (YAML, JSON, CLI flags)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

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

from .cron import _cron_plan
from .errors import InvalidInput
from .rrule import _rrule_plan
from .wallclock import _ONE_DAY, TimeZoneName

# ---- interval text ------------------------------------------------------------------

_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_INTERVAL_TEXT = re.compile(r"(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_ORDER = "wdhms"


def duration_seconds(text: str) -> float:
    """Seconds in ``3600``, ``90s``, ``1h30m``, ``1h 30m``, ``2d``, ``1w`` (or ``0s``): runq's
    one duration grammar, for schedules' intervals and every CLI flag that takes a duration.

    Units go from largest to smallest, each at most once, so ``30m1h`` (probably a
    typo) is refused rather than guessed. The value is not checked (it may be zero,
    negative, infinite or NaN): each caller says what it accepts.
    """
    raw = str(text)
    cleaned = raw.strip().lower()
    try:
        return float(cleaned)
    except ValueError:
        return _unit_seconds(raw, cleaned)


def parse_interval(text: str) -> float:
    """Seconds of a schedule's interval (:func:`duration_seconds`), greater than zero."""
    raw = str(text)
    seconds = duration_seconds(raw)
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
    def _parse(self) -> CronSchedule:
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
    def _parse(self) -> RRuleSchedule:
        _rrule_plan(self.rrule, self.timezone)
        return self


Schedule = Annotated[CronSchedule | IntervalSchedule | RRuleSchedule, Field(discriminator="type")]
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
        schedule: CronSchedule | IntervalSchedule | RRuleSchedule = (
            _SCHEDULE_ADAPTER.validate_python(values)
        )
        return schedule
    except ValidationError as error:
        raise InvalidInput(schedule_error(error)) from None
