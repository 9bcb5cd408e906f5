"""Runs left by an agent that is gone, and the handles a new agent watches them through.

A flow outlives its agent (engine/output.py): when an agent stops or dies, its runs go on
reporting for themselves. A new agent on the same machine finds them (in flight on its
queues, claimed by an agent that no longer heartbeats, started as a local process here)
and watches them: it notices when they end and stops them when they are cancelled. It
cannot write their states: only the claim's owner, the engine, holds the token.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import timedelta

from runq.broker import Broker, FlowRun, StateType

WATCHED = (StateType.RUNNING, StateType.CANCELLING)


class AdoptedProcess:
    """A run's engine process that this agent did not start (not its child)."""

    def __init__(self, pid: int, infrastructure_id: str) -> None:
        self.pid, self.infrastructure_id = pid, infrastructure_id

    def poll(self) -> int | None:
        """None while the process group leader lives; -1 once it is gone (its exit status
        belongs to the process that started it)."""
        return None if leads_its_group(self.pid) else -1

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM to its process group, SIGKILL after the grace period."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while leads_its_group(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._signal(signal.SIGKILL)
        return -1

    def detach(self) -> None:
        """Leave it running (this agent is stopping too)."""

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def leads_its_group(pid: int) -> bool:
    """True while ``pid`` runs and leads its own process group, as engines started by the
    process infrastructure do (a reused pid of some other process rarely does)."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def local_pid(infrastructure_id: str | None) -> int | None:
    """The pid of a process run of this machine (``host:pid``), else None."""
    host, _, pid = (infrastructure_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid)


def orphans_on_this_host(
    broker: Broker, queues: list[str], own_id: str
) -> list[tuple[str, FlowRun, AdoptedProcess]]:
    """The runs of ``queues`` in flight as local processes of this machine whose agent is
    not this one and no longer heartbeats (within a lease)."""
    candidates = [
        (queue, run, pid)
        for queue in queues
        for run in broker.in_flight_runs(queue)  # one ZRANGE for a queue with nothing in flight
        if run.state.type in WATCHED
        and run.agent_id != own_id
        and (pid := local_pid(run.infrastructure_id)) is not None
        and leads_its_group(pid)
    ]
    if not candidates:
        return []  # the usual case: the registry is not read
    now = broker.server_time()
    silent_after = timedelta(seconds=broker.settings.lease_seconds)
    live_agents = {
        agent.id for agent in broker.list_agents() if now - agent.last_heartbeat <= silent_after
    }
    return [
        (queue, run, AdoptedProcess(pid, str(run.infrastructure_id)))
        for queue, run, pid in candidates
        if run.agent_id not in live_agents
    ]
