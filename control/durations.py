"""The one duration grammar of the CLI (``45s``, ``1h30m``, ...) and its Click type."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import click

from runq.broker.schedules import parse_interval

if TYPE_CHECKING:  # newer clicks type a ParamType by its value; older ones are not generic
    _FloatType = click.ParamType[float]
else:
    _FloatType = click.ParamType

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
DURATION_EXAMPLES = "45s, 10m, 1h30m, 1h 30m, 2d, 1w or plain seconds"


def parse_duration(text: str, minimum: float = 0.0) -> float:
    """Seconds in ``45s``, ``10m``, ``1h30m``, ``1h 30m``, ``2d``, ``1w`` or plain seconds.

    The one duration grammar of every flag that takes a duration (``--start-in``,
    ``--retry-delay``, ``--skip-if-late-by``, ``--prefetch-seconds``, ...) and of a
    schedule's ``--interval``: it is :func:`runq.broker.schedules.parse_interval`'s (units
    largest first, each at most once), which also accepts zero here (``0``, ``0s``).
    ``minimum``: the least value accepted.
    """
    raw = str(text)
    cleaned = raw.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        seconds = _units(raw, cleaned)
    if not math.isfinite(seconds) or seconds < minimum:
        bound = f">= {minimum:g}" if minimum else ">= 0"
        raise ValueError(f"{raw.strip()!r} is not a duration: it must be a finite number {bound}")
    return seconds


def _units(raw: str, cleaned: str) -> float:
    """The ``1h30m`` form, by the schedules' grammar; a zero one (``0s``, ``0h 0m``) is
    read too (that grammar refuses it as an interval)."""
    try:
        return parse_interval(cleaned)
    except ValueError:
        numbers = _NUMBER.findall(cleaned)
        ones = _NUMBER.sub("1", cleaned)  # the same shape, every number made non-zero
        if numbers and all(float(n) == 0 for n in numbers) and _parses(ones):
            return 0.0
    raise ValueError(f"{raw.strip()!r} is not a duration: use e.g. {DURATION_EXAMPLES}") from None


def _parses(text: str) -> bool:
    try:
        parse_interval(text)
    except ValueError:
        return False
    return True


class Duration(_FloatType):
    """A duration option (``--start-in 10m``) converted to seconds (see :func:`parse_duration`)."""

    name = "DURATION"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value) or value < self.minimum:
                    raise ValueError(f"{value!r} is not a duration: it must be >= {self.minimum:g}")
                return float(value)
            return parse_duration(str(value), self.minimum)
        except ValueError as error:
            self.fail(str(error), param, ctx)
