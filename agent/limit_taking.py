"""The agent's side of named concurrency limits: a claimed run takes the slots its tags
need before it starts, or waits parked (broker/limit_slots.py has the protocol); a run
that ends gives them back; and every agent runs the limit pass now and then, which sends
waiting runs back for slots that freed without a word (a rate's window moving on, a
release lost with an agent killed -9). A mixin of :class:`runq.agent.agent.Agent`."""

from __future__ import annotations

import logging
import time

from runq.broker import RunqError, Waiting, claim_id_of

from .in_flight import InFlight
from .watching import Watching

log = logging.getLogger("runq.agent")

LIMIT_NAMES_SECONDS = 2.0  # how long the agent trusts its list of the limits' names
LIMIT_PASS_SECONDS = 1.0  # how often it runs the limit pass while limits exist


class LimitTaking(Watching):
    """Taking and giving back limit slots, and the limit pass (a mixin of Agent)."""

    _limit_names: set[str] = set()
    _limit_names_at = float("-inf")
    _next_limit_pass = 0.0

    def known_limits(self) -> set[str]:
        """The limits' names, read again every LIMIT_NAMES_SECONDS (the last ones known
        while Redis does not answer)."""
        now = time.monotonic()
        if now - self._limit_names_at >= LIMIT_NAMES_SECONDS:
            try:
                self._limit_names = self.broker.limit_names()
                self._limit_names_at = now
            except RunqError as error:
                log.warning("Could not read the concurrency limits: %s", error)
        return self._limit_names

    def waits_for_limits(self, flight: InFlight) -> bool:
        """Take the limit slots ``flight``'s run needs; True when it waits instead (it was
        parked, and this agent no longer holds it)."""
        names = self.known_limits()
        deployment = flight.deployment
        own = deployment is not None and deployment.concurrency_limit is not None
        if flight.token is None or not (own or (names and flight.run.tags)):
            return False
        try:
            outcome = self.broker.take_limit_slots(
                flight.run, flight.queue, flight.token, names, deployment
            )
        except RunqError as error:  # not started: its lease runs out and it is delivered again
            log.warning("Could not take the limit slots of %r: %s", flight.run.name, error)
            self.forget(flight)
            return True
        if isinstance(outcome, Waiting):
            log.info(
                "Flow run %r %s: %s",
                flight.run.name,
                "cancelled" if outcome.cancelled else "waits",
                outcome.message,
                extra={"run_id": str(flight.run.id), "queue": flight.queue},
            )
            self.forget(flight)
            return True
        flight.limit_slots = outcome
        return False

    def forget(self, flight: InFlight) -> None:
        """Drop the run, giving back its limit slots (the limit pass mends a failure)."""
        super().forget(flight)
        slots, flight.limit_slots = flight.limit_slots, []
        if slots and flight.token is not None:
            try:
                self.broker.release_limit_slots(
                    str(flight.run.id), claim_id_of(flight.token), slots
                )
            except RunqError as error:
                log.warning("Could not give back the limit slots of %r: %s", flight.run.name, error)

    def pass_limits_when_due(self) -> None:
        """The limit pass, every LIMIT_PASS_SECONDS while any limit exists."""
        now = time.monotonic()
        if now < self._next_limit_pass:
            return
        self._next_limit_pass = now + LIMIT_PASS_SECONDS
        names = self.known_limits()
        if not names:
            return
        try:
            self.broker.pass_limits(names)
        except RunqError as error:
            log.warning("The concurrency limits' pass failed: %s", error)
