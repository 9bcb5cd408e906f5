"""Turning output chunks into the run's log lines.

Each infrastructure reads its output its own way (a pipe, a container's attach stream,
a pod's log), and the engine captures its own; all of them hand chunks to a LineSink,
which splits them into lines, stores each chunk's complete lines in one round trip (a
quiet flow's line is stored at once, a chatty flow's lines batch themselves) and echoes
them when asked, control sequences stripped: as ``NAME | line`` for people, or, when
``RUNQ_LOG_FORMAT`` is json (the agent's ``--log-format json``, which its engines
inherit), as one JSON record per line naming the run, its name and the stream, so a log
shipper never meets a line that is not JSON, whatever the flow printed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Mapping
from typing import IO, cast
from uuid import UUID

from runq.broker import Broker, FlowRun
from runq.broker.errors import FlowRunNotFound, InvalidInput
from runq.broker.settings import AGENT_ID_ENV
from runq.broker.text import (
    LOG_LINE_MAX_BYTES,
    LOG_LINE_OVERHEAD,
    LOG_STREAMS,
    strip_controls,
    utf8_cut,
)

from .records import echo_format_is_json, echo_record

#: Where echoed lines go: ``False`` nowhere; ``True`` sys.stdout (stdout lines) and
#: sys.stderr (the others); a file descriptor or a text file (every line); or a mapping
#: stream -> file descriptor or text file (a stream missing from it is not echoed).
Echo = bool | int | IO[str] | Mapping[str, int | IO[str]] | None

#: Lines a LineSink keeps while storing them fails (``raise_errors``), in bytes as a log
#: budget costs them; beyond it the oldest are dropped and the log says how many.
BACKLOG_MAX_BYTES = 4 * 1024 * 1024
STORE_BATCH_BYTES = 1024 * 1024  # lines per append_logs call of a store, in bytes
_SYS_STDOUT, _SYS_STDERR = object(), object()  # echo=True: sys.stdout / sys.stderr at write time


class LineSink:
    """The run's log stream, fed with raw output chunks per stream (stdout, stderr).

    ``LineSink(broker, run, echo)``: ``run`` a FlowRun, or a run id with ``name=`` (the
    echo's ``NAME | `` prefix; ``prefix=""`` for none); ``echo`` see :data:`Echo`.
    ``json_echo`` (default: ``RUNQ_LOG_FORMAT`` is json) echoes records instead (see
    :func:`echo_record`).

    ``feed(stream, chunk)`` splits ``chunk`` (bytes) into lines, echoes the complete
    ones and stores them; a partial last line waits for its end, but never grows past
    ``LOG_LINE_MAX_BYTES``: a longer line goes in pieces of at most that size (cut
    between UTF-8 characters), so the cost is linear in the output, whatever its shape,
    and the memory per stream is bounded. ``close()`` stores the partial lines left.
    With ``store=False`` it only splits and echoes (a container's output, which its
    engine stores itself). With ``autostore=False`` feeding never touches Redis (it only splits, echoes and
    queues); the caller stores with ``flush()`` from a thread of its own, so a Redis that
    is slow or away never blocks the reader of the output (nor the flow writing it).

    Echo never raises: a target that fails (EPIPE from a closed pipe, a closed file,
    EBADF...) is not written to again; the lines are still stored. What is echoed has its
    terminal control sequences stripped (``broker.text.strip_controls``); what is stored
    is the output as it was.

    Storing failures:

    - ``raise_errors=False`` (infrastructures): logs are best effort. A failed store is
      reported with one line on stderr (once per outage, then once with the count lost
      when storing works again) and its lines are dropped.
    - ``raise_errors=True`` (the engine): ``feed`` (with autostore), ``flush`` and
      ``close`` raise what ``Broker.append_logs`` raised (BrokerUnavailable,
      RedisOutOfMemory, ...), and the lines not stored stay in the backlog (``waiting``
      counts them): at most ``backlog_bytes``, beyond which the oldest are dropped and
      counted in an ``engine`` line stored ahead of the rest. The next store starts with
      the backlog, so a caller retries with ``flush()`` (on its own backoff). Lines go in
      slices of about 1 MiB, each off the backlog once Redis took it: a line is stored
      twice only if a connection broke after Redis wrote it. FlowRunNotFound (the run is
      gone, nothing will ever be stored) empties the backlog before it is raised.

    One sink may be fed from several threads; storing holds a second lock, so feeding
    goes on while a store waits on Redis.
    """

    def __init__(
        self,
        broker: Broker,
        run: FlowRun | str | UUID,
        echo: Echo = False,
        *,
        name: str | None = None,
        prefix: str | None = None,
        raise_errors: bool = False,
        autostore: bool = True,
        backlog_bytes: int = BACKLOG_MAX_BYTES,
        store: bool = True,
        json_echo: bool | None = None,
    ) -> None:
        self.broker = broker
        self.store = store  # False: split and echo only (the engine stores the lines)
        queue = None
        if isinstance(run, FlowRun):
            self.run_id, name, queue = str(run.id), name or run.name, run.work_queue_name
        else:
            self.run_id = str(run)
        # a name stored before names refused control characters must not forge lines
        shown = strip_controls(name or self.run_id)
        self.prefix = (f"{shown} | " if prefix is None else prefix).encode()
        self.json_echo = echo_format_is_json() if json_echo is None else json_echo
        self.record_fields = {
            "run_id": self.run_id,
            "run_name": name or None,
            "queue": queue,
            "agent_id": os.environ.get(AGENT_ID_ENV) or None,
        }
        self.raise_errors, self.autostore = raise_errors, autostore
        self.backlog_bytes = backlog_bytes
        self.pending: dict[str, bytearray] = {}  # each stream's partial last line
        #: Lines not stored yet, oldest first, as (sequence number, stream, line).
        self.backlog: deque[tuple[int, str, str]] = deque()
        self._backlog_size = self._seq = self._storing_upto = 0
        self._lost = 0  # lines dropped: backlog overflow, or failed stores (best effort)
        self._lost_bytes = 0  # what they would have cost in the log
        self._failing = False  # best effort: the failure was reported, not the recovery
        self._lock = threading.Lock()  # the partial lines, the backlog, the echo
        self._store_lock = threading.Lock()
        self._echo: dict[str, object] = {}
        self._echo_default: object = None
        if echo is True:  # looked up at each write: whatever sys.stdout is then
            self._echo = {"stdout": _SYS_STDOUT}
            self._echo_default = _SYS_STDERR
        elif isinstance(echo, int) and not isinstance(echo, bool):
            self._echo_default = echo
        elif isinstance(echo, Mapping):
            self._echo = dict(echo)
        elif echo:  # one text file for every stream
            self._echo_default = echo

    # ---- feeding ----------------------------------------------------------------------

    def feed(self, stream: str, chunk: bytes) -> None:
        """Echo the complete lines of ``chunk`` and store them (unless ``autostore`` is
        off); keep a partial last line for later.

        Raises:
            InvalidInput: ``stream`` is not one of broker.text.LOG_STREAMS.
        """
        if stream not in LOG_STREAMS:
            raise InvalidInput(f"Invalid log stream {stream!r}: one of {', '.join(LOG_STREAMS)}.")
        with self._lock:
            self._emit(stream, self._split(stream, chunk))
        if self.autostore:
            self._store()

    def flush(self) -> int:
        """Store the lines not stored yet; returns how many were stored."""
        return self._store()

    def close(self) -> None:
        """Store what is left: each stream's last line without a newline, the backlog."""
        with self._lock:
            for stream, rest in self.pending.items():
                if rest:
                    self._emit(stream, [bytes(rest)])
            self.pending.clear()
        self._store()

    @property
    def waiting(self) -> int:
        """How many lines are waiting to be stored (the backlog)."""
        return len(self.backlog)

    def _split(self, stream: str, chunk: bytes) -> list[bytes]:
        """The complete lines of ``chunk`` (with the stream's partial line before it), and
        pieces of LOG_LINE_MAX_BYTES of a line too long to wait for its end."""
        pending = self.pending.setdefault(stream, bytearray())
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if pending:
                pending += chunk[start:end]
                lines += _pieces(pending)
                pending.clear()
            else:
                lines += _pieces(memoryview(chunk)[start:end])
            start = end + 1
        if start < len(chunk):
            pending += chunk[start:]
            if len(pending) > LOG_LINE_MAX_BYTES:
                *full, rest = _pieces(pending, keep_rest=True)
                lines += full
                pending[:] = rest  # at most LOG_LINE_MAX_BYTES stay
        return lines

    def _emit(self, stream: str, raw_lines: list[bytes]) -> None:
        """Echo lines and add them to the backlog (the lock is held)."""
        if not raw_lines:
            return
        lines = [raw.decode("utf-8", "replace").removesuffix("\r") for raw in raw_lines]
        self._write_echo(stream, lines)
        if not self.store:
            return
        for line in lines:
            self._seq += 1
            self.backlog.append((self._seq, stream, line))
            self._backlog_size += len(line) + LOG_LINE_OVERHEAD
        while self._backlog_size > self.backlog_bytes and len(self.backlog) > 1:
            seq, _, line = self.backlog.popleft()
            self._backlog_size -= len(line) + LOG_LINE_OVERHEAD
            if seq > self._storing_upto:  # a line being stored is counted if that fails
                self._count_lost(line)

    # ---- echo -------------------------------------------------------------------------

    def _write_echo(self, stream: str, lines: list[str]) -> None:
        chosen = target = self._echo.get(stream, self._echo_default)
        if target is None:
            return
        if target is _SYS_STDOUT or target is _SYS_STDERR:
            target = sys.stdout if target is _SYS_STDOUT else sys.stderr
        if self.json_echo:
            target = getattr(target, "unwrapped", target)  # a stream that makes records
            data = "".join(
                echo_record(strip_controls(line), stream, self.record_fields) for line in lines
            ).encode("utf-8", "replace")
        else:
            data = _prefixed(self.prefix, "".join(f"{strip_controls(line)}\n" for line in lines))
        try:
            if isinstance(target, int):
                view = memoryview(data)
                while view:
                    view = view[os.write(target, view) :]
            else:
                text_file = cast(IO[str], target)
                text_file.write(data.decode("utf-8", "replace"))
                text_file.flush()
        except BlockingIOError:
            pass  # a non-blocking target that is full: this echo is skipped, not the next
        except (OSError, ValueError):  # EPIPE, EBADF, EIO, a closed file: echo no more
            self._disable_echo(chosen)

    def _disable_echo(self, target: object) -> None:
        self._echo = {stream: (None if t is target else t) for stream, t in self._echo.items()}
        if self._echo_default is target:
            self._echo_default = None

    # ---- storing ----------------------------------------------------------------------

    def _store(self) -> int:
        """Store the backlog, oldest first, in slices of about a MiB; each slice leaves the
        backlog once Redis took it. See the class docstring for failures."""
        stored = 0
        with self._store_lock:  # one store at a time; feeding goes on meanwhile
            while True:
                with self._lock:
                    batch, size = [], 0
                    for entry in self.backlog:
                        batch.append(entry)
                        size += len(entry[2]) + LOG_LINE_OVERHEAD
                        if size >= STORE_BATCH_BYTES:
                            break
                    if not batch:
                        break
                    self._storing_upto = batch[-1][0]
                    lost, lost_bytes = (
                        (self._lost, self._lost_bytes) if self.raise_errors else (0, 0)
                    )
                lines = [(stream, line) for _, stream, line in batch]
                try:  # lines lost before these: a notice goes first, with their count
                    self.broker.append_logs(self.run_id, lines, lost=lost, lost_bytes=lost_bytes)
                except Exception as error:
                    self._failed(batch, error)
                    return stored
                with self._lock:
                    self._forget(batch)
                    self._lost -= lost
                    self._lost_bytes -= lost_bytes
                stored += len(batch)
            if self._failing and stored:
                self._failing = False
                with self._lock:
                    lost, self._lost, self._lost_bytes = self._lost, 0, 0
                self._notice(
                    f"runq: log lines of {self.run_id} are stored again "
                    f"({lost} lines lost meanwhile)",
                    "INFO",
                )
        return stored

    def _failed(self, batch: list[tuple[int, str, str]], error: Exception) -> None:
        gone = isinstance(error, FlowRunNotFound)  # the run is gone: never storable
        with self._lock:
            self._storing_upto = 0
            first = self.backlog[0][0] if self.backlog else self._seq + 1
            for seq, _, line in batch:
                if seq < first:  # dropped from the backlog meanwhile
                    self._count_lost(line)
            if gone or not self.raise_errors:
                for _, _, line in self.backlog if not gone else ():
                    self._count_lost(line)
                self.backlog.clear()
                self._backlog_size = 0
        if self.raise_errors:
            raise error
        if not self._failing and not gone:
            self._failing = True
            self._notice(f"runq: could not store log lines of {self.run_id}: {error}", "WARNING")

    def _notice(self, message: str, level: str) -> None:
        """A line about storing, on stderr: a record naming the run in JSON mode."""
        if self.json_echo:
            fields = {**self.record_fields, "stream": None}
            text = echo_record(message, None, fields, level=level, logger="runq.logs")
            getattr(sys.stderr, "unwrapped", sys.stderr).write(text)
        else:
            print(message, file=sys.stderr)

    def _count_lost(self, line: str) -> None:
        """One line that will never be stored (the lock is held)."""
        self._lost += 1
        self._lost_bytes += len(line.encode("utf-8", "replace")) + LOG_LINE_OVERHEAD

    def _forget(self, batch: list[tuple[int, str, str]]) -> None:
        """Take the lines of ``batch`` (stored) off the backlog (the lock is held)."""
        upto = batch[-1][0]
        while self.backlog and self.backlog[0][0] <= upto:
            _, _, line = self.backlog.popleft()
            self._backlog_size -= len(line) + LOG_LINE_OVERHEAD
        self._storing_upto = 0


def _prefixed(prefix: bytes, text: str) -> bytes:
    """Each line of ``text`` (newline-terminated) with ``prefix`` before it, as bytes."""
    data = text.encode("utf-8", "replace")
    if not prefix:
        return data
    return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


def _pieces(line: bytes | bytearray | memoryview, keep_rest: bool = False) -> list[bytes]:
    """``line`` in pieces of at most LOG_LINE_MAX_BYTES, cut between UTF-8 characters.

    ``keep_rest``: the last element is what is left after the full pieces (possibly
    empty), for the caller to keep as the partial line.
    """
    size = len(line)
    if size <= LOG_LINE_MAX_BYTES and not keep_rest:
        return [bytes(line)]
    pieces, start = [], 0
    while size - start > LOG_LINE_MAX_BYTES:
        end = utf8_cut(line, start, LOG_LINE_MAX_BYTES)
        pieces.append(bytes(line[start:end]))
        start = end
    pieces.append(bytes(line[start:]))
    return pieces
