"""The agent: claims runs from its work queues and starts them on their infrastructure.

One loop, one thread: claim (queues in priority order, within this agent's own limit),
submit, watch what it started, heartbeat, settle. Between passes it blocks on the wake-up
signal with a timeout no later than the next due run (minus the prefetch), so it never
sleeps in a poll loop and a due run is claimed within milliseconds. The flows it starts
are independent processes: they report their own states and heartbeats; the agent marks
a run CRASHED only when its infrastructure exits without a final state.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from runq.broker import (
    Broker,
    Deployment,
    DeploymentNotFound,
    FlowRun,
    FlowRunNotFound,
    InvalidTransition,
    RunqError,
    StaleClaim,
    StateType,
    WorkQueueNotFound,
    claim_id_of,
)
from runq.broker.settings import (
    AGENT_ID_ENV,
    API_URL_ENV,
    CANCEL_GRACE_ENV,
    HEARTBEAT_ENV,
    LEASE_ENV,
    TOKEN_ENV,
    RunqSettings,
)

from .adoption import orphans_on_this_host
from .infrastructure import Handle, Infrastructure, InfrastructureError, for_deployment
from .states import GONE, LIVE_STATE_VALUES, STALE
from .wakeup import WakeUp

log = logging.getLogger("runq.agent")

#: Test-only: seconds the agent waits between a claim and the launch, so a test can kill
#: it exactly there. Never set in production.
PAUSE_AFTER_CLAIM_ENV = "RUNQ_TEST_PAUSE_AFTER_CLAIM"
HEALTHY_LOOP_SECONDS = 30.0


def _default(name: str) -> Any:
    """The one default of a RunqSettings field."""
    return RunqSettings.model_fields[name].default


@dataclass
class AgentSettings:
    """How an agent behaves (the CLI fills these from flags and RunqSettings, see
    :meth:`from_settings`; the defaults are RunqSettings' own)."""

    work_queues: list[str]
    name: str | None = None
    limit: int | None = None
    prefetch_seconds: float = _default("agent_prefetch_seconds")
    query_interval: float = _default("agent_query_interval")
    heartbeat_seconds: float = _default("heartbeat_seconds")
    cancel_grace_seconds: float = _default("cancel_grace_seconds")
    run_once: bool = False
    kill_on_exit: bool = False
    scheduler: bool = True
    scheduler_loop_seconds: float = _default("scheduler_loop_seconds")

    @classmethod
    def from_settings(
        cls, work_queues: list[str], settings: RunqSettings | None = None, **flags: Any
    ) -> "AgentSettings":
        """The RUNQ_* values of ``settings`` (default: this environment's), then ``flags``."""
        settings = settings or RunqSettings.from_env()
        values: dict[str, Any] = {
            "prefetch_seconds": settings.agent_prefetch_seconds,
            "query_interval": settings.agent_query_interval,
            "heartbeat_seconds": settings.heartbeat_seconds,
            "cancel_grace_seconds": settings.cancel_grace_seconds,
            "scheduler_loop_seconds": settings.scheduler_loop_seconds,
        }
        values.update({key: value for key, value in flags.items() if value is not None})
        return cls(work_queues=work_queues, **values)


@dataclass
class InFlight:
    """A run this agent claimed, or adopted, and has not seen end.

    An adopted run (``token`` None) was started by an agent that is gone: this agent
    watches its infrastructure and stops it when it is cancelled, but cannot write its
    state (only the claim's owner, its engine, can)."""

    run: FlowRun
    queue: str
    token: str | None
    deployment: Deployment | None = None
    handle: Handle | None = None
    cancelling: bool = False
    stopper: threading.Thread | None = field(default=None, repr=False)
    ended_at: float | None = None  # when a heartbeat first said the run had ended


def describe_seconds(seconds: float) -> str:
    """``2h 3m 4s`` style, for messages people read."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(part for part in parts if part)


def new_agent_id() -> str:
    """Unique per process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


InfrastructureFactory = Callable[[Deployment | None, Broker], Infrastructure]


class Agent:
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

    def is_cancelling(self, run_id: str) -> bool:
        """A "cancel ID" wake-up is only a hint (anyone who may publish on the channel can
        send one): the run's own state decides."""
        try:
            return self.broker.read_flow_run(run_id).state.type is StateType.CANCELLING
        except RunqError as error:
            log.warning("Could not check the cancellation of %s: %s", run_id, error)
            return False

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

    # ---- claiming and submitting ------------------------------------------------------

    def capacity(self) -> int:
        if self.settings.limit is None:
            return 100
        return max(0, self.settings.limit - len(self.in_flight))

    def claim_pass(self) -> int:
        """Claim from the queues in priority order: a lower queue only gets what is left."""
        claimed = 0
        for queue in self.settings.work_queues:
            room = self.capacity()
            if room == 0 or self.stopping.is_set():
                break
            try:
                runs = self.broker.claim(
                    queue, self.id, max_runs=room, prefetch_seconds=self.settings.prefetch_seconds
                )
            except WorkQueueNotFound:
                self.recreate_queue(queue)
                continue
            except RunqError as error:
                log.warning("Could not claim from %r: %s", queue, error)
                continue
            for run in runs:
                self.in_flight[str(run.id)] = InFlight(run, queue, run.claim_token)
                log.info("Claimed flow run %r (%s) from %r.", run.name, run.id, queue)
            for run in runs:
                self.submit(self.in_flight[str(run.id)])
                self.heartbeat_if_due()  # a slow submission must not let the others' leases lapse
            claimed += len(runs)
        return claimed

    def recreate_queue(self, queue: str) -> None:
        """A queue the agent serves was deleted (or Redis came back empty): create it again,
        as at start, rather than warn on every poll."""
        try:
            if self.broker.ensure_work_queue(queue)[1]:
                log.warning("Work queue %r was gone; created it again.", queue)
        except RunqError as error:
            log.warning("Could not create work queue %r again: %s", queue, error)

    def submit(self, flight: InFlight) -> None:
        pause = float(os.environ.get(PAUSE_AFTER_CLAIM_ENV, "0") or 0)
        if pause:
            time.sleep(pause)  # test-only pause point (see PAUSE_AFTER_CLAIM_ENV)
        if self.stopping.is_set():
            return  # handed back by shutdown()
        run = flight.run
        try:
            flight.deployment = (
                self.broker.read_deployment(run.deployment_id) if run.deployment_id else None
            )
            if self.skip_if_late(flight):
                return
            infrastructure = self.infrastructure_for(flight.deployment, self.broker)
            flight.handle = infrastructure.submit(run, flight.deployment, self.engine_env(flight))
        except DeploymentNotFound:
            message = f"not started: its deployment {run.deployment_id} was deleted"
            log.info("Flow run %r %s.", run.name, message)
            self.write_state(flight, StateType.CANCELLED, message=message)
            self.in_flight.pop(str(run.id), None)
            return
        except (InfrastructureError, RunqError) as error:
            log.error("Flow run %r could not start: %s", run.name, error)
            self.write_state(flight, StateType.CRASHED, message=f"could not start: {error}")
            self.in_flight.pop(str(run.id), None)
            return
        try:
            self.broker.record_infrastructure(run.id, flight.token, flight.handle.infrastructure_id)
        except RunqError as error:
            log.warning("Could not record where %r runs: %s", run.name, error)
        log.info("Submitted flow run %r to %s.", run.name, flight.handle.infrastructure_id)

    def skip_if_late(self, flight: InFlight) -> bool:
        """CANCEL instead of start a run later than its deployment tolerates (catch-up control)."""
        limit = flight.deployment.skip_if_late_by_seconds if flight.deployment else None
        if limit is None or flight.run.claimed_at is None:
            return False
        late = (flight.run.claimed_at - flight.run.expected_start_time).total_seconds()
        if late <= limit:
            return False
        self.write_state(flight, StateType.CANCELLED, message=f"skipped: late by {describe_seconds(late)}")
        log.info("Skipped flow run %r: late by %s.", flight.run.name, describe_seconds(late))
        self.in_flight.pop(str(flight.run.id), None)
        return True

    def engine_env(self, flight: InFlight) -> dict[str, str]:
        """What the engine is started with. ``RUNQ_ENGINE_API_URL``, when set, is the URL
        engines get instead of the agent's own (a Redis user with only the engine's rights,
        see deploy/redis-acl.conf); an agent on a cluster hands it on as a cluster URL, as
        it does its own."""
        from runq.broker.connection import as_cluster_url, is_cluster_url

        url = self.engine_api_url or self.broker.url
        if is_cluster_url(self.broker.url):
            url = as_cluster_url(url)
        return {
            API_URL_ENV: url,
            AGENT_ID_ENV: self.id,
            TOKEN_ENV: str(flight.token),
            HEARTBEAT_ENV: str(self.settings.heartbeat_seconds),
            CANCEL_GRACE_ENV: str(self.settings.cancel_grace_seconds),
            LEASE_ENV: str(self.broker.settings.lease_seconds),
        }

    # ---- watching ---------------------------------------------------------------------

    def settle_finished(self) -> None:
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
        if flight.token is None:
            return  # an adopted run: not this agent's claim to write
        try:
            self.broker.set_state(flight.run.id, state, token=flight.token, message=message)
        except (StaleClaim, InvalidTransition) as error:
            log.info("Flow run %r: %s", flight.run.name, error)
        except RunqError as error:
            log.warning("Could not mark %r %s: %s", flight.run.name, state.value, error)

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
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = now + self.settings.heartbeat_seconds

    def heartbeat(self) -> None:
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

    def sweep(self) -> None:
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

    def next_wait(self) -> float:
        """Seconds to block on the wake-up signal: until the next claim, heartbeat or sweep."""
        now = time.monotonic()
        wait = min(self._next_claim, self._next_heartbeat, self._next_sweep) - now
        if self.in_flight:
            wait = min(wait, 0.1)  # notice ended infrastructure promptly
        return max(0.0, wait)

    def claim_wait(self) -> float:
        """Seconds until claiming again unsignalled: the fallback poll, or sooner when a
        run comes due (minus the prefetch), by Redis' clock."""
        wait = self.settings.query_interval
        if self.capacity() == 0:
            return wait
        try:
            server_now = self.broker.server_time()
            for queue in self.settings.work_queues:
                due = self.broker.next_due_time(queue)
                if due is None:
                    continue
                until = (due - server_now).total_seconds() - self.settings.prefetch_seconds
                if until > 0:
                    wait = min(wait, until)
        except RunqError as error:
            log.warning("Could not read due times: %s", error)
        return max(0.0, wait)
