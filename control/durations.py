"""The one duration grammar of the CLI (``45s``, ``1h30m``, ...) and its Click type."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from runq.broker.schedules import duration_seconds

if TYPE_CHECKING:  # newer clicks type a ParamType by its value; older ones are not generic
    _FloatType = click.ParamType[float]
else:
    _FloatType = click.ParamType

DURATION_EXAMPLES = "45s, 10m, 1h30m, 1h 30m, 2d, 1w or plain seconds"


def parse_duration(text: str, minimum: float = 0.0) -> float:
    """Seconds in ``45s``, ``10m``, ``1h30m``, ``1h 30m``, ``2d``, ``1w`` or plain seconds.

    The one duration grammar of every flag that takes a duration (``--start-in``,
    ``--retry-delay``, ``--skip-if-late-by``, ``--prefetch-seconds``, ...) and of a
    schedule's ``--interval``: :func:`runq.broker.schedules.duration_seconds`.
    ``minimum``: the least value accepted.
    """
    raw = str(text)
    try:
        seconds = duration_seconds(raw)
    except ValueError:
        raise ValueError(
            f"{raw.strip()!r} is not a duration: use e.g. {DURATION_EXAMPLES}"
        ) from None
    if not math.isfinite(seconds) or seconds < minimum:
        bound = f">= {minimum:g}" if minimum else ">= 0"
        raise ValueError(f"{raw.strip()!r} is not a duration: it must be a finite number {bound}")
    return seconds


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
