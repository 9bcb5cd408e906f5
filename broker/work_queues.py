"""Work queues: create, read, list, pause and resume, limits, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence
from uuid import UUID, uuid4

from .checks import check_limit, ms
from .core import BrokerCore
from .errors import InvalidInput, WorkQueueNotFound
from .keys import QueueKeys
from .models import WorkQueue
from .records import decode_queue, pairs_to_dict
from .timeutil import ms_to_datetime


class WorkQueues(BrokerCore):
    """The Broker's work-queue methods."""

    def _create_queue(
        self, name: str, mode: str, concurrency_limit: int | None, description: str
    ) -> tuple[WorkQueue, bool]:
        keys = self._queue(name)
        if concurrency_limit is not None:
            check_limit(concurrency_limit)
        self.client.sadd(self.keys.queue_names, name)
        created, config = self.scripts.queue_create(
            keys, mode=mode, queue_id=str(uuid4()), description=description,
            limit=concurrency_limit, name=name,
        )
        queue = decode_queue(pairs_to_dict(config))
        self.client.hset(self.keys.queue_ids, str(queue.id), name)
        return queue, bool(created)

    def create_work_queue(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkQueue:
        """Create a work queue.

        Args:
            name: 1-100 printable characters, none of ``{ } :``.
            concurrency_limit: most runs PENDING or RUNNING at once; None for no limit.
            description: free text.

        Returns:
            The new queue.

        Raises:
            InvalidInput: bad name or limit.
            WorkQueueExists: a queue with that name exists; it is left unchanged.
        """
        return self._create_queue(name, "create", concurrency_limit, description)[0]

    def ensure_work_queue(self, name: str) -> tuple[WorkQueue, bool]:
        """Create the queue unless it exists (what referencing a queue does).

        Returns:
            The queue and whether this call created it.

        Raises:
            InvalidInput: bad name.
        """
        return self._create_queue(name, "ensure", None, "")

    def _resolve_queue_name(self, name_or_id: str) -> str:
        mapped = self.client.hget(self.keys.queue_ids, str(name_or_id))
        return mapped if mapped is not None else str(name_or_id)

    def read_work_queue(self, name_or_id: str | UUID) -> WorkQueue:
        """One queue with its live counters (active, scheduled, recent agents).

        Args:
            name_or_id: the queue's name or id.

        Returns:
            The queue.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        name = self._resolve_queue_name(str(name_or_id))
        try:
            keys = self._queue(name)
        except InvalidInput:
            raise WorkQueueNotFound(name) from None
        reply = self._queue_read(keys)
        if not reply:
            raise WorkQueueNotFound(name)
        return self._decode_queue_read(reply)

    def _queue_read(self, keys: QueueKeys, client: Any = None) -> Any:
        return self.scripts.queue_read(
            keys,
            agents_window_ms=ms(self.settings.agent_window_seconds),
            late_after_ms=ms(self.settings.late_after_seconds),
            client=client,
        )

    @staticmethod
    def _decode_queue_read(reply: Sequence[Any]) -> WorkQueue:
        config, active, scheduled, agents, last_polled, late = reply
        return decode_queue(
            pairs_to_dict(config), int(active), int(scheduled), agents, last_polled or None, int(late)
        )

    def list_work_queues(self, prefix: str | None = None) -> list[WorkQueue]:
        """Every queue, by name, optionally those whose name starts with ``prefix``.

        Returns:
            The queues with their counters, sorted by name.
        """
        names = sorted(
            name
            for name in self.client.smembers(self.keys.queue_names)
            if prefix is None or name.startswith(prefix)
        )
        if self.cluster:  # one script call per queue, each on its queue's node
            replies = [self._queue_read(self.keys.queue(n)) for n in names]
        else:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                self._queue_read(self.keys.queue(name), client=pipe)
            replies = pipe.execute()
        return [self._decode_queue_read(reply) for reply in replies if reply]

    def _update_queue(self, name: str, fields: dict[str, str]) -> WorkQueue:
        self.scripts.queue_update(self._queue(name), name=name, fields=fields)
        return self.read_work_queue(name)

    def pause_work_queue(self, name: str) -> WorkQueue:
        """Stop delivery: once this returns, no claim on the queue returns a run.

        Runs already PENDING or RUNNING go on.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name, {"is_paused": "1"})

    def resume_work_queue(self, name: str) -> WorkQueue:
        """Deliver again, and wake the queue's agents.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name, {"is_paused": "0"})

    def set_concurrency_limit(self, name: str, limit: int) -> WorkQueue:
        """Allow at most ``limit`` runs PENDING or RUNNING at once (0 holds everything).

        Raises:
            InvalidInput: the limit is not an integer >= 0.
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name, {"concurrency_limit": str(check_limit(limit))})

    def clear_concurrency_limit(self, name: str) -> WorkQueue:
        """Remove the queue's limit.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name, {"concurrency_limit": ""})

    def set_work_queue_description(self, name: str, description: str) -> WorkQueue:
        """Replace the queue's description.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name, {"description": description})

    def delete_work_queue(self, name: str, *, force: bool = False) -> None:
        """Delete the queue and every run record on it.

        Args:
            name: the queue's name.
            force: delete even while runs are PENDING or RUNNING.

        Raises:
            WorkQueueNotFound: no such queue.
            WorkQueueBusy: runs are in flight and ``force`` is not set.
        """
        reply = self.scripts.queue_delete(self._queue(name), force=force, name=name)
        queue_id, run_ids = reply[0], reply[1:]
        self.client.srem(self.keys.queue_names, name)
        self.client.hdel(self.keys.queue_ids, queue_id)
        for start in range(0, len(run_ids), 1000):
            self.client.hdel(self.keys.run_index, *run_ids[start : start + 1000])
        for run_id in run_ids:
            self._run_queues.pop(run_id, None)

    def next_due_time(self, queue: str) -> datetime | None:
        """The due time of the queue's earliest SCHEDULED run in its schedule, if any.

        Agents sleep until this time minus their prefetch when no signal wakes them.
        """
        first = self.client.zrange(self._queue(queue).scheduled, 0, 0, withscores=True)
        return ms_to_datetime(first[0][1]) if first else None
