"""A run forked by the agent's warm engine, as the agent sees it.

The agent uses a :class:`WarmHandle` as it uses a cold process: ``poll()`` gives the exit
status (negative for a signal: a SIGKILLed flow reads -9, as a cold one does),
``stop(grace)`` ends the whole process group, ``detach()`` leaves it running. The run is
not the agent's child: the warm engine reaps it and reports its status
(:mod:`.warm_client`); a pidfd (sent with the pid) tells when it ends should the warm
engine be gone by then (the status is then unknown, and the handle says so).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import TYPE_CHECKING

from . import warm_wire as wire

if TYPE_CHECKING:
    from .warm_client import WarmEngine

REAP_SECONDS = 30.0  # for the status of a SIGKILLed run to be reported


class WarmHandle:
    """A run forked by the warm engine: not the agent's child, watched through it."""

    def __init__(self, engine: WarmEngine, pid: int, pidfd: int, generation: int) -> None:
        self.engine, self.pid, self.generation = engine, pid, generation
        self.infrastructure_id = f"{socket.gethostname()}:{pid}"
        self._pidfd: int | None = pidfd
        self._status: int | None = None
        #: Why it ended, when its exit status is unknown (the agent's crash message).
        self.reason: str | None = None

    def poll(self) -> int | None:
        """The exit status once it has ended, else None."""
        if self._status is None:
            status = self.engine.status_of(self.generation, self.pid)
            if status is None and self.engine.generation != self.generation and self._exited():
                # Its warm engine is gone, and with it the status (unless it came first).
                status = self.engine.status_of(self.generation, self.pid)
                if status is None:
                    status = self._reaped()
                if status is None:
                    status = -1
                    self.reason = "infrastructure exited; its status is unknown (its warm engine stopped first)"
            if status is not None:
                self._status = status
                self._close()
        return self._status

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM to the whole process group, SIGKILL after the grace period."""
        self._signal(signal.SIGTERM)
        self._wait(grace_seconds)
        self._signal(signal.SIGKILL)  # grandchildren that outlived the leader, too
        status = self._wait(REAP_SECONDS)
        return -signal.SIGKILL if status is None else status

    def detach(self) -> None:
        """The agent is leaving: the process runs on, its engine reporting for itself."""
        self._close()

    def _wait(self, seconds: float) -> int | None:
        deadline = time.monotonic() + seconds
        while (status := self.poll()) is None and time.monotonic() < deadline:
            if self._pidfd is not None and not self._exited():
                wire.readable([self._pidfd], min(0.05, max(0.0, deadline - time.monotonic())))
            else:
                time.sleep(0.005)  # ended: its status is on its way from the warm engine
        return status

    def _reaped(self) -> int | None:
        """Its status, if it became the agent's own child when its warm engine died (an
        agent that is PID 1 of a container, or a subreaper, inherits orphans)."""
        if self._pidfd is None:
            return None
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except (ChildProcessError, OSError):
            return None
        if result is None:
            return None
        return result.si_status if result.si_code == os.CLD_EXITED else -result.si_status

    def _exited(self) -> bool:
        if self._pidfd is None:
            return True
        return bool(wire.readable([self._pidfd], 0))

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
