"""Run the engine as a local process of the agent's machine.

Each run gets its own session and process group, so cancelling it stops the flow and
every process it started (grandchildren included), and a Ctrl-C aimed at the agent does
not reach it. The engine ships its own output to the run's log stream (agent/output.py),
so nothing of the flow passes through the agent: the agent can stop, be killed or be
upgraded while its flows run on. With ``stream_output`` the engine also echoes each line
to the stdout it inherited, the agent's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from runq.broker import Broker, Deployment, FlowRun, ProcessInfrastructure
from runq.broker.settings import LOG_ECHO_ENV

from . import InfrastructureError, engine_command, this_interpreter


class ProcessHandle:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.infrastructure_id = f"{socket.gethostname()}:{process.pid}"

    def poll(self) -> int | None:
        return self.process.poll()

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM to the whole process group, SIGKILL after the grace period."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # grandchildren that outlived the leader, too
        return self.process.wait()

    def detach(self) -> None:
        """The agent is leaving: the process runs on, its engine reporting for itself."""

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


class ProcessRunner:
    """Starts ``runq flow-run execute`` (with the agent's own interpreter) as a child
    process in its own session, from a deployment's :class:`ProcessInfrastructure`."""

    def __init__(self, broker: Broker, settings: ProcessInfrastructure | None = None) -> None:
        self.broker = broker
        self.settings = settings or ProcessInfrastructure()

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> ProcessHandle:
        command = engine_command(run, this_interpreter(), self.settings.command)
        echo = self.settings.stream_output
        full_env = {
            **os.environ, **self.settings.env, **env,
            "PYTHONUNBUFFERED": "1", LOG_ECHO_ENV: "1" if echo else "0",
        }
        try:
            process = subprocess.Popen(
                command,
                cwd=self.settings.working_dir or None,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=None if echo else subprocess.DEVNULL,
                stderr=None,  # the engine's own start-up errors reach the agent's stderr
                start_new_session=True,
            )
        except OSError as error:
            raise InfrastructureError(f"cannot start {command[0]!r}: {error.strerror or error}") from None
        return ProcessHandle(process)
