"""How runq's long-running commands write their log lines: for people, or for shippers.

``--log-format text`` (the default) is the human line agents have always printed:
``12:00:01.234 | INFO    | runq.agent - Claimed flow run ...``. ``--log-format json`` writes
one JSON object per line, as Kubernetes log shippers (Fluent Bit, Vector, Promtail)
expect: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
and where they apply ``run_id``, ``queue`` and ``agent_id`` (from a record's ``extra``, or
the process-wide context :func:`add_log_context` sets, e.g. the agent's id), plus
``exception`` with the traceback text. A message's newlines stay inside its JSON string,
so one event is always one line.

Agents, the scheduler, the exporter and the UI server take ``log_format_option``; its
default is ``RUNQ_LOG_FORMAT``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

import click

from runq.broker import InvalidInput
from runq.broker.settings import setting

FORMATS = ("text", "json")
#: Record attributes a JSON line carries when they are set (``extra={...}``).
CONTEXT_FIELDS = ("run_id", "queue", "agent_id")
TEXT_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"

F = TypeVar("F", bound=Callable[..., Any])
_current = {"format": "text"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                data[field] = str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class ContextFilter(logging.Filter):
    """Adds fixed fields (the agent's id) to every record that does not carry its own."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


_handler: logging.StreamHandler[Any] | None = None


def configure_logging(
    fmt: str, level: int = logging.INFO, loggers: Iterable[str] = ("runq",)
) -> None:
    """Send the records of ``loggers`` (runq's own by default; the UI adds uvicorn's) to
    stdout, one line each, in format ``fmt`` ("text" or "json").

    Raises:
        InvalidInput: ``fmt`` is neither.
    """
    global _handler
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown log format {fmt!r}: use text or json.")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, "%H:%M:%S"))
    for name in loggers:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    _handler, _current["format"] = handler, fmt


def add_log_context(**fields: str) -> None:
    """Fields every later line carries (JSON only shows them): ``agent_id=agent.id``."""
    if _handler is not None:
        _handler.addFilter(ContextFilter(dict(fields)))


def say(message: str, logger: str = "runq") -> None:
    """A line for the operator: printed as is in text mode, a log record in JSON mode
    (so a shipper never meets a line that is not JSON)."""
    if _current["format"] == "json":
        logging.getLogger(logger).info(message)
    else:
        click.echo(message)


def json_logs() -> bool:
    """Whether lines are JSON now (banners and other decoration are left out)."""
    return _current["format"] == "json"


def _default_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is not None:
        return value
    try:
        return str(setting("log_format"))
    except InvalidInput as error:
        raise click.BadParameter(str(error)) from None


def log_format_option(function: F) -> F:
    """``--log-format [text|json]``, default ``RUNQ_LOG_FORMAT`` else text."""
    return click.option(
        "--log-format",
        type=click.Choice(FORMATS),
        callback=_default_format,
        help="Log lines: text (for people) or json (one object per line, for log "
        "shippers). Default: RUNQ_LOG_FORMAT, else text.",
    )(function)
