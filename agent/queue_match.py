"""Which queues an agent serves: those it was given, then those matching its prefixes.

``runq agent start -q a -q b -m team-`` serves ``a`` and ``b`` in that order, then every
queue whose name starts with ``team-`` (by name), including queues created after it
started: :meth:`QueueSet.refresh` reads the queue names again on the agent's fallback
poll. Prefect 2's ``--match`` works the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from runq.broker import Broker, RunqError

log = logging.getLogger("runq.agent")


class QueueSet:
    """The agent's queues in priority order: the named ones, then the matched ones."""

    def __init__(self, broker: Broker, named: Sequence[str], prefixes: Sequence[str]) -> None:
        self.broker = broker
        self.named = list(dict.fromkeys(named))
        self.prefixes = list(dict.fromkeys(prefixes))
        self.names = list(self.named)

    def refresh(self) -> bool:
        """Read the queue names again; True when the queues served changed (a matching
        queue created, or deleted: a matched queue is never created again by the agent)."""
        if not self.prefixes:
            return False
        try:
            existing = self.broker.work_queue_names(self.prefixes)
        except (RunqError, redis.RedisError) as error:
            log.warning("Could not list work queues for --match: %s", error)
            return False
        matched = [name for name in existing if name not in self.named]  # sorted already
        added = [name for name in matched if name not in self.names]
        changed = self.names != self.named + matched
        self.names = self.named + matched
        for name in added:
            log.info(
                "Serving work queue %r (it matches %s).",
                name,
                " or ".join(map(repr, self.prefixes)),
            )
        return changed
