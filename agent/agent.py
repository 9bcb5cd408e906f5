"""The agent: claims runs from its work queues and starts them on their infrastructure.

The loop claims (queues in priority order, within this agent's own limit), watches what
it started and settles what ended. Between passes it blocks on the wake-up signal, which
names the queue that has work, with a timeout no later than the next due run (minus the
prefetch), so it never sleeps in a poll loop and a due run is claimed within
milliseconds; a fallback poll of every queue runs on a fixed, slow interval. Heartbeats
run on a thread of their own and submissions in a bounded pool, so one slow Docker or
Kubernetes call delays neither the leases nor the other runs nor claiming. The flows it
starts are independent processes: they report their own states and heartbeats; the
agent marks a run CRASHED only when its infrastructure exits without a final state.

This module holds the loop and the agent's life around it (start, sweeps, adoption,
shutdown); claiming lives in :mod:`.claiming`, watching in :mod:`.watching`, the run
record in :mod:`.in_flight`, the threads in :mod:`.heartbeats` and :mod:`.submissions`,
the queues served in :mod:`.queue_match` and the settings in :mod:`.settings`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from runq.broker import Broker, RunqError, StateType
from runq.broker.settings import RunqSettings

from .adoption import orphans_on_this_host
from .claiming import Claiming, InfrastructureFactory
from .heartbeats import Heartbeats
from .in_flight import InFlight, describe_seconds
from .infrastructure import for_deployment
from .infrastructure.process import WarmEngine, with_warm_engine
from .metrics import AgentMetrics
from .queue_match import QueueSet
from .settings import AgentSettings
from .submissions import Submissions
from .timeouts import Timeouts
from .wakeup import WakeUp
from .watching import Watching

__all__ = [
    "HEALTHY_LOOP_SECONDS",
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


class Agent(Claiming, Timeouts, Watching):
    """One agent: the loop that claims, watches and keeps its runs' claims alive, and the
    state both halves share (set here, once, so each mixin reads the same values)."""

    def __init__(
        self,
        broker: Broker,
        settings: AgentSettings,
        infrastructure_for: InfrastructureFactory = for_deployment,
        *,
        match: Sequence[str] | None = None,
    ) -> None:
        if match is not None:
            settings = replace(settings, match=list(match))
        self.broker = broker
        self.settings = settings
        #: ``RUNQ_ENGINE_API_URL``: the URL engines get instead of the agent's own.
        self.engine_api_url = RunqSettings.from_env().engine_api_url
        #: Forks this agent's process runs (None: off, or a factory of the caller's own).
        self.warm_engine = (
            WarmEngine() if settings.warm_engine and infrastructure_for is for_deployment else None
        )
        self.infrastructure_for = with_warm_engine(infrastructure_for, self.warm_engine)
        self.id = new_agent_id()
        self.name = settings.name or f"agent-{self.id.rsplit('-', 1)[1]}"
        #: Prometheus metrics (served at /metrics on the health port); off: no-ops.
        self.metrics = AgentMetrics(enabled=settings.metrics)
        self.metrics.describe_agent(self.id, self.name, lambda: len(self.in_flight))
        self.in_flight: dict[str, InFlight] = {}
        self.lock = threading.RLock()  # guards in_flight: the loop, heartbeats and workers share it
        self.stopping = threading.Event()
        self.queues = QueueSet(broker, settings.work_queues, settings.match)
        self.wakeup = WakeUp(broker, self.id, self.queues.names)
        workers = min(settings.submit_workers, settings.limit or settings.submit_workers)
        self.submissions = Submissions(self.submit, workers)
        self.heartbeats = Heartbeats(self.heartbeat, settings.heartbeat_seconds)
        self._next_sweep = 0.0
        self._next_claim = 0.0
        #: Set by any thread that freed a slot of a full agent: the loop polls every queue.
        self._slot_freed = threading.Event()
        self._due_at: dict[str, float] = {}  # queue -> when its next run comes due (monotonic)
        self._full = False  # at its own limit: withdrawn from its queues' waiters
        self._last_loop = time.monotonic()
        self._heartbeat_ok = True

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> list[str]:
        """Create missing queues and register; returns the names of queues it created."""
        if self.warm_engine is not None:
            self.warm_engine.start()  # it imports the engine while the agent registers
        created = [name for name in self.queues.named if self.broker.ensure_work_queue(name)[1]]
        self.broker.load_scripts()  # engines with a run-only ACL user cannot load them
        self.refresh_queues()
        self.broker.register_agent(
            self.id,
            name=self.name,
            work_queues=self.queues.names,
            hostname=socket.gethostname(),
            pid=os.getpid(),
        )
        self.wakeup.start()
        self.heartbeats.start()
        self.submissions.start()
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
        self.wakeup.poke()

    def run(self) -> int:
        """Work until stopped (or, with run_once, until one pass's runs have ended)."""
        try:
            if self.settings.run_once:
                self.claim_pass()
                while (self.in_flight or self.submissions.pending()) and not self.stopping.is_set():
                    self.maintain()
                    self.wakeup.wait(0.1)
                self.maintain()
            else:
                while not self.stopping.is_set():
                    woken = self.wakeup.wait(self.next_wait())
                    self.guarded(self.maintain)
                    if self.stopping.is_set():
                        break
                    now = time.monotonic()
                    if woken.everything or now >= self._next_claim or self._slot_freed.is_set():
                        self._slot_freed.clear()  # before the pass: a slot freed during it counts
                        self.guarded(self.poll_all)
                        continue
                    due = woken.queues | {q for q, at in self._due_at.items() if at <= now}
                    if due:
                        self.guarded(self.claim_pass, due)
        finally:
            self.shutdown()
        return 0

    def guarded(self, step: Callable[..., object], *args: Any) -> None:
        """Run one step of the loop; an unexpected error is logged, never the agent's end."""
        try:
            step(*args)
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
            flight = self.in_flight.get(run_id)
            if flight is not None and self.is_cancelling(run_id):
                self.cancel(flight)
        self.pass_limits_when_due()
        self.sweep_timed_out()
        now = time.monotonic()
        if now >= self._next_sweep:
            self.sweep()
            self.adopt_orphans()
            self._next_sweep = now + max(1.0, self.broker.settings.lease_seconds / 3)

    def poll_all(self) -> None:
        """The fallback poll: look for new matching queues, then claim from every queue."""
        self.refresh_queues()
        self.claim_pass()
        self._next_claim = time.monotonic() + self.settings.query_interval

    def refresh_queues(self) -> None:
        """Serve queues created since that match ``--match`` (and listen to them)."""
        if self.queues.refresh():
            self.wakeup.set_queues(self.queues.names)

    def next_wait(self) -> float:
        """Seconds to block on the wake-up signal: until the next claim, due run or sweep."""
        now = time.monotonic()
        wait = min(self._next_claim, self._next_sweep, *self._due_at.values()) - now
        if self._limit_names:  # the limit pass's own cadence
            wait = min(wait, self._next_limit_pass - now)
        if self._slot_freed.is_set():
            return 0.0
        if self.in_flight:
            wait = min(wait, 0.1)  # notice ended infrastructure promptly
        return max(0.0, wait)

    def shutdown(self) -> None:
        """Hand back runs claimed but not started; leave started ones alone (or stop them)."""
        self.stopping.set()
        self.submissions.stop(wait_seconds=1.0)  # under way: a moment to finish, then handed back
        self.heartbeats.stop()
        with self.lock:
            flights = list(self.in_flight.values())
        for flight in flights:
            if flight.handle is None:
                self.hand_back(flight)
            elif self.settings.kill_on_exit:
                log.info("Stopping flow run %r (--kill-on-exit).", flight.run.name)
                flight.handle.stop(self.settings.cancel_grace_seconds)
                self.settle(flight, crash_message="stopped by its agent at exit (--kill-on-exit)")
            elif hasattr(flight.handle, "detach"):
                flight.handle.detach()  # it runs on; its engine reports its own states
        self.wakeup.stop()
        if self.warm_engine is not None:
            self.warm_engine.close()  # the runs it forked go on
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
        for queue in list(self.queues.names):
            try:
                result = self.broker.sweep(queue)
            except RunqError as error:
                log.warning("Sweep of %r failed: %s", queue, error)
                self.metrics.redis_failed("sweep")
                continue
            for run_id in result.requeued:
                log.info("Flow run %s was claimed but never started; back on %r.", run_id, queue)
            for run_id in result.crashed:
                log.warning("Flow run %s stopped reporting; marked CRASHED.", run_id)
            for run_id in result.timed_out:
                log.warning("Flow run %s ran past its timeout; stopping it.", run_id)

    def adopt_orphans(self) -> None:
        """Watch the runs on this agent's queues that an agent on this machine started
        and left (stopped, killed, upgraded): their flows run on, reporting for
        themselves; this agent stops them when they are cancelled."""
        try:
            orphans = orphans_on_this_host(self.broker, list(self.queues.names), self.id)
        except RunqError as error:
            log.warning("Could not look for runs left by other agents: %s", error)
            return
        for queue, run, handle in orphans:
            with self.lock:
                if str(run.id) in self.in_flight:
                    continue
                self.in_flight[str(run.id)] = InFlight(run, queue, None, handle=handle)
            log.info(
                "Watching flow run %r (%s), left running by agent %s.",
                run.name,
                handle.infrastructure_id,
                run.agent_id,
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
        with self.lock:
            self.in_flight.pop(str(flight.run.id), None)
