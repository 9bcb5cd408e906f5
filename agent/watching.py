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
    RunqError,
    StaleClaim,
    StateType,
    claim_id_of,
)

from .in_flight import InFlight, describe_seconds
from .settings import AgentSettings
from .states import GONE, LIVE_STATE_VALUES, STALE

log = logging.getLogger("runq.agent")


class Watching:
    """Heartbeats, settling and stopping of an agent's runs (a mixin of Agent)."""

    # Set by Agent.__init__; named here so each use below is typed.
    broker: Broker
    settings: AgentSettings
    id: str
    in_flight: dict[str, InFlight]
    _next_claim: float
    _next_heartbeat: float
    _heartbeat_ok: bool

    def settle_finished(self) -> None:
        """Settle every run whose infrastructure exited (but not one still being stopped:
        its stopper settles the question of grace first)."""
        for flight in list(self.in_flight.values()):
            if flight.handle is not None and (flight.stopper is None or not flight.stopper.is_alive()):
                code = flight.handle.poll()
                if code is not None:
                    reason = getattr(flight.handle, "reason", None)
                    self.settle(flight, crash_message=reason or f"infrastructure exited with status {code}")

    def settle(self, flight: InFlight, *, crash_message: str) -> None:
        """The infrastructure ended: keep its final state, or say why there is none."""
        try:
            run = self.broker.read_flow_run(flight.run.id)
        except FlowRunNotFound:  # deleted (with its queue, say): nothing left to settle
            self.in_flight.pop(str(flight.run.id), None)
            return
        except RunqError as error:  # Redis away: keep the run and settle it next time
            log.warning("Could not read flow run %r after it ended: %s", flight.run.name, error)
            return
        self.in_flight.pop(str(flight.run.id), None)
        self._next_claim = 0.0  # a slot of this agent's own limit is free again
        if flight.token is None:
            self.settle_adopted(flight, run)
            return
        if run.claim_id != claim_id_of(flight.token):
            return  # claimed again since (or handed back): not ours to judge
        if run.state.is_terminal or run.state.type is StateType.SCHEDULED:
            log.info("Flow run %r ended: %s.", run.name, run.state.name)
        elif flight.cancelling or run.state.type is StateType.CANCELLING:
            self.write_state(flight, StateType.CANCELLED, message="cancelled; infrastructure stopped")
            log.info("Flow run %r cancelled.", run.name)
        else:
            self.write_state(flight, StateType.CRASHED, message=crash_message)
            log.error("Flow run %r crashed: %s.", run.name, crash_message)

    def settle_adopted(self, flight: InFlight, run: FlowRun) -> None:
        """An adopted run's infrastructure ended: its engine reported, or its lease will."""
        if run.state.is_terminal or run.state.type is StateType.SCHEDULED:
            log.info("Flow run %r ended: %s.", run.name, run.state.name)
        else:
            log.warning(
                "Flow run %r ended without a final state; it will be marked CRASHED when its "
                "lease runs out (only its engine holds its claim).", run.name,
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
        """Stop the run's infrastructure in the background (grace, then kill)."""
        if flight.cancelling:
            return
        flight.cancelling = True
        if flight.handle is None:
            return
        log.info("Cancelling flow run %r: stopping %s.", flight.run.name, flight.handle.infrastructure_id)
        flight.stopper = threading.Thread(
            target=flight.handle.stop,
            args=(self.settings.cancel_grace_seconds,),
            name=f"runq-stop-{flight.run.id}",
            daemon=True,
        )
        flight.stopper.start()

    def heartbeat_if_due(self) -> None:
        """Heartbeat at most once per heartbeat interval, however often the loop asks."""
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = now + self.settings.heartbeat_seconds

    def heartbeat(self) -> None:
        """Say this agent lives, renew the claims it holds, and react to each run's news
        (the heartbeat's reply is how a run's cancellation or loss reaches the agent)."""
        try:
            self.broker.agent_heartbeat(self.id)
            self._heartbeat_ok = True
        except RunqError as error:
            log.warning("Agent heartbeat failed: %s", error)
            self._heartbeat_ok = False
            return
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for run_id, flight in self.in_flight.items():
            if flight.token is not None:  # adopted runs are renewed by their engines
                by_queue.setdefault(flight.queue, []).append((run_id, flight.token))
        for queue, claims in by_queue.items():
            try:
                statuses = self.broker.heartbeat_runs(queue, claims)
            except RunqError as error:
                log.warning("Heartbeat of runs on %r failed: %s", queue, error)
                continue
            for run_id, status in statuses.items():
                self.react(self.in_flight.get(run_id), status)

    def react(self, flight: InFlight | None, status: str) -> None:
        """Act on what a heartbeat says about one of our runs."""
        if flight is None:
            return
        if status == StateType.CANCELLING.value:
            self.cancel(flight)
        elif status in (STALE, GONE):
            # Claimed again elsewhere (or deleted): whatever still runs here must stop, or
            # it would run beside the new owner.
            log.warning(
                "Flow run %r was %s; stopping it here.", flight.run.name,
                "claimed again elsewhere" if status == STALE else "deleted",
            )
            if flight.handle is not None:
                threading.Thread(target=flight.handle.stop, args=(0,), daemon=True).start()
            self.in_flight.pop(str(flight.run.id), None)
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
        if now - flight.ended_at >= self.settings.cancel_grace_seconds and flight.handle.poll() is None:
            log.warning(
                "Flow run %r is %s but its infrastructure still runs %s later; stopping it.",
                flight.run.name, status, describe_seconds(now - flight.ended_at),
            )
            self.cancel(flight)
