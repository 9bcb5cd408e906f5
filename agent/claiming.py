"""The agent's claiming side: taking due runs from its queues and starting them.

Queues are served in priority order within the agent's own limit; each claimed run is
submitted to its deployment's infrastructure with what its engine needs to report for
itself. A run that cannot start (its deployment deleted, its infrastructure refusing, too
late for its deployment) ends here with a state saying why, so it never waits for a lease
to run out. A mixin of :class:`runq.agent.agent.Agent`; it builds on :class:`Watching`
for writing states and keeping leases alive while a slow submission runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from runq.broker import Broker, Deployment, DeploymentNotFound, RunqError, StateType, WorkQueueNotFound
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
from .watching import Watching

log = logging.getLogger("runq.agent")

#: Test-only: seconds the agent waits between a claim and the launch, so a test can kill
#: it exactly there. Never set in production.
PAUSE_AFTER_CLAIM_ENV = "RUNQ_TEST_PAUSE_AFTER_CLAIM"

InfrastructureFactory = Callable[[Deployment | None, Broker], Infrastructure]


class Claiming(Watching):
    """Claiming, submitting and the timing of the next claim (a mixin of Agent)."""

    # Set by Agent.__init__; named here so each use below is typed.
    stopping: threading.Event
    engine_api_url: str | None
    infrastructure_for: InfrastructureFactory

    def capacity(self) -> int:
        """How many more runs this agent may claim now (its limit, or a batch of 100)."""
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
        """Start a claimed run on its infrastructure; one that cannot start is ended here
        (CANCELLED or CRASHED, with why) rather than left to its lease."""
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
            # str(): the broker does the same to the token; a claimed run always has one.
            self.broker.record_infrastructure(run.id, str(flight.token), flight.handle.infrastructure_id)
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
