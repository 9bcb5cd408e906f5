"""What every ``runq`` command shares: the broker connection, errors, output and parsing.

Commands stay thin (parse, call the broker, print) because everything they have in
common lives here: the ``--api`` and ``--output`` options, the one-line error contract,
JSON and rich-table output, relative times, and the parameter types for durations,
ISO-8601 times and ``k=v`` pairs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pprint
import re
import shlex
import sys
import traceback
from datetime import datetime
from typing import Any, Callable, Iterable, NoReturn, Sequence

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runq.broker import Broker, FlowRun, InvalidInput
from runq.broker.models import is_utf8
from runq.broker.schedules import parse_interval
from runq.broker.settings import RunqSettings, debug_enabled

#: A queue is healthy when an agent polled it this recently and none of its runs is late.
HEALTHY_POLL_SECONDS = 60.0
#: Width used for tables when stdout is not a terminal, so piped ids are never truncated.
PIPE_WIDTH = 200


# ---- errors ---------------------------------------------------------------------------


def one_line(text: str) -> str:
    """Collapse a message (a pydantic error spans lines) into the single line we print."""
    return " ".join(str(text).split())


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\r``, ``\\x1b``): it stays on one line
    and cannot drive the terminal, whatever an operator's argument held."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``; the traceback only when debugging.

    Call it from an ``except`` block so ``RUNQ_DEBUG=1`` can show where the error came from.
    """
    if debug_enabled() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    click.echo(printable(one_line(message)), err=True)
    raise click.exceptions.Exit(code)


# ---- the broker -----------------------------------------------------------------------

CLUSTER = "runq.cluster"  # ctx.meta key: --cluster was given


def _remember_cluster(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[CLUSTER] = True


def api_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api URL`` and ``--cluster`` to a command; see :func:`connect_broker`."""
    command = click.option(
        "--cluster",
        is_flag=True,
        expose_value=False,
        callback=_remember_cluster,
        help="The --api URL is a node of a Redis Cluster (same as a redis+cluster:// URL). "
        "Default: RUNQ_REDIS_CLUSTER.",
    )(command)
    return click.option(
        "--api",
        metavar="URL",
        help="Redis URL (redis://, rediss://, unix://, redis+cluster://). "
        "Default: RUNQ_API_URL, else the embedded local server.",
    )(command)


def connect_broker(api: str | None) -> Broker:
    """The Broker named by ``--api`` / ``--cluster`` (or the environment, or embedded)."""
    ctx = click.get_current_context(silent=True)
    cluster = bool(ctx and ctx.find_root().meta.get(CLUSTER))
    return Broker.from_env(api or None, cluster=cluster)


def with_broker(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api`` to a command and hand it a connected Broker as ``broker``.

    The connection is made only after Click has parsed the arguments, so a usage error
    never waits on Redis, and it is closed however the command ends.
    """

    @api_option
    @functools.wraps(command)
    def wrapper(*args: Any, api: str | None, **kwargs: Any) -> Any:
        refuse_undecodable(kwargs.values())
        broker = connect_broker(api)
        try:
            return command(*args, broker=broker, **kwargs)
        finally:
            broker.close()

    return wrapper


def refuse_undecodable(values: Iterable[Any]) -> None:
    """Refuse text a shell passed as bytes that are not UTF-8: Redis could not store it.

    Python decodes such arguments with surrogate escapes. They are refused here, before
    the connection, whatever the command would do with them: a command's own strings,
    repeated options (tuples) and ``k=v`` options (dicts; JSON values nested in them are
    the models' to check).
    """
    for value in values:
        if isinstance(value, dict):
            texts = [text for pair in value.items() for text in pair]
        elif isinstance(value, (tuple, list)):
            texts = list(value)
        else:
            texts = [value]
        for text in texts:
            if isinstance(text, str) and not is_utf8(text):
                raise InvalidInput(f"Invalid argument {text!r}: it is not valid UTF-8 text.")


def deployment_namer(broker: Broker, runs: Sequence[FlowRun]) -> Callable[[FlowRun], str]:
    """A function giving a run's deployment name (its id once the deployment is deleted)."""
    known = {str(d.id): d.name for d in broker.list_deployments()} if runs else {}

    def name_of(run: FlowRun) -> str:
        if run.deployment_id is None:
            return ""
        return known.get(str(run.deployment_id), str(run.deployment_id))

    return name_of


def as_shown(run: FlowRun, now: datetime) -> FlowRun:
    """The run with its state named "Late" when it is late (a display name only)."""
    if not run.is_late(now, late_after_seconds()):
        return run
    return run.model_copy(update={"state": run.state.model_copy(update={"name": "Late"})})


def late_after_seconds() -> float:
    """``RUNQ_LATE_RUNS_AFTER_SECONDS``, validated: how overdue a run must be to be late."""
    return RunqSettings.from_env().late_runs_after_seconds


# ---- output ---------------------------------------------------------------------------

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="Print a table for people or JSON for scripts.",
)


