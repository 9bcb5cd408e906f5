"""Run the engine as a local process of the agent's machine, warm or cold.

Each run gets its own session and process group, so cancelling it stops the flow and
every process it started (grandchildren included), and a Ctrl-C aimed at the agent does
not reach it. The engine ships its own output to the run's log stream (engine/output.py),
so nothing of the flow passes through the agent: the agent can stop, be killed or be
upgraded while its flows run on. With ``stream_output`` the engine also echoes each line
to the stdout it inherited, the agent's.

By default a run is forked by the agent's warm engine (:mod:`.warm_client`,
:mod:`.warm_engine`), which has the engine imported already: milliseconds instead of a
Python start-up. The cold way, one ``python -m runq flow-run execute`` per run, serves
runs with their own engine command, runs whose environment changes how Python starts,
deployments with ``warm_engine: false`` or ``PYTHONHASHSEED=random`` in their own
environment (see :func:`wants_own_hash_seed`), agents started with ``--no-warm-engine``,
and any run the warm engine cannot take at that moment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable

from runq.broker import Broker, Deployment, FlowRun, ProcessInfrastructure
from runq.broker.settings import LOG_ECHO_ENV

from . import ENGINE_ARGS, Infrastructure, InfrastructureError, engine_command, this_interpreter
from .warm_client import WarmEngine, WarmHandle

__all__ = ["ProcessHandle", "ProcessRunner", "WarmEngine", "WarmHandle", "with_warm_engine"]

InfrastructureFactory = Callable[[Deployment | None, Broker], Infrastructure]


class ProcessHandle:
    """A run started the cold way: a child process of the agent."""

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
    """Starts the engine of a run from a deployment's :class:`ProcessInfrastructure`:
    forked by ``warm`` (the agent's warm engine) when it can, else as a child process
    ``runq flow-run execute`` of the agent's own interpreter, in its own session."""

    def __init__(
        self,
        broker: Broker,
        settings: ProcessInfrastructure | None = None,
        warm: WarmEngine | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or ProcessInfrastructure()
        self.warm = warm

    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> ProcessHandle | WarmHandle:
        echo = self.settings.stream_output
        full_env = {
            **os.environ,
            **self.settings.env,
            **env,
            "PYTHONUNBUFFERED": "1",
            LOG_ECHO_ENV: "1" if echo else "0",
        }
        warm = self.settings.warm_engine and not wants_own_hash_seed(self.settings.env)
        if self.warm is not None and warm and self.settings.command is None:
            handle = self.start_warm(run, full_env)
            if handle is not None:
                return handle
        return self.start_cold(run, full_env)

    def start_warm(self, run: FlowRun, env: dict[str, str]) -> WarmHandle | None:
        """Fork the run's engine in the warm engine; None when it cannot take it now."""
        assert self.warm is not None
        try:
            cwd = os.path.abspath(self.settings.working_dir or os.getcwd())
        except OSError:
            return None  # the agent's own directory is gone: the cold path says why
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            stdout = 1 if self.settings.stream_output and usable(1) else devnull
            stderr = 2 if usable(2) else devnull
            return self.warm.start_run(
                [*ENGINE_ARGS, str(run.id)], env, cwd, (devnull, stdout, stderr)
            )
        finally:
            os.close(devnull)

    def start_cold(self, run: FlowRun, env: dict[str, str]) -> ProcessHandle:
        command = engine_command(run, this_interpreter(), self.settings.command)
        try:
            process = subprocess.Popen(
                command,
                cwd=self.settings.working_dir or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=None if self.settings.stream_output else subprocess.DEVNULL,
                stderr=None,  # the engine's own start-up errors reach the agent's stderr
                start_new_session=True,
            )
        except OSError as error:
            raise InfrastructureError(
                f"cannot start {command[0]!r}: {error.strerror or error}"
            ) from None
        return ProcessHandle(process)


def wants_own_hash_seed(deployment_env: dict[str, str]) -> bool:
    """True when a deployment's own environment asks for ``PYTHONHASHSEED=random``: a
    ``hash()`` seed of each run's own, which only a fresh interpreter draws.

    An interpreter fixes its seed when it starts, and a running one cannot change it:
    every str caches its hash and every dict and set is laid out by it, so a new seed
    after the fork would lose keys. Runs forked by one warm engine therefore share its
    seed (each warm engine, per agent and per restart, draws its own); a new interpreter
    per run would cost the ~0.5 s of CPU and ~45 MB of private memory that the warm
    engine exists to save, so only the runs that ask for it pay: they start cold, as
    they would with the same setting on any agent. A fixed seed (``PYTHONHASHSEED=N``)
    needs no rule here: it starts cold unless the warm engine has the same one
    (START_UP_PREFIXES), so ``hash()`` gives the same values either way."""
    return deployment_env.get("PYTHONHASHSEED", "").strip() == "random"


def usable(fd: int) -> bool:
    """True when ``fd`` is open (an agent started with its stdout closed has none to give)."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def with_warm_engine(
    factory: InfrastructureFactory, warm: WarmEngine | None
) -> InfrastructureFactory:
    """``factory`` whose process runners start runs in ``warm`` (the agent's own)."""
    if warm is None:
        return factory

    def infrastructure_for(deployment: Deployment | None, broker: Broker) -> Infrastructure:
        runner = factory(deployment, broker)
        if isinstance(runner, ProcessRunner) and runner.warm is None:
            runner.warm = warm
        return runner

    return infrastructure_for
