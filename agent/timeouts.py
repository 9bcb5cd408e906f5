"""The agent's side of run timeouts. Redis judges a timeout: a run's lease never runs
past its deadline (set when it became RUNNING), and the script that settles an expired
lease ends it TimedOut or puts it back for a retry (broker/scripts/include/reclaim.lua).
Sweeps come every lease/3; an agent that holds a run with a timeout sweeps that run's
queue as soon as the deadline may have passed, so a timed-out run ends within a moment
of it, not of the next sweep. The run's end then stops its infrastructure as any run
ended elsewhere does: the engine ends itself on its next heartbeat, and the agent stops
what is still there after the grace (Watching.outlived). A run this agent adopted (its
agent gone, agent/adoption.py) has no claim to heartbeat: its state is read instead, so
a hung flow that timed out after its agent was restarted is stopped too. A mixin of Agent."""

from __future__ import annotations

import logging
import time

from runq.broker import RunqError

from .watching import Watching

log = logging.getLogger("runq.agent")

RECHECK_SECONDS = 1.0  # a deadline not yet passed by Redis' clock is looked at again after


class Timeouts(Watching):
    """Sweeps a queue when one of this agent's runs there reaches its timeout."""

    _next_adopted_check = 0.0

    def sweep_timed_out(self) -> None:
        """Sweep every queue where a run of this agent may have passed its deadline."""
        now = time.monotonic()
        queues = set()
        for flight in self.flights():
            if flight.deadline_at is not None and now >= flight.deadline_at:
                flight.deadline_at = now + RECHECK_SECONDS
                queues.add(flight.queue)
        for queue in sorted(queues):
            try:
                result = self.broker.sweep(queue)
            except RunqError as error:
                log.warning("Sweep of %r for a timeout failed: %s", queue, error)
                continue
            for run_id in result.timed_out:
                log.warning("Flow run %s ran past its timeout; stopping it.", run_id)
        self.stop_ended_adopted(now)

    def stop_ended_adopted(self, now: float) -> None:
        """Every RECHECK_SECONDS: an adopted run that ended (timed out, crashed) while its
        process still runs is stopped after the grace, as a run of its own would be."""
        if now < self._next_adopted_check:
            return
        self._next_adopted_check = now + RECHECK_SECONDS
        for flight in self.flights():
            if flight.token is not None or flight.handle is None:
                continue
            try:
                state = self.broker.read_flow_run(flight.run.id).state
            except RunqError:
                continue  # read again next time (a deleted run's process ends by itself)
            if state.is_terminal:
                self.outlived(flight, state.type.value)
