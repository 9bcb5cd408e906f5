"""The agent's watching side: what it does about the runs it started, once started.

The flows an agent starts are independent processes that report their own states; the
agent only renews their claims (heartbeats), notices their infrastructure end (settle),
and acts on what it hears: a cancellation stops the infrastructure, a claim lost to
another agent stops it at once, a run ended but still running is stopped after the
grace. This is a mixin of :class:`runq.agent.agent.Agent`, which holds the state the
annotations below name; it is apart so the loop's module reads as the loop.
"""

from __future__ import annotations

import logging
import threading
import time

from runq.broker import (
    Broker,
    FlowRun,
    FlowRunNotFound,
    InvalidTransition,
    RedisOutOfMemory,
    RunqError,
    StaleClaim,
    StateType,
    claim_id_of,
)

from .in_flight import InFlight, describe_seconds
from .metrics import AgentMetrics
from .settings import AgentSettings
from .states import GONE, LIVE_STATE_VALUES, STALE
from .wakeup import WakeUp

log = logging.getLogger("runq.agent")


class Watching:
    """Heartbeats, settling and stopping of an agent's runs (a mixin of Agent)."""

    # Set by Agent.__init__; named here so each use below is typed.
    broker: Broker
    settings: AgentSettings
    id: str
    in_flight: dict[str, InFlight]
    lock: threading.RLock
    metrics: AgentMetrics
    wakeup: WakeUp
    _next_claim: float
    _slot_freed: threading.Event
    _full: bool
    _heartbeat_ok: bool

    def holds(self, flight: InFlight) -> bool:
        """True while ``flight`` is still this agent's (not handed back, lost or ended)."""
        with self.lock:
            return self.in_flight.get(str(flight.run.id)) is flight

    def forget(self, flight: InFlight) -> None:
        """Drop a run this agent no longer holds; a slot of its own limit is free again
        (an agent that was full claims from every queue at once, registering again)."""
        with self.lock:
            if self.in_flight.get(str(flight.run.id)) is flight:
                del self.in_flight[str(flight.run.id)]
        if self._full:
            self._slot_freed.set()  # the loop's own: it alone sets _next_claim
            self.wakeup.poke()

    def flights(self) -> list[InFlight]:
        """A snapshot of the runs in flight (other threads change the table)."""
        with self.lock:
            return list(self.in_flight.values())

    def settle_finished(self) -> None:
        """Settle every run whose infrastructure exited (but not one still being stopped:
        its stopper settles the question of grace first)."""
        for flight in self.flights():
            if flight.handle is not None and (
                flight.stopper is None or not flight.stopper.is_alive()
            ):
                code = flight.handle.poll()
                if code is not None:
                    reason = getattr(flight.handle, "reason", None)
                    self.settle(
                        flight, crash_message=reason or f"infrastructure exited with status {code}"
                    )

    def settle(self, flight: InFlight, *, crash_message: str) -> None:
        """The infrastructure ended: keep its final state, or say why there is none."""
        try:
            run = self.broker.read_flow_run(flight.run.id)
        except FlowRunNotFound:  # deleted (with its queue, say): nothing left to settle
            self.forget(flight)
            return
        except RunqError as error:  # Redis away: keep the run and settle it next time
            log.warning("Could not read flow run %r after it ended: %s", flight.run.name, error)
            self.metrics.redis_failed("read")
            return
        self.forget(flight)
        if flight.token is None:
            self.settle_adopted(flight, run)
            return
        if run.claim_id != claim_id_of(flight.token):
            return  # claimed again since (or handed back): not ours to judge
        context = {"run_id": str(run.id), "queue": flight.queue}
        if run.state.is_terminal or run.state.type is StateType.SCHEDULED:
            self.metrics.run_ended(flight.queue, flight.deployment, run)
            log.info("Flow run %r ended: %s.", run.name, run.state.name, extra=context)
        elif flight.cancel_requested or run.state.type is StateType.CANCELLING:
            self.write_state(
                flight, StateType.CANCELLED, message="cancelled; infrastructure stopped"
            )
            self.metrics.run_ended(flight.queue, flight.deployment, run, StateType.CANCELLED.value)
            log.info("Flow run %r cancelled.", run.name, extra=context)
        else:
            self.write_state(flight, StateType.CRASHED, message=crash_message)
            self.metrics.run_ended(flight.queue, flight.deployment, run, StateType.CRASHED.value)
            log.error("Flow run %r crashed: %s.", run.name, crash_message, extra=context)

    def settle_adopted(self, flight: InFlight, run: FlowRun) -> None:
        """An adopted run's infrastructure ended: its engine reported, or its lease will."""
        if run.state.is_terminal or run.state.type is StateType.SCHEDULED:
            log.info("Flow run %r ended: %s.", run.name, run.state.name)
        else:
            log.warning(
                "Flow run %r ended without a final state; it will be marked CRASHED when its "
                "lease runs out (only its engine holds its claim).",
                run.name,
            )

    def write_state(self, flight: InFlight, state: StateType, *, message: str) -> None:
        """Write a state under this agent's claim; a claim lost or a state moved on
        meanwhile is news, not an error (someone else decided first)."""
        if flight.token is None:
            return  # an adopted run: not this agent's claim to write
        try:
            self.broker.set_state(flight.run.id, state, token=flight.token, message=message)
        except (StaleClaim, InvalidTransition) as error:
            log.info("Flow run %r: %s", flight.run.name, error)
        except RunqError as error:
            log.warning("Could not mark %r %s: %s", flight.run.name, state.value, error)

    def is_cancelling(self, run_id: str) -> bool:
        """A "cancel ID" wake-up is only a hint (anyone who may publish on the channel can
        send one): the run's own state decides."""
        try:
            return self.broker.read_flow_run(run_id).state.type is StateType.CANCELLING
        except RunqError as error:
            log.warning("Could not check the cancellation of %s: %s", run_id, error)
            return False

    def cancel(self, flight: InFlight) -> None:
        """Stop the run's infrastructure in the background (grace, then kill). Called by
        the loop and the heartbeat thread alike: the check and the set are under the lock,
        so one stopper at most; while the run is still being submitted (no handle yet),
        the request is kept and submit() starts the stop once it sets the handle."""
        with self.lock:
            if flight.cancel_requested:
                return
            flight.cancel_requested = True
            if flight.handle is None:
                log.info(
                    "Flow run %r was cancelled while it starts; it is stopped once started.",
                    flight.run.name,
                )
                return
        self.start_stopper(flight)

    def start_stopper(self, flight: InFlight) -> None:
        """Start the one thread that stops ``flight``'s infrastructure (a no-op if begun)."""
        with self.lock:
            handle = flight.handle
            if handle is None or flight.stopper is not None:
                return
            flight.stopper = threading.Thread(
                target=handle.stop,
                args=(self.settings.cancel_grace_seconds,),
                name=f"runq-stop-{flight.run.id}",
                daemon=True,
            )
            flight.stopper.start()  # under the lock: settle_finished never sees it unstarted
        log.info("Cancelling flow run %r: stopping %s.", flight.run.name, handle.infrastructure_id)

    def heartbeat(self) -> None:
        """Say this agent lives, renew the claims it holds, and react to each run's news
        (the heartbeat's reply is how a run's cancellation or loss reaches the agent).
        Runs on the heartbeat thread (agent/heartbeats.py), never behind a submission.

        The renewals never wait on the registry: under full memory Redis refuses the
        registry's write (a plain ZADD) and still runs the renewal (heartbeat.lua runs
        whatever memory holds), and on a cluster the registry's node may be away while
        the queues' are not. A run's lease never lapses for an entry of ``agent ls``."""
        self.say_alive()
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for flight in self.flights():
            if flight.token is not None:  # adopted runs are renewed by their engines
                by_queue.setdefault(flight.queue, []).append((str(flight.run.id), flight.token))
        for queue, claims in by_queue.items():
            try:
                statuses = self.broker.heartbeat_runs(queue, claims)
            except RunqError as error:
                log.warning("Heartbeat of runs on %r failed: %s", queue, error)
                self.metrics.redis_failed("heartbeat")
                self.metrics.heartbeat_refused("error")
                continue
            for run_id, status in statuses.items():
                self.react(self.in_flight.get(run_id), status)

    def say_alive(self) -> None:
        """Refresh this agent's registry entry. Full memory refuses that write while Redis
        answers and renews the runs' leases: the agent is no less healthy for it (a
        liveness probe must not restart it then), only an unanswered Redis makes it so."""
        try:
            self.broker.agent_heartbeat(self.id)
        except RedisOutOfMemory as error:
            log.warning("Agent heartbeat not recorded (its runs' leases are renewed): %s", error)
            self._heartbeat_ok = True
            self.metrics.redis_failed("heartbeat")
            return
        except RunqError as error:
            log.warning("Agent heartbeat failed: %s", error)
            self._heartbeat_ok = False
            self.metrics.redis_failed("heartbeat")
            self.metrics.heartbeat_refused("error")
            return
        self._heartbeat_ok = True
        self.metrics.heartbeat_succeeded()

    def react(self, flight: InFlight | None, status: str) -> None:
        """Act on what a heartbeat says about one of our runs."""
        if flight is None:
            return
        if status == StateType.CANCELLING.value:
            self.cancel(flight)
        elif status in (STALE, GONE):
            # Claimed again elsewhere (or deleted): whatever still runs here must stop, or
            # it would run beside the new owner.
            self.metrics.heartbeat_refused("stale" if status == STALE else "gone")
            log.warning(
                "Flow run %r was %s; stopping it here.",
                flight.run.name,
                "claimed again elsewhere" if status == STALE else "deleted",
            )
            with self.lock:
                handle = flight.handle  # still None while submitting: submit() stops it
                self.forget(flight)
            if handle is not None:
                threading.Thread(target=handle.stop, args=(0,), daemon=True).start()
        elif status not in LIVE_STATE_VALUES:
            self.outlived(flight, status)

    def outlived(self, flight: InFlight, status: str) -> None:
        """The run ended under this claim (its engine reported it, or its lease ran out)
        while its infrastructure still runs: an engine exits by itself once it wrote its
        final state or saw it end, so only one still there after the grace is stopped."""
        now = time.monotonic()
        flight.ended_at = flight.ended_at or now
        if flight.handle is None or flight.stopper is not None:
            return
        if (
            now - flight.ended_at >= self.settings.cancel_grace_seconds
            and flight.handle.poll() is None
        ):
            log.warning(
                "Flow run %r is %s but its infrastructure still runs %s later; stopping it.",
                flight.run.name,
                status,
                describe_seconds(now - flight.ended_at),
            )
            self.cancel(flight)
