"""How runq's long-running commands write their log lines: for people, or for shippers.

``--log-format text`` (the default) is the human line agents have always printed:
``12:00:01.234 | INFO    | runq.agent - Claimed flow run ...``. ``--log-format json`` writes
one JSON object per line, as Kubernetes log shippers (Fluent Bit, Vector, Promtail)
expect: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
and where they apply ``run_id``, ``run_name``, ``stream``, ``queue`` and ``agent_id`` (from
a record's ``extra``, or the process-wide context :func:`add_log_context` sets, e.g. the
agent's id), plus ``exception`` with the traceback text. A message's newlines stay inside
its JSON string, so one event is always one line.

In JSON mode that holds for every line of both streams, not only runq's own records:
the records of other libraries (asyncio, uvicorn, warnings, anything logging to the root
logger), uncaught exceptions of any thread, and whatever is printed to ``sys.stdout`` or
``sys.stderr`` (an error line, a traceback) become records too. Child processes that
runq starts (the engines, the warm engine) inherit the format through ``RUNQ_LOG_FORMAT``
and echo a flow's output as records naming the run (engine/line_sink.py); every record
has the shape of engine/records.py.

Agents, the scheduler, the exporter and the UI server take ``log_format_option``; its
default is ``RUNQ_LOG_FORMAT``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import click

from runq.broker import InvalidInput
from runq.broker.settings import setting, variable
from runq.engine.records import JsonLines, json_stderr, unwrapped

FORMATS = ("text", "json")
#: Record attributes a JSON line carries when they are set (``extra={...}``).
CONTEXT_FIELDS = ("run_id", "run_name", "stream", "queue", "agent_id")
#: Loggers every service sends through its handler besides runq's own: asyncio's errors
#: (an exception no task retrieved) and warnings.warn, whatever else the caller names.
LIBRARY_LOGGERS = ("asyncio", "py.warnings")
LOG_FORMAT_ENV = variable("log_format")
TEXT_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"

F = TypeVar("F", bound=Callable[..., Any])
_current = {"format": "text"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
    stdout, one line each, in format ``fmt`` ("text" or "json"), with those of asyncio and
    warnings, and any other library's warnings and errors (the root logger's).

    The format is exported as ``RUNQ_LOG_FORMAT`` for the runq processes this one starts.
    In JSON mode the rest of the process's output becomes records too: see
    :func:`json_streams`.

    Raises:
        InvalidInput: ``fmt`` is neither.
    """
    global _handler
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown log format {fmt!r}: use text or json.")
    handler = logging.StreamHandler(unwrapped(sys.stdout))
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, "%H:%M:%S")
    )
    chosen = list(dict.fromkeys(loggers))
    for name in [*chosen, *LIBRARY_LOGGERS]:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        if name in chosen or logger.level == logging.NOTSET:
            logger.setLevel(level if name in chosen else logging.WARNING)
        logger.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]  # other libraries: never Python's bare last-resort line
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    os.environ[LOG_FORMAT_ENV] = fmt
    _handler, _current["format"] = handler, fmt
    if fmt == "json":
        json_streams()


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


# ---- JSON mode: everything else the process writes -------------------------------------


def json_streams() -> None:
    """Make the rest of this service's output records (JSON mode): each line printed to
    ``sys.stdout`` and ``sys.stderr`` (a command's error line, a traceback), its uncaught
    exceptions of any thread and exceptions Python could not raise, each one record with
    its traceback. Safe to call twice. (An engine wraps only its stderr, with
    runq.engine.records.json_stderr: a flow's own stdout and Python's hooks stay as
    they were.)"""
    if sys.stdout is not None and not isinstance(sys.stdout, JsonLines):
        sys.stdout = JsonLines(sys.stdout, "runq.stdout", "INFO")
    json_stderr()
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    logging.getLogger("runq").critical(
        "Uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, trace)
    )


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("runq").error(
        "Uncaught %s in thread %s: %s",
        args.exc_type.__name__,
        name,
        args.exc_value,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def _log_unraisable(unraisable: Any) -> None:
    error = unraisable.exc_value
    logging.getLogger("runq").error(
        "%s: %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=(unraisable.exc_type, error, unraisable.exc_traceback)
        if error is not None
        else None,
    )
