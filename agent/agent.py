"""The agent: claims runs from its work queues and starts them on their infrastructure.

One loop, one thread: claim (queues in priority order, within this agent's own limit),
submit, watch what it started, heartbeat, settle. Between passes it blocks on the wake-up
signal with a timeout no later than the next due run (minus the prefetch), so it never
sleeps in a poll loop and a due run is claimed within milliseconds. The flows it starts
are independent processes: they report their own states and heartbeats; the agent marks
a run CRASHED only when its infrastructure exits without a final state.

This module holds the loop and the agent's life around it (start, sweeps, adoption,
shutdown); claiming lives in :mod:`.claiming`, watching in :mod:`.watching`, the run
record in :mod:`.in_flight` and the settings in :mod:`.settings`. The names those held
before are importable from here as ever.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Callable

from runq.broker import Broker, RunqError, StateType
from runq.broker.settings import RunqSettings

from .adoption import orphans_on_this_host
from .claiming import PAUSE_AFTER_CLAIM_ENV, Claiming, InfrastructureFactory
from .in_flight import InFlight, describe_seconds
from .infrastructure import for_deployment
from .settings import AgentSettings
from .wakeup import WakeUp
from .watching import Watching

__all__ = [
    "HEALTHY_LOOP_SECONDS",
    "PAUSE_AFTER_CLAIM_ENV",
    "Agent",
    "AgentSettings",
    "InFlight",
    "InfrastructureFactory",
    "describe_seconds",
    "new_agent_id",
]

log = logging.getLogger("runq.agent")

HEALTHY_LOOP_SECONDS = 30.0


def new_agent_id() -> str:
    """Unique per process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Agent(Claiming, Watching):
    """One agent: the loop that claims, watches and keeps its runs' claims alive, and the
    state both halves share (set here, once, so each mixin reads the same values)."""

    def __init__(
        self,
        broker: Broker,
        settings: AgentSettings,
        infrastructure_for: InfrastructureFactory = for_deployment,
    ) -> None:
        self.broker = broker
        self.settings = settings
        #: ``RUNQ_ENGINE_API_URL``: the URL engines get instead of the agent's own.
        self.engine_api_url = RunqSettings.from_env().engine_api_url
        self.infrastructure_for = infrastructure_for
        self.id = new_agent_id()
        self.name = settings.name or f"agent-{self.id.rsplit('-', 1)[1]}"
        self.in_flight: dict[str, InFlight] = {}
        self.stopping = threading.Event()
        self.wakeup = WakeUp(broker, settings.work_queues)
        self._next_heartbeat = 0.0
        self._next_sweep = 0.0
        self._next_claim = 0.0
        self._last_loop = time.monotonic()
        self._heartbeat_ok = True

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> list[str]:
        """Create missing queues and register; returns the names of queues it created."""
        created = [name for name in self.settings.work_queues if self.broker.ensure_work_queue(name)[1]]
        self.broker.load_scripts()  # engines with a run-only ACL user cannot load them
        self.broker.register_agent(
            self.id,
            name=self.name,
            work_queues=self.settings.work_queues,
            hostname=socket.gethostname(),
            pid=os.getpid(),
        )
        self.wakeup.start()
        self.adopt_orphans()
        if self.settings.scheduler and not self.settings.run_once:
            threading.Thread(
                target=self.broker.scheduler().run_forever,
                args=(self.id, self.settings.scheduler_loop_seconds, self.stopping),
                name="runq-scheduler",
                daemon=True,
            ).start()
        return created

    def request_stop(self) -> None:
        """Ask the loop to stop (signal handlers call this); it ends after the current step."""
        self.stopping.set()
        self.wakeup.signal.set()

    def run(self) -> int:
        """Work until stopped (or, with run_once, until one pass's runs have ended)."""
        try:
            if self.settings.run_once:
                self.claim_pass()
                while self.in_flight and not self.stopping.is_set():
                    self.maintain()
                    self.wakeup.wait(0.1)
                self.maintain()
            else:
                while not self.stopping.is_set():
                    signalled = self.wakeup.wait(self.next_wait())
                    self.guarded(self.maintain)
                    if self.stopping.is_set():
                        break
                    if signalled or time.monotonic() >= self._next_claim:
                        self.guarded(self.claim_pass)
                        self._next_claim = time.monotonic() + self.claim_wait()
        finally:
            self.shutdown()
        return 0

    def guarded(self, step: Callable[[], object]) -> None:
        """Run one step of the loop; an unexpected error is logged, never the agent's end."""
        try:
            step()
        except Exception:
            log.exception("Unexpected error in %s; the agent goes on.", step.__name__)
            self.stopping.wait(1.0)  # do not spin on a persistent fault

    def is_healthy(self) -> bool:
        """For the health endpoint: the loop ran recently and its last heartbeat worked."""
        return time.monotonic() - self._last_loop < HEALTHY_LOOP_SECONDS and self._heartbeat_ok

    def maintain(self) -> None:
        """Everything but claiming: settle ended runs, cancellations, heartbeats, sweeps."""
        self._last_loop = time.monotonic()
        self.settle_finished()
        for run_id in self.wakeup.cancellations():
            if run_id in self.in_flight and self.is_cancelling(run_id):
                self.cancel(self.in_flight[run_id])
        self.heartbeat_if_due()
        now = time.monotonic()
        if now >= self._next_sweep:
            self.sweep()
            self.adopt_orphans()
            self._next_sweep = now + max(1.0, self.broker.settings.lease_seconds / 3)

    def next_wait(self) -> float:
        """Seconds to block on the wake-up signal: until the next claim, heartbeat or sweep."""
        now = time.monotonic()
        wait = min(self._next_claim, self._next_heartbeat, self._next_sweep) - now
        if self.in_flight:
            wait = min(wait, 0.1)  # notice ended infrastructure promptly
        return max(0.0, wait)

    def shutdown(self) -> None:
        """Hand back runs claimed but not started; leave started ones alone (or stop them)."""
        for flight in list(self.in_flight.values()):
            if flight.handle is None:
                self.hand_back(flight)
            elif self.settings.kill_on_exit:
                log.info("Stopping flow run %r (--kill-on-exit).", flight.run.name)
                flight.handle.stop(self.settings.cancel_grace_seconds)
                self.settle(flight, crash_message="stopped by its agent at exit (--kill-on-exit)")
            elif hasattr(flight.handle, "detach"):
                flight.handle.detach()  # it runs on; its engine reports its own states
        self.wakeup.stop()
        try:
            self.broker.deregister_agent(self.id)
        except RunqError as error:
            log.warning("Could not deregister: %s", error)
        log.info("Agent %s stopped.", self.name)

    # ---- sweeps, adoption and handing back ---------------------------------------------

    def sweep(self) -> None:
        """Requeue runs claimed but never started and crash runs that stopped reporting,
        on this agent's queues: every agent sweeps, so no dead agent's runs wait forever."""
        try:  # after a Redis restart or SCRIPT FLUSH: engines may run scripts, not load them
            self.broker.load_scripts(only_missing=True)
        except RunqError as error:
            log.warning("Could not check runq's scripts: %s", error)
        for queue in self.settings.work_queues:
            try:
                result = self.broker.sweep(queue)
            except RunqError as error:
                log.warning("Sweep of %r failed: %s", queue, error)
                continue
            for run_id in result.requeued:
                log.info("Flow run %s was claimed but never started; back on %r.", run_id, queue)
            for run_id in result.crashed:
                log.warning("Flow run %s stopped reporting; marked CRASHED.", run_id)

    def adopt_orphans(self) -> None:
        """Watch the runs on this agent's queues that an agent on this machine started
        and left (stopped, killed, upgraded): their flows run on, reporting for
        themselves; this agent stops them when they are cancelled."""
        try:
            orphans = orphans_on_this_host(self.broker, self.settings.work_queues, self.id)
        except RunqError as error:
            log.warning("Could not look for runs left by other agents: %s", error)
            return
        for queue, run, handle in orphans:
            if str(run.id) in self.in_flight:
                continue
            self.in_flight[str(run.id)] = InFlight(run, queue, None, handle=handle)
            log.info(
                "Watching flow run %r (%s), left running by agent %s.",
                run.name, handle.infrastructure_id, run.agent_id,
            )

    def hand_back(self, flight: InFlight) -> None:
        """Put a run claimed but not started back on its queue, at its own time, so
        another agent starts it now rather than after its lease runs out."""
        try:
            self.broker.set_state(
                flight.run.id,
                StateType.SCHEDULED,
                token=flight.token,
                from_states=[StateType.PENDING],
                message=f"handed back by agent {self.name} at exit",
                scheduled_start_time=flight.run.expected_start_time,
            )
            log.info("Handed back flow run %r.", flight.run.name)
        except RunqError as error:
            log.warning("Could not hand back %r: %s", flight.run.name, error)
        self.in_flight.pop(str(flight.run.id), None)
