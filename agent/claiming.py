"""The agent's claiming side: taking due runs from its queues and starting them.

Queues are served in priority order within the agent's own limit: all of them on the
fallback poll, only those a wake-up named or whose next run came due otherwise. Each
claimed run is handed to the submission pool, which starts it on its deployment's
infrastructure with what its engine needs to report for itself. A run that cannot start
(its deployment deleted, its infrastructure refusing, too late for its deployment) ends
here with a state saying why, so it never waits for a lease to run out. A mixin of
:class:`runq.agent.agent.Agent`; it builds on :class:`LimitTaking` (limit slots) and
:class:`Watching` (states).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from runq.broker import (
    Broker,
    Deployment,
    DeploymentNotFound,
    RunqError,
    StateType,
    WorkQueueNotFound,
)
from runq.broker.settings import (
    AGENT_ID_ENV,
    API_URL_ENV,
    CANCEL_GRACE_ENV,
    HEARTBEAT_ENV,
    LEASE_ENV,
    TOKEN_ENV,
)

from .in_flight import InFlight, describe_seconds
from .infrastructure import Infrastructure, InfrastructureError
from .limit_taking import LimitTaking
from .queue_match import QueueSet
from .submissions import Submissions
from .wakeup import withdraw_waiting

log = logging.getLogger("runq.agent")

InfrastructureFactory = Callable[[Deployment | None, Broker], Infrastructure]


def first_line(error: Exception) -> str:
    """An unexpected error as a state message: the first line of its text, at most 200
    characters, or its type when it says nothing (unlike runq.display.text.one_line, which
    keeps every line of a message, joined)."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]


