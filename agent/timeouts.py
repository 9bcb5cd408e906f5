"""The agent's side of run timeouts. Redis judges a timeout: a run's lease never runs
past its deadline (set when it became RUNNING), and the script that settles an expired
lease ends it TimedOut or puts it back for a retry (broker/scripts/include/reclaim.lua).
Sweeps come every lease/3; an agent that holds a run with a timeout sweeps that run's
queue as soon as the deadline may have passed, so a timed-out run ends within a moment
of it, not of the next sweep. The run's end then stops its infrastructure as any run
ended elsewhere does: the engine ends itself on its next heartbeat, and the agent stops
what is still there after the grace (Watching.outlived). A mixin of Agent."""

from __future__ import annotations

import logging
import time

from runq.broker import RunqError

from .watching import Watching

log = logging.getLogger("runq.agent")

RECHECK_SECONDS = 1.0  # a deadline not yet passed by Redis' clock is looked at again after


class Timeouts(Watching):
    """Sweeps a queue when one of this agent's runs there reaches its timeout."""

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
