"""Changing a work queue's settings after its creation (``runq work-queue update``): its
description, its concurrency limit and fair sharing, in one atomic write
(``queue_update.lua``), so a refused value leaves the queue as it was.

Fair sharing (``fair_by``, a tag key): when runs of many values of the tags KEY:VALUE are
due on the queue at once, the claim hands them out round-robin across values instead of
in due order, so a tenant with a thousand queued runs does not starve one with one
(include/fair_line.lua keeps a line per value, include/fair_pick.lua serves them). Runs
already scheduled when it is set keep their place in the queue's own due order, which
also gets a turn in each round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from .checks import check_limit
from .core import BrokerCore
from .errors import InvalidInput
from .field_types import NAME_MAX_LENGTH
from .models import WorkQueue
from .work_queues import UNCHANGED, Unchanged, checked_description


def checked_fair_by(key: str) -> str:
    """A tag key to share a queue fairly by: the KEY of tags KEY:VALUE."""
    problem = None
    if not isinstance(key, str) or not key.strip():
        problem = "it must not be empty"
    elif len(key) > NAME_MAX_LENGTH:
        problem = f"it must be at most {NAME_MAX_LENGTH} characters"
    elif not key.isprintable():
        problem = "it must not contain control characters"
    elif ":" in key or "*" in key:
        problem = "it is the KEY of tags KEY:VALUE, without ':' or '*'"
    if problem:
        raise InvalidInput(f"Invalid fair-by key {key!r}: {problem}.")
    return key


class QueueSettings(BrokerCore):
    """``update_work_queue`` (the Broker is composed with WorkQueues, which reads)."""

    if TYPE_CHECKING:

        def _update_queue(self, name_or_id: str | UUID, fields: dict[str, str]) -> WorkQueue: ...

    def update_work_queue(
        self,
        name_or_id: str | UUID,
        *,
        description: str | None = None,
        concurrency_limit: int | None | Unchanged = UNCHANGED,
        fair_by: str | None | Unchanged = UNCHANGED,
    ) -> WorkQueue:
        """Change a queue's description, limit and/or fair sharing in one atomic write:
        ``description`` "" clears it, None leaves it; ``concurrency_limit`` and
        ``fair_by`` None remove them, left out leave them (a raised limit wakes the
        queue's agents).

        Raises:
            InvalidInput: nothing to change, a limit that is not an integer >= 0, a
                description that is not text or over MAX_DESCRIPTION_BYTES, a bad key.
            WorkQueueNotFound: no such queue.
        """
        fields: dict[str, str] = {}
        if description is not None:
            fields["description"] = checked_description(description)
        if concurrency_limit is None:
            fields["concurrency_limit"] = ""
        elif not isinstance(concurrency_limit, Unchanged):
            fields["concurrency_limit"] = str(check_limit(concurrency_limit))
        if fair_by is None:
            fields["fair_by"] = ""
        elif not isinstance(fair_by, Unchanged):
            fields["fair_by"] = checked_fair_by(fair_by)
        if not fields:
            raise InvalidInput(
                "Nothing to update: give a description, a concurrency limit or fair sharing."
            )
        return self._update_queue(name_or_id, fields)
