"""The engine ships its own output: the flow's stdout and stderr never depend on the agent.

A flow writes to file descriptors 1 and 2, and so does every process it starts. The engine
points both at pipes of its own before the flow runs; a thread reads each pipe into a
LineSink (splitting, echo), and a shipper thread stores the lines in the run's log
stream. So an agent that stops, is killed or is upgraded while the flow runs takes
nothing with it: no write of the flow fails, no line is lost. What the engine inherited
as stdout and stderr (the agent's output, a container's log) only gets an echo, and an
echo target that breaks is dropped, never the flow.

Delivery is patient: the pipe readers never touch Redis, so a Redis that is away (a
restart, a stall, full memory) never blocks the flow; lines wait in the sink's backlog,
bounded in bytes, and the shipper retries with a doubling delay. If the backlog
overflows, the oldest lines go first and the log says how many were lost.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from runq.broker import Broker, FlowRun, FlowRunNotFound, RunqError
from runq.broker.settings import LOG_ECHO_ENV

from .line_sink import LineSink
from .records import echo_format_is_json, echo_record

#: ``RUNQ_LOG_ECHO=1``: echo the lines, prefixed with the run's name, to the stdout and
#: stderr the engine was started with (the process infrastructure sets it from
#: ``stream_output``; containers echo to their own log by default). Read by the engine
#: from RunqSettings.log_echo.
ECHO_ENV = LOG_ECHO_ENV
STREAMS = ((1, "stdout"), (2, "stderr"))


def note(message: str, fd: int = 2) -> None:
    """A line about the engine itself, to a descriptor that is not a captured pipe."""
    text = f"runq: {message}\n"
    if echo_format_is_json():  # the agent's --log-format json: a record, as its own lines
        text = echo_record(f"runq: {message}", None, {}, level="WARNING", logger="runq.engine")
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass


class OutputCapture:
    """Points fds 1 and 2 at pipes read into the run's LineSink; :meth:`stop` puts them back
    and stores what is left."""

    def __init__(self, broker: Broker, run: FlowRun, *, echo: bool) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = {fd: os.dup(fd) for fd, _ in STREAMS}  # the inherited stdout, stderr
        targets = {name: self.saved[fd] for fd, name in STREAMS} if echo else False
        self.sink = LineSink(broker, run, echo=targets, raise_errors=True, autostore=False)
        self.readers: list[threading.Thread] = []
        self.fed = threading.Event()
        self.done = threading.Event()
        self.shipper = threading.Thread(target=self._ship, name="runq-log-shipper", daemon=True)

    def start(self) -> None:
        for fd, name in STREAMS:
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            reader = threading.Thread(
                target=self._read, args=(read_end, name), name=f"runq-{name}", daemon=True
            )
            reader.start()
            self.readers.append(reader)
        self.shipper.start()

    def _read(self, read_end: int, name: str) -> None:
        try:
            while chunk := os.read(read_end, 65536):
                self.sink.feed(name, chunk)
                self.fed.set()
        finally:
            os.close(read_end)

    def _ship(self) -> None:
        """Store what the readers fed, retrying while Redis refuses (never the flow's
        problem)."""
        delay = 0.1
        while not self.done.is_set():
            self.fed.wait(0.5)
            self.fed.clear()
            try:
                self.sink.flush()
                delay = 0.1
            except FlowRunNotFound:
                return  # the run was deleted: nothing will ever be stored
            except RunqError as error:
                note(
                    f"log lines not stored yet ({error}); retrying in {delay:.1f} s", self.saved[2]
                )
                self.done.wait(delay)
                delay = min(delay * 2, 2.0)

    def stop(self, patience: float, grace: float = 2.0) -> None:
        """Give fds 1 and 2 back, read what the pipes still hold, store everything.

        Processes the flow started and left running keep the pipes open: their later
        output is not waited for beyond ``grace``; storing is retried for ``patience``."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)  # closes this process's write end of each pipe
        deadline = time.monotonic() + grace
        for reader in self.readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        self.done.set()
        self.fed.set()
        self.shipper.join()
        self._store_the_rest(patience)
        for saved in self.saved.values():
            os.close(saved)

    def _store_the_rest(self, patience: float) -> None:
        deadline, delay = time.monotonic() + patience, 0.1
        while True:
            try:
                self.sink.close()
                return
            except FlowRunNotFound:
                return
            except RunqError as error:
                if time.monotonic() + delay > deadline:
                    note(f"{self.sink.waiting} log lines of this run could not be stored: {error}")
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
