"""Work queues: create, read, list, pause and resume, limits, delete.

Every method takes a queue's name or its id (``runq:queue-ids``). Deleting a queue never
deletes run history: its terminal runs stay readable and listed until their retention
ends (the name waits in ``Keys.retired_queues`` for the scheduler's pass to purge them).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from .checks import check_limit, check_text, ms
from .core import BrokerCore
from .errors import InvalidInput, WorkQueueBusy, WorkQueueNotFound
from .keys import QueueKeys
from .models import Deployment, WorkQueue
from .readiness import QueueHealth, judge_queue
from .records import decode_queue, pairs_to_dict
from .registry import read_live_agents

if TYPE_CHECKING:
    from .scheduling import Scheduler

MOVE_HINT = "runq deployment set-work-queue DEPLOYMENT OTHER-QUEUE"
#: Bytes of UTF-8 a queue's description may take: it lives in the queue's config, read
#: by every listing of queues.
MAX_DESCRIPTION_BYTES = 4096


class Unchanged(Enum):
    """The default of :meth:`WorkQueues.update_work_queue`'s limit: leave it as it is."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def checked_description(description: Any) -> str:
    """A description that can be stored: text, UTF-8, at most MAX_DESCRIPTION_BYTES."""
    if not isinstance(description, str):
        raise InvalidInput(
            f"A work queue's description must be text, not {type(description).__name__}."
        )
    check_text([description])
    size = len(description.encode("utf-8"))
    if size > MAX_DESCRIPTION_BYTES:
        raise InvalidInput(
            f"A work queue's description may take {MAX_DESCRIPTION_BYTES:,} bytes of UTF-8 "
            f"at most; this one takes {size:,}."
        )
    return description


class WorkQueueInUse(InvalidInput):
    """Deployments send their runs to the queue: deleting it would strand them."""

    def __init__(self, name: str, deployments: Sequence[str]) -> None:
        named = ", ".join(repr(d) for d in deployments)
        super().__init__(
            f"Work queue {name!r} is the queue of deployment(s) {named}: move them first "
            f"({MOVE_HINT}), or force the delete (--force: the queue is then created "
            "again, empty, for them)."
        )
        self.name = name
        self.deployments = list(deployments)


class WorkQueueInFlight(WorkQueueBusy, InvalidInput):
    """Runs are PENDING, RUNNING or CANCELLING: their owners still write to them, so
    the delete waits for them to end, forced or not."""

    def __init__(self, name: str, active: int) -> None:
        super().__init__(name, active)
        Exception.__init__(
            self,
            f"Work queue {name!r} has {active} run(s) in flight; wait for them to end "
            "or cancel them (runq flow-run cancel ID), then delete it.",
        )


def _as_uuid(text: str) -> str | None:
    """The canonical form of ``text`` when it is a UUID (a queue id may be), else None."""
    if len(text) < 32 or len(text) > 38:  # names are rarely that long: no parse needed
        return None
    try:
        return str(UUID(text))
    except ValueError:
        return None