def wants_json(output: str) -> bool:
    return output.lower() == "json"


def to_json(value: Any) -> Any:
    """A model (or a list of them) as plain JSON data with the models' field names."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


def console() -> Console:
    """A rich console on the current stdout; wide when piped, so ids stay whole."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=sys.stdout, width=width, highlight=False)


def new_table(title: str | None, columns: Sequence[str], caption: str | None = None) -> Table:
    """A table in the style of Prefect's CLI tables; ID columns are the last to shrink."""
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, no_wrap=column.endswith("ID"))
    return table


def add_row(table: Table, *values: Any) -> None:
    """Add a row of plain text: names such as ``a[b]`` must never be read as rich markup."""
    table.add_row(*(value if isinstance(value, Text) else Text(str(value)) for value in values))


def marked(value: str, mark: bool) -> Text:
    """``value (**)`` with the mark in red, as Prefect flags paused queues and late runs."""
    text = Text(value)
    if mark:
        text.append(" (**)", style="red")
    return text


def print_table(table: Table) -> None:
    console().print(table)


def render_record(kind: str, fields: dict[str, Any]) -> str:
    """``Kind(field=value, ...)``, one field a line: the look of Prefect's ``inspect``."""
    lines = [f"{kind}("]
    for key, value in fields.items():
        indent = " " * (len(key) + 5)
        text = pprint.pformat(value, width=max(40, 96 - len(indent)), sort_dicts=False)
        lines.append(f"    {key}={text.replace(chr(10), chr(10) + indent)},")
    lines.append(")")
    return "\n".join(lines)


def quoted(value: str) -> str:
    """A shell word in single quotes, as in the hints we print (``-q 'my-queue'``)."""
    return f"'{value}'" if "'" not in value else shlex.quote(value)


# ---- times ----------------------------------------------------------------------------


def absolute(moment: datetime | None) -> str:
    """A timestamp in the local timezone, to the second."""
    if moment is None:
        return "never"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def relative(moment: datetime | None, now: datetime) -> str:
    """``3 minutes ago`` or ``in 2 hours``: how far ``moment`` is from ``now``."""
    if moment is None:
        return "never"
    seconds = (moment - now).total_seconds()
    distance = round(abs(seconds))  # 599.9 s after "--start-in 10m" still reads "10 minutes"
    if distance < 1:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if distance >= size:
            count = int(distance // size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    raise AssertionError("unreachable")


def both(moment: datetime | None, now: datetime) -> str:
    """Relative and absolute together: ``2 minutes ago (2024-05-01 10:00:00 UTC)``."""
    if moment is None:
        return "never"
    return f"{relative(moment, now)} ({absolute(moment)})"


# ---- parameter types ------------------------------------------------------------------

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


class Duration(click.ParamType):
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


class IsoDateTime(click.ParamType):
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


def seconds_text(seconds: float) -> str:
    """A duration for people: ``1h30m``, ``45s``."""
    remaining = int(round(seconds))
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def hours_text(hours: float) -> str:
    """``1 hour``, ``12 hours``, ``0.5 hours``."""
    shown = f"{hours:g}"
    return f"{shown} hour" if hours == 1 else f"{shown} hours"
