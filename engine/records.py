"""The JSON log record: one shape for every line runq writes in JSON mode.

``--log-format json`` (``RUNQ_LOG_FORMAT=json``, which the engines and the warm engine
inherit from their agent) makes each line a JSON object as Kubernetes log shippers
(Fluent Bit, Vector, Promtail) expect: ``time`` (UTC, ISO 8601 with milliseconds),
``level``, ``logger``, ``message``, and where they apply ``run_id``, ``run_name``,
``stream``, ``queue`` and ``agent_id``. The services' records (control/log_format.py),
an engine's own lines on stderr (:class:`JsonLines`) and the flow output an engine or an
infrastructure echoes (:func:`echo_record`) are all built by :func:`json_line`, so a
shipper meets one shape whatever wrote the line.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from runq.broker.errors import InvalidInput
from runq.broker.settings import setting

#: Characters of a line without its end kept before it is written as a record anyway.
PARTIAL_LINE_MAX = 65536


def json_line(message: str, logger: str, level: str, **fields: Any) -> str:
    """One JSON record (no newline): the time, level, logger and message, then the
    ``fields`` that are set."""
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    record.update((key, value) for key, value in fields.items() if value is not None)
    return json.dumps(record, ensure_ascii=False, default=str)


def echo_format_is_json() -> bool:
    """Whether echoed lines are JSON records: ``RUNQ_LOG_FORMAT`` (a bad value: text)."""
    try:
        return bool(setting("log_format") == "json")
    except InvalidInput:
        return False


def echo_record(
    line: str,
    stream: str | None,
    fields: Mapping[str, str | None],
    *,
    level: str = "INFO",
    logger: str = "runq.flow_run",
) -> str:
    """One echoed line as a JSON record and its newline, in the shape of the agent's
    own records: the line as the message, the stream, and the run's id, name, queue and
    agent where known."""
    known = {key: value for key, value in fields.items() if value is not None}
    return json_line(line, logger, level, **{"stream": stream, **known}) + "\n"


def json_stderr() -> None:
    """Make each line this process prints on ``sys.stderr`` a record (an engine's or the
    warm engine's own lines, when ``RUNQ_LOG_FORMAT`` is json). Safe to call twice; a
    flow's output, written while fd 2 is the engine's capture pipe, passes as it is (see
    :class:`JsonLines`)."""
    if sys.stderr is not None and not isinstance(sys.stderr, JsonLines):
        sys.stderr = JsonLines(sys.stderr, "runq.stderr", "ERROR")


class JsonLines(io.TextIOBase):
    """A text stream that writes each line given to it as a JSON record on ``target``.

    Lines are wrapped while the process's descriptor still is the one it started with:
    an engine points fd 1 and 2 at its capture pipes while a flow runs, and what is
    printed then is the run's output, passed on as it is (stored as written; its echo is
    a record already).
    ``unwrapped`` is the target itself, for writers whose lines are records already.
    """

    def __init__(self, target: IO[str], logger: str, level: str) -> None:
        super().__init__()
        self.unwrapped, self.logger, self.level = target, logger, level
        self._pending = ""
        self._lock = threading.RLock()
        self._home = _identity(target)

    def write(self, text: str) -> int:
        with self._lock:
            if _identity(self.unwrapped) != self._home:  # redirected: the run's own output
                self.unwrapped.write(text)
                return len(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            if len(self._pending) > PARTIAL_LINE_MAX:
                lines.append(self._pending)
                self._pending = ""
            for line in lines:
                self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:  # a partial line flushed (a prompt, a progress bar)
                line, self._pending = self._pending, ""
                self._emit(line)
            self.unwrapped.flush()

    def _emit(self, line: str) -> None:
        self.unwrapped.write(json_line(line.removesuffix("\r"), self.logger, self.level) + "\n")

    def __getattr__(self, name: str) -> Any:
        """Anything else (``reconfigure``, ``name``, ``mode``...) is the target's."""
        if name == "unwrapped":
            raise AttributeError(name)
        return getattr(self.unwrapped, name)

    def fileno(self) -> int:
        return self.unwrapped.fileno()

    def isatty(self) -> bool:
        return False  # its lines are records: nothing that draws on a terminal

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.unwrapped, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.unwrapped, "errors", "strict")

    @property
    def buffer(self) -> Any:
        """The target's bytes, unwrapped: what writes bytes writes records itself."""
        return getattr(self.unwrapped, "buffer")


def unwrapped(stream: IO[str]) -> IO[str]:
    """The stream a :class:`JsonLines` writes to (any other stream: itself)."""
    return stream.unwrapped if isinstance(stream, JsonLines) else stream


def _identity(stream: IO[str]) -> tuple[int, int] | None:
    """The device and inode behind ``stream``'s descriptor now (None without one)."""
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return stat.st_dev, stat.st_ino