class WorkQueues(BrokerCore):
    """The Broker's work-queue methods."""

    if TYPE_CHECKING:  # what the classes it is composed with provide

        def list_deployments(self) -> list[Deployment]: ...

        def scheduler(self) -> Scheduler: ...

        def live_agent_ids(self, agent_ids: Sequence[str]) -> set[str]: ...

    def _create_queue(
        self, name: str, mode: str, concurrency_limit: int | None, description: str
    ) -> tuple[WorkQueue, bool]:
        keys = self._queue(name)
        if concurrency_limit is not None:
            check_limit(concurrency_limit)
        checked_description(description)
        self.client.sadd(self.keys.queue_names, name)
        created, config = self.scripts.queue_create(
            keys,
            mode=mode,
            queue_id=str(uuid4()),
            description=description,
            limit=concurrency_limit,
            name=name,
        )
        queue = decode_queue(pairs_to_dict(config))
        self.client.hset(self.keys.queue_ids, str(queue.id), name)
        if created:  # a retired name lives again: its history is the queue's own again
            self.client.srem(self.keys.retired_queues, name)
        return queue, bool(created)

    def create_work_queue(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkQueue:
        """Create a work queue.

        Args:
            name: 1-100 printable characters, none of ``{ } :``.
            concurrency_limit: most runs PENDING or RUNNING at once; None for no limit.
            description: free text, at most MAX_DESCRIPTION_BYTES (4 KiB) of UTF-8.

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

    def work_queue_name(self, name_or_id: str | UUID) -> str:
        """The name of the queue whose id is ``name_or_id``, else ``name_or_id`` itself.

        An id wins over a queue that happens to be named like one: ids are what tools
        and the UI pass. Only text shaped like a UUID costs a lookup.
        """
        text = str(name_or_id)
        queue_id = _as_uuid(text)
        if queue_id is None:
            return text
        mapped: str | None = self.client.hget(self.keys.queue_ids, queue_id)
        return mapped if mapped is not None else text

    def _existing_queue(self, name_or_id: str | UUID) -> tuple[str, QueueKeys]:
        """The queue's name and keys; a name no queue could have is simply not found."""
        name = self.work_queue_name(name_or_id)
        try:
            return name, self._queue(name)
        except InvalidInput:
            raise WorkQueueNotFound(name) from None

    def read_work_queue(self, name_or_id: str | UUID) -> WorkQueue:
        """One queue with its live counters (active, scheduled, live agents).

        Args:
            name_or_id: the queue's name or id.

        Returns:
            The queue.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        name, keys = self._existing_queue(name_or_id)
        reply = self._queue_read(keys)
        if not reply:
            raise WorkQueueNotFound(name)
        return self._live_only([self._decode_queue_read(reply)])[0]

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
            pairs_to_dict(config),
            int(active),
            int(scheduled),
            agents,
            last_polled or None,
            int(late),
        )

    def _live_only(self, queues: list[WorkQueue]) -> list[WorkQueue]:
        """Keep in each queue's agents only those alive in the agents registry, so the
        counts agree with ``runq agent ls`` (a stopped agent's last poll lingers)."""
        polled = sorted({agent.id for queue in queues for agent in queue.agents})
        live = self.live_agent_ids(polled) if polled else set()
        for queue in queues:
            queue.agents = [agent for agent in queue.agents if agent.id in live]
        return queues

    def work_queue_names(self, prefixes: Sequence[str] = ()) -> list[str]:
        """The names of every queue, sorted, or of those starting with one of ``prefixes``:
        one read, without the counters (what ``agent start --match`` polls)."""
        return sorted(
            name
            for name in self.client.smembers(self.keys.queue_names)
            if not prefixes or any(name.startswith(prefix) for prefix in prefixes)
        )

    def list_work_queues(self, prefix: str | None = None) -> list[WorkQueue]:
        """Every queue, by name, optionally those whose name starts with ``prefix``.

        Returns:
            The queues with their counters, sorted by name.
        """
        names = self.work_queue_names([prefix] if prefix is not None else ())
        if self.cluster:  # one script call per queue, each on its queue's node
            replies = [self._queue_read(self.keys.queue(n)) for n in names]
        else:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                self._queue_read(self.keys.queue(name), client=pipe)
            replies = pipe.execute()
        return self._live_only([self._decode_queue_read(reply) for reply in replies if reply])

    def work_queue_health(self, queues: Sequence[WorkQueue]) -> list[QueueHealth]:
        """The health of each queue as read or listed (``broker/readiness.py``: what
        ``work-queue ls``, the UI, the JSON API and the metrics show), judged against
        one read of the agents registry at Redis' time."""
        now = self.server_time()
        live = read_live_agents(self, now) if queues else []
        return [judge_queue(queue, live, now) for queue in queues]

    def _update_queue(self, name_or_id: str | UUID, fields: dict[str, str]) -> WorkQueue:
        name, keys = self._existing_queue(name_or_id)
        self.scripts.queue_update(keys, name=name, fields=fields)
        return self.read_work_queue(name)

    def pause_work_queue(self, name_or_id: str | UUID) -> WorkQueue:
        """Stop delivery: once this returns, no claim on the queue returns a run.

        Runs already PENDING or RUNNING go on.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name_or_id, {"is_paused": "1"})

    def resume_work_queue(self, name_or_id: str | UUID) -> WorkQueue:
        """Deliver again, and wake the queue's agents.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name_or_id, {"is_paused": "0"})

    def set_concurrency_limit(self, name_or_id: str | UUID, limit: int) -> WorkQueue:
        """Allow at most ``limit`` runs PENDING or RUNNING at once (0 holds everything).

        Raises:
            InvalidInput: the limit is not an integer >= 0.
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name_or_id, {"concurrency_limit": str(check_limit(limit))})

    def clear_concurrency_limit(self, name_or_id: str | UUID) -> WorkQueue:
        """Remove the queue's limit.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name_or_id, {"concurrency_limit": ""})

    def set_work_queue_description(self, name_or_id: str | UUID, description: str) -> WorkQueue:
        """Replace the queue's description (:meth:`update_work_queue` with one field).

        Raises:
            InvalidInput: the description is not text or over MAX_DESCRIPTION_BYTES.
            WorkQueueNotFound: no such queue.
        """
        return self._update_queue(name_or_id, {"description": checked_description(description)})

    def delete_work_queue(self, name_or_id: str | UUID, *, force: bool = False) -> None:
        """Delete the queue with its SCHEDULED runs; its run history stays.

        Terminal runs stay readable by id and listed until the retention time purges
        them (the scheduler's pass sweeps retired queues). A deployment that still names
        the queue gets it back at once with --force: created again, empty, with the
        deployment's schedule materialized on it, as referencing a queue does.

        Args:
            name_or_id: the queue's name or id.
            force: delete even while deployments send their runs to the queue.

        Raises:
            WorkQueueNotFound: no such queue.
            WorkQueueInUse: deployments target the queue and ``force`` is not set.
            WorkQueueInFlight: runs are PENDING, RUNNING or CANCELLING (forced or not).
        """
        name, keys = self._existing_queue(name_or_id)
        if not self.client.exists(keys.config):
            raise WorkQueueNotFound(name)
        users = [d for d in self.list_deployments() if d.work_queue_name == name]
        if users and not force:
            raise WorkQueueInUse(name, [d.name for d in users])
        # Index first: the history is listed through the retired set before the queue goes.
        self.client.sadd(self.keys.retired_queues, name)
        try:
            queue_id, kept, *deleted = self.scripts.queue_delete(keys, name=name)
        except WorkQueueBusy as busy:  # (other failures: the scheduler's pass drops a
            # retired name whose queue still exists)
            self.client.srem(self.keys.retired_queues, name)
            raise WorkQueueInFlight(busy.name, busy.active) from None
        self._forget_queue(name, queue_id, deleted, has_history=int(kept) > 0)
        self._bring_back(name, users)

    def _forget_queue(
        self, name: str, queue_id: str, deleted: Sequence[str], *, has_history: bool
    ) -> None:
        """The global indexes after a delete: the name, the id, the deleted runs."""
        pipe = self.client.pipeline(transaction=False)
        pipe.srem(self.keys.queue_names, name)
        pipe.hdel(self.keys.queue_ids, queue_id)
        if has_history:  # again after the delete: see Scheduler.sweep_retired
            pipe.sadd(self.keys.retired_queues, name)
        else:
            pipe.srem(self.keys.retired_queues, name)
        for start in range(0, len(deleted), 1000):
            pipe.hdel(self.keys.run_index, *deleted[start : start + 1000])
        pipe.execute()
        for run_id in deleted:
            self._run_queues.pop(run_id, None)
        self._index_if_recreated(name)

    def _index_if_recreated(self, name: str) -> None:
        """An agent serving the queue (or a new run) may have created it again between the
        delete script and the index writes above, which then dropped the new queue from
        the indexes: list it again (either order of the two ends with it listed)."""
        queue_id = self.client.hget(self._queue(name).config, "id")
        if queue_id is not None:
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(self.keys.queue_names, name)
            pipe.hset(self.keys.queue_ids, queue_id, name)
            pipe.execute()

    def _bring_back(self, name: str, users: Sequence[Deployment]) -> None:
        """Create the queue again for the deployments that still name it, and put
        their schedules' future runs on it now (the scheduler would wait for its
        horizon to run out)."""
        if not users:
            return
        current = {str(d.id): d for d in self.list_deployments() if d.work_queue_name == name}
        if not current:  # moved away meanwhile
            return
        self.ensure_work_queue(name)
        scheduler = self.scheduler()
        for deployment in current.values():
            if deployment.schedule is not None:
                scheduler.reschedule(deployment)