class Claiming(LimitTaking):
    """Claiming, submitting and the timing of the next claim (a mixin of Agent)."""

    # Set by Agent.__init__; named here so each use below is typed.
    stopping: threading.Event
    engine_api_url: str | None
    infrastructure_for: InfrastructureFactory
    queues: QueueSet
    submissions: Submissions
    _due_at: dict[str, float]
    _limit_noted = False  # what the registry last heard: at its own limit or not

    def capacity(self) -> int:
        """How many more runs this agent may claim now (its limit, or a batch of 100)."""
        if self.settings.limit is None:
            return 100
        return max(0, self.settings.limit - len(self.in_flight))

    def claim_pass(self, only: Collection[str] | None = None) -> int:
        """Claim from the queues in priority order (``only`` some of them: those a wake-up
        named or whose next run is due): a lower queue only gets what is left."""
        claimed = 0
        if only is None and self.capacity() > 0:
            self._full = False  # this pass registers it again where it waits for work
        for queue in list(self.queues.names):
            if only is not None and queue not in only:
                continue
            if only is None:
                claimed += self.claim_woken()
            room = self.capacity()
            if self.stopping.is_set() or room == 0:
                break
            claimed += self.claim_from(queue, room)
        if self.capacity() == 0:
            self.withdraw()
        self.note_limit()
        return claimed

    def note_limit(self) -> None:
        """Tell the registry when this agent reaches its own limit and when it has room
        again (only on a change): full, it claims nothing, so its queues would otherwise
        look unpolled rather than busy (``broker/readiness.py``)."""
        limit = self.settings.limit
        full = limit is not None and self.capacity() == 0
        if full == self._limit_noted:
            return
        try:
            self.broker.set_agent_at_limit(self.id, limit if full else None)
        except RunqError as error:  # said again after the next pass
            log.warning(
                "Could not record that the agent is %s: %s", "full" if full else "free", error
            )
            return
        self._limit_noted = full

    def claim_woken(self) -> int:
        """Within a pass over every queue (hundreds of claims): first the queues a wake-up
        named meanwhile, so their runs do not wait for the pass to end."""
        woken = self.wakeup.take_queues()
        claimed = 0
        for queue in self.queues.names if woken else ():
            room = self.capacity()
            if queue in woken and room > 0:
                claimed += self.claim_from(queue, room)
        return claimed

    def claim_from(self, queue: str, room: int) -> int:
        """Claim up to ``room`` runs of ``queue`` and hand them to the submission pool."""
        self._due_at.pop(queue, None)
        try:
            runs = self.broker.claim(
                queue, self.id, max_runs=room, prefetch_seconds=self.settings.prefetch_seconds
            )
        except WorkQueueNotFound:
            if queue in self.queues.named:  # a matched queue that is gone is just dropped
                self.recreate_queue(queue)
            return 0
        except RunqError as error:
            log.warning("Could not claim from %r: %s", queue, error)
            self.metrics.redis_failed("claim")
            return 0
        self.metrics.redis_answered()
        flights = [InFlight(run, queue, run.claim_token) for run in runs]
        with self.lock:
            for flight in flights:
                self.in_flight[str(flight.run.id)] = flight
        for flight in flights:
            log.info(
                "Claimed flow run %r (%s) from %r.",
                flight.run.name,
                flight.run.id,
                queue,
                extra={"run_id": str(flight.run.id), "queue": queue},
            )
            self.metrics.run_claimed(queue, flight.run)
            self.submissions.put(flight)
        if len(runs) < room:
            self.note_next_due(queue)
        return len(runs)

    def withdraw(self) -> None:
        """At its own limit: stop being woken for new work (another agent should take it)
        until a slot of its own frees and the next full pass registers it again."""
        if self._full:
            return
        self._full = True
        try:
            withdraw_waiting(self.broker, self.queues.names, self.id)
        except RunqError as error:
            log.warning("Could not withdraw from the waiters of its queues: %s", error)

    def note_next_due(self, queue: str) -> None:
        """Remember when ``queue``'s next run comes due (minus the prefetch), by Redis'
        clock, so the loop claims it then without a wake-up."""
        try:
            due = self.broker.next_due_time(queue)
            if due is None:
                return
            until = (
                due - self.broker.server_time()
            ).total_seconds() - self.settings.prefetch_seconds
        except RunqError as error:
            log.warning("Could not read the due time of %r: %s", queue, error)
            return
        if until > 0:  # due already but not claimed: the queue is full or paused; a wake-up follows
            self._due_at[queue] = time.monotonic() + until

    def recreate_queue(self, queue: str) -> None:
        """A queue the agent serves was deleted (or Redis came back empty): create it again,
        as at start, rather than warn on every poll."""
        try:
            if self.broker.ensure_work_queue(queue)[1]:
                log.warning("Work queue %r was gone; created it again.", queue)
        except RunqError as error:
            log.warning("Could not create work queue %r again: %s", queue, error)

    def submit(self, flight: InFlight) -> None:
        """Start a claimed run on its infrastructure; one that cannot start is ended here
        (CANCELLED or CRASHED, with why) rather than left to its lease."""
        if self.stopping.is_set() or not self.holds(flight):
            return  # handed back by shutdown(), or lost meanwhile
        run = flight.run
        try:
            flight.deployment = (
                self.broker.read_deployment(run.deployment_id) if run.deployment_id else None
            )
            if self.skip_if_late(flight) or self.waits_for_limits(flight):
                return
            infrastructure = self.infrastructure_for(flight.deployment, self.broker)
            handle = infrastructure.submit(run, flight.deployment, self.engine_env(flight))
        except DeploymentNotFound:
            message = f"not started: its deployment {run.deployment_id} was deleted"
            log.info("Flow run %r %s.", run.name, message)
            self.write_state(flight, StateType.CANCELLED, message=message)
            self.metrics.run_ended_as(flight.queue, None, StateType.CANCELLED.value)
            self.forget(flight)
            return
        except (InfrastructureError, RunqError) as error:
            log.error("Flow run %r could not start: %s", run.name, error)
            self.write_state(flight, StateType.CRASHED, message=f"could not start: {error}")
            self.metrics.submission_failed(flight.queue, flight.deployment)
            self.metrics.run_ended_as(flight.queue, flight.deployment, StateType.CRASHED.value)
            self.forget(flight)
            return
        except Exception as error:  # a bug or an input the checks missed: still ends the run
            log.exception("Flow run %r could not start.", run.name)
            self.write_state(
                flight, StateType.CRASHED, message=f"could not start: {first_line(error)}"
            )
            self.metrics.submission_failed(flight.queue, flight.deployment)
            self.metrics.run_ended_as(flight.queue, flight.deployment, StateType.CRASHED.value)
            self.forget(flight)
            return
        with self.lock:
            flight.handle = handle
            kept = self.holds(flight)
            stop_now = kept and flight.cancel_requested
        if stop_now:  # cancelled while it started: cancel() left the stop to this point
            self.start_stopper(flight)
        if not kept:  # handed back or claimed elsewhere while it started: it must not run here
            log.warning("Flow run %r is no longer this agent's; stopping what started.", run.name)
            threading.Thread(target=handle.stop, args=(0,), daemon=True).start()
            return
        try:
            # str(): the broker does the same to the token; a claimed run always has one.
            self.broker.record_infrastructure(
                run.id, str(flight.token), flight.handle.infrastructure_id
            )
        except RunqError as error:
            log.warning("Could not record where %r runs: %s", run.name, error)
        if flight.run.timeout_seconds is not None:  # when to ask Redis (agent/timeouts.py)
            flight.deadline_at = time.monotonic() + flight.run.timeout_seconds
        self.metrics.run_started(flight.queue, flight.deployment)
        log.info(
            "Submitted flow run %r to %s.",
            run.name,
            flight.handle.infrastructure_id,
            extra={"run_id": str(run.id), "queue": flight.queue},
        )

    def skip_if_late(self, flight: InFlight) -> bool:
        """CANCEL instead of start a run later than its deployment tolerates (catch-up control)."""
        limit = flight.deployment.skip_if_late_by_seconds if flight.deployment else None
        if limit is None or flight.run.claimed_at is None:
            return False
        late = (flight.run.claimed_at - flight.run.expected_start_time).total_seconds()
        if late <= limit:
            return False
        self.write_state(
            flight, StateType.CANCELLED, message=f"skipped: late by {describe_seconds(late)}"
        )
        self.metrics.run_ended_as(flight.queue, flight.deployment, StateType.CANCELLED.value)
        log.info("Skipped flow run %r: late by %s.", flight.run.name, describe_seconds(late))
        self.forget(flight)
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
