"""Run the engine as a local process of the agent's machine.

Each run gets its own session and process group, so cancelling it stops the flow and
every process it started (grandchildren included), and a Ctrl-C aimed at the agent does
not reach it. Its stdout and stderr go line by line to the run's log stream (and to the
agent's output when ``stream_output`` is on).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import IO

from broker import Broker, Deployment, FlowRun, ProcessInfrastructure as Settings

from . import InfrastructureError
from .logs import LineSink


def engine_command(run: FlowRun) -> list[str]:
    """``runq flow-run execute RUN_ID`` with this interpreter, so the agent's venv is used."""
    return [sys.executable, "-m", "control", "flow-run", "execute", str(run.id)]


class LogPump(threading.Thread):
    """Copies one pipe of the process into the run's log stream (one read per wake-up)."""

    def __init__(self, broker: Broker, run: FlowRun, pipe: IO[bytes], stream: str, echo: bool):
        super().__init__(name=f"runq-logs-{stream}", daemon=True)
        self.pipe, self.stream = pipe, stream
        self.sink = LineSink(broker, run, echo)

    def run(self) -> None:
        while chunk := os.read(self.pipe.fileno(), 65536):
            self.sink.feed(self.stream, chunk)
        self.sink.close()
        self.pipe.close()


class ProcessHandle:
    def __init__(self, process: subprocess.Popen, pumps: list[LogPump]) -> None:
        self.process, self.pumps = process, pumps
        self.infrastructure_id = f"{socket.gethostname()}:{process.pid}"

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            for pump in self.pumps:
                pump.join(timeout=5)  # the last lines are in the log before the state changes
        return code

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM to the whole process group, SIGKILL after the grace period."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # grandchildren that outlived the leader, too
        return self.process.wait()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


class ProcessInfrastructure:
    """Starts ``runq flow-run execute`` as a child process in its own session."""

    def __init__(self, broker: Broker, settings: Settings | None = None) -> None:
        self.broker = broker
        self.settings = settings or Settings()

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> ProcessHandle:
        command = [*self.settings.command, str(run.id)] if self.settings.command else engine_command(run)
        full_env = {**os.environ, **self.settings.env, **env, "PYTHONUNBUFFERED": "1"}
        try:
            process = subprocess.Popen(
                command,
                cwd=self.settings.working_dir or None,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise InfrastructureError(f"cannot start {command[0]!r}: {error.strerror or error}") from None
        echo = self.settings.stream_output
        pumps = [
            LogPump(self.broker, run, process.stdout, "stdout", echo),
            LogPump(self.broker, run, process.stderr, "stderr", echo),
        ]
        for pump in pumps:
            pump.start()
        return ProcessHandle(process, pumps)
