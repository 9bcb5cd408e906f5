"""Click parameter types and callbacks: ISO-8601 times, ``k=v`` pairs and JSON objects.

(Durations have their own module, :mod:`.durations`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # newer clicks type a ParamType by its value; older ones are not generic
    _DateTimeType = click.ParamType[datetime]
else:
    _DateTimeType = click.ParamType


class IsoDateTime(_DateTimeType):
    """An ISO-8601 time; one without a zone is taken in this machine's local zone.

    That suits a moment the operator means on their own clock (``--start-at``).
    """

    name = "ISO-8601"
    #: Shown in the error, so the operator sees a form this option expects.
    example = "2024-05-01T09:30:00+02:00"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an ISO-8601 time such as {self.example}", param, ctx)
        try:
            return self.zoned(moment)
        except (ValueError, OverflowError):  # year 1 or 9999 read in this machine's zone
            self.fail(f"{text!r} is out of range in this machine's time zone", param, ctx)

    def zoned(self, moment: datetime) -> datetime:
        """The parsed time as the option means it: a naive one is on this machine's clock."""
        return moment if moment.tzinfo else moment.astimezone()


class LocalIsoTime(IsoDateTime):
    """An ISO-8601 time or date kept naive when it has no zone.

    For schedule times (``--anchor``, ``--start`` of a preview): a naive one is a wall
    time in the schedule's ``--timezone``, which only the schedule can resolve, so it
    must not be pinned to this machine's zone here.
    """

    example = "2026-03-08T09:30 or 2026-03-08"

    def zoned(self, moment: datetime) -> datetime:
        return moment


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON data")


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON when it parses as JSON (``3``, ``true``, ``[1]``), else the text.

    ``NaN`` and ``Infinity`` stay text: they would parse, then fail as run parameters.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # nested beyond what the parser takes: text too
        return text


def split_pair(text: str, what: str) -> tuple[str, str]:
    """``key=value`` -> ``(key, value)``; the value may itself contain ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not a {what} of the form KEY=VALUE")
    return key.strip(), value


def params_callback(
    ctx: click.Context, param: click.Parameter, values: Iterable[str]
) -> dict[str, Any]:
    """Click callback: repeated ``--param k=v`` into a dict, each value JSON if it parses."""
    return {key: parse_value(value) for key, value in (split_pair(v, "parameter") for v in values)}


#: ``--param KEY=VALUE``, repeatable: the parameters given on the command line, as a dict
#: (``create`` stores them as the deployment's defaults, ``run`` puts them over those).
param_option = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    callback=params_callback,
    help="A parameter; the value is read as JSON when it is JSON. Repeatable. "
    "For create: the deployment's default; for run: over the deployment's defaults.",
)


def env_callback(
    ctx: click.Context, param: click.Parameter, values: Iterable[str]
) -> dict[str, str]:
    """Click callback: repeated ``--env K=V`` into a dict of strings."""
    return dict(split_pair(v, "environment variable") for v in values)


def json_object_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, Any]:
    """Click callback: a JSON object given on the command line (``--params-json``)."""
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON ({error})") from None
    except RecursionError:
        raise click.BadParameter("not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object such as '{\"n\": 3}'")
    return data
