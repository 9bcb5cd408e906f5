"""The agents' side of a run: claim, state changes, infrastructure, cancel, heartbeats
and the sweep that settles expired leases."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from .checks import checked_run_id, ms
from .core import BrokerCore
from .errors import FlowRunNotFound, InvalidInput, StaleClaim
from .models import DEFAULT_FROM_STATES, FlowRun, StateType, SweepResult
from .records import decode_run, pairs_to_dict
from .states import HEARTBEAT_GONE, HEARTBEAT_STALE
from .timeutil import datetime_to_ms, ms_to_datetime

#: Longest state name in characters (set_state.lua cuts at 256 bytes, the most 64 UTF-8
#: characters take): it is stored on the record, in its history and names an index.
MAX_STATE_NAME = 64


class Claims(BrokerCore):
    """The Broker's methods agents and engines call on the runs they hold."""

    if TYPE_CHECKING:  # from RunListing, which the Broker is composed with

        def resolve_flow_run_id(self, name_or_id: str | UUID) -> str: ...

    def claim(
        self,
        queue: str,
        agent_id: str,
        *,
        max_runs: int = 1,
        prefetch_seconds: float = 0,
        lease_seconds: float | None = None,
    ) -> list[FlowRun]:
        """Take up to ``max_runs`` due runs of ``queue`` for ``agent_id``, atomically.

        Nothing is returned from a paused queue or beyond its concurrency limit. Each run
        comes back PENDING with ``claim_token``, the fencing token every later write of
        this owner must present.

        Args:
            queue: the work queue.
            agent_id: the claiming agent's unique id (its stream consumer name).
            max_runs: how many runs the agent can take now (at most 1000 per call).
            prefetch_seconds: runs due within this window are claimed early.
            lease_seconds: the claim expires unless renewed by :meth:`heartbeat` in this
                time; default ``settings.lease_seconds``.

        Returns:
            The claimed runs, due order.

        Raises:
            WorkQueueNotFound: no such queue.
            InvalidInput: ``max_runs`` < 1 or a negative prefetch.
        """
        if max_runs < 1 or prefetch_seconds < 0:
            raise InvalidInput("max_runs must be >= 1 and prefetch_seconds >= 0.")
        reply = self.scripts.claim(
            self._queue(queue),
            agent_id=agent_id,
            max_runs=max_runs,
            prefetch_ms=ms(prefetch_seconds),
            lease_ms=ms(lease_seconds or self.settings.lease_seconds),
            reclaim_batch=self.settings.reclaim_batch,
            retention_ms=ms(self.settings.retention_seconds),
            nonce=secrets.token_hex(16),  # makes each claim's token unguessable
            queue_name=queue,
        )
        runs = [decode_run(pairs_to_dict(record), queue) for record in reply[1:]]
        for run in runs:
            self._remember_queue(str(run.id), queue)
        return runs

    def set_state(
        self,
        run_id: str | UUID,
        state: StateType | str,
        *,
        name: str | None = None,
        message: str | None = None,
        token: str | None = None,
        from_states: Iterable[StateType | str] | None = None,
        scheduled_start_time: datetime | None = None,
        result: Any = None,
        infrastructure_id: str | None = None,
        lease_seconds: float | None = None,
        retries: tuple[int, float] | None = None,
    ) -> FlowRun:
        """Move a run to ``state`` if it is in one of ``from_states`` (compare-and-set).

        Terminal states free the run's slot and trim its stream entry; SCHEDULED puts it
        back on the queue (a retry: ``name="AwaitingRetry"``); RUNNING counts an attempt.

        Args:
            run_id: the run.
            state: the target state type (never PENDING: only a claim makes that).
            name: the state's display name; defaults from the type.
            message: why, for people.
            token: the caller's fencing token (its claim's ``claim_token``). Without one
                only a run nobody holds may change (an unclaimed SCHEDULED run, or an
                ended one put back on the queue); operators cancel with
                :meth:`cancel_flow_run`.
            from_states: states the run may leave; defaults to the usual transitions.
            scheduled_start_time: SCHEDULED only; default now (Redis' clock).
            result: COMPLETED only; a JSON-serialisable summary.
            infrastructure_id: where the run executes (host:pid, container, job).
            lease_seconds: RUNNING only; the lease granted.
            retries: RUNNING only; its deployment's (retries, retry delay in seconds),
                which a timeout (judged by Redis, see reclaim.lua) applies as the engine
                applies them to a failure.

        Returns:
            The run after the change.

        Raises:
            FlowRunNotFound: no such run.
            InvalidTransition: the run is not in an allowed from-state.
            StaleClaim: ``token`` is not the run's current one, or the run is claimed
                and no token was given.
            InvalidInput: PENDING, or a name that is not 1 to 64 printable characters.
            WorkQueueNotFound: SCHEDULED on a deleted queue (retry_flow_run brings it back).
        """
        run_id = checked_run_id(run_id)
        target = StateType(state)
        if target is StateType.PENDING:
            raise InvalidInput("Only a claim makes a flow run PENDING.")
        if name is not None and not (1 <= len(name) <= MAX_STATE_NAME and name.isprintable()):
            raise InvalidInput(f"A state name must be 1 to {MAX_STATE_NAME} printable characters.")
        allowed = DEFAULT_FROM_STATES[target] if from_states is None else from_states
        fields: dict[str, str] = {}
        if result is not None:
            fields["result"] = json.dumps(result, default=repr)
        if infrastructure_id is not None:
            fields["infra"] = infrastructure_id
        if retries is not None:
            fields["rtr"], fields["rdl"] = str(retries[0]), str(ms(retries[1]))
        from_values = [StateType(s).value for s in allowed]
        queue = self._queue_of(run_id)
        record = self.scripts.set_state(
            self.keys.queue(queue),
            run_id=run_id,
            state_type=target.value,
            state_name=name or target.default_name,
            message=message or "",
            token="" if token is None else str(token),
            from_states=from_values,
            due_ms=None if scheduled_start_time is None else datetime_to_ms(scheduled_start_time),
            lease_ms=ms(lease_seconds or self.settings.lease_seconds),
            retention_ms=ms(self.settings.retention_seconds),
            fields=fields,
            queue_name=queue,
        )
        return decode_run(pairs_to_dict(record), queue)

    def record_infrastructure(self, run_id: str | UUID, token: str, infrastructure_id: str) -> None:
        """Record where a claimed run executes (host:pid, container, namespace:job).

        Raises:
            FlowRunNotFound: no such run.
            StaleClaim: ``token`` is not the run's current claim.
        """
        run_id = checked_run_id(run_id)
        self.scripts.run_annotate(
            self.keys.queue(self._queue_of(run_id)),
            run_id=run_id,
            token=str(token),
            fields={"infra": infrastructure_id},
        )

    def cancel_flow_run(self, run_id: str | UUID, *, message: str | None = None) -> FlowRun:
        """Cancel a run (by id or name): SCHEDULED or PENDING become CANCELLED at once; a RUNNING run
        becomes CANCELLING and its owner (told through the heartbeat reply and the
        queue's wake channel) stops its infrastructure, then marks it CANCELLED.

        Returns:
            The run after the change.

        Raises:
            FlowRunNotFound: no such run.
            InvalidTransition: the run already ended (or is already cancelling).
        """
        run_id = self.resolve_flow_run_id(run_id)
        queue = self._queue_of(run_id)
        record = self.scripts.run_cancel(
            self.keys.queue(queue),
            run_id=run_id,
            message=message or "cancelled by an operator",
            retention_ms=ms(self.settings.retention_seconds),
        )
        return decode_run(pairs_to_dict(record), queue)

    def heartbeat(
        self, run_id: str | UUID, token: str, *, lease_seconds: float | None = None
    ) -> StateType:
        """Renew the lease of a run this owner holds.

        Returns:
            The run's current state type: CANCELLING tells the owner to stop it.

        Raises:
            StaleClaim: the run was claimed again by someone else.
            FlowRunNotFound: no such run.
        """
        run_id = checked_run_id(run_id)
        queue = self._queue_of(run_id)
        status = self.heartbeat_runs(queue, [(run_id, token)], lease_seconds=lease_seconds)[run_id]
        if status == HEARTBEAT_STALE:
            raise StaleClaim(run_id)
        if status == HEARTBEAT_GONE:
            raise FlowRunNotFound(run_id)
        return StateType(status)

    def heartbeat_runs(
        self,
        queue: str,
        claims: Sequence[tuple[str, str]],
        *,
        lease_seconds: float | None = None,
    ) -> dict[str, str]:
        """Renew many leases of one queue in one call (what an agent does).

        Args:
            queue: the work queue the runs are on.
            claims: ``(run_id, token)`` pairs.
            lease_seconds: new lease from now; default ``settings.lease_seconds``.

        Returns:
            Run id -> its state type, or ``"STALE"`` / ``"GONE"``.
        """
        if not claims:
            return {}
        reply = self.scripts.heartbeat(
            self._queue(queue),
            lease_ms=ms(lease_seconds or self.settings.lease_seconds),
            claims=claims,
        )
        return {str(run_id): status for (run_id, _), status in zip(claims, reply)}

    def sweep(self, queue: str | None = None) -> SweepResult:
        """Settle expired leases and purge terminal runs older than the retention time.

        Never-started runs go back to their queue; started runs whose heartbeats stopped
        become CRASHED; their slots are freed.

        Args:
            queue: one queue; every queue by default.

        Returns:
            The ids of the runs requeued, crashed, cancelled, timed out and purged.
        """
        names = [queue] if queue else sorted(self.client.smembers(self.keys.queue_names))
        result = SweepResult()
        batch = self.settings.reclaim_batch
        for name in names:
            while True:
                requeued, crashed, cancelled, purged, timed_out = self.scripts.sweep(
                    self._queue(name),
                    batch=batch,
                    retention_ms=ms(self.settings.retention_seconds),
                    agent_ttl_ms=ms(self.settings.agent_ttl_seconds),
                    lease_ms=ms(self.settings.lease_seconds),
                )
                result.requeued += map(UUID, requeued)
                result.crashed += map(UUID, crashed)
                result.cancelled += map(UUID, cancelled)
                result.purged += map(UUID, purged)
                result.timed_out += map(UUID, timed_out)
                if purged:
                    self.client.hdel(self.keys.run_index, *purged)
                settled = len(requeued) + len(crashed) + len(cancelled) + len(timed_out)
                if max(settled, len(purged)) < batch:
                    break
        return result

    def next_due_time(self, queue: str) -> datetime | None:
        """The due time of the queue's earliest SCHEDULED run in its schedule, if any.

        Agents sleep until this time minus their prefetch when no signal wakes them.
        """
        first = self.client.zrange(self._queue(queue).scheduled, 0, 0, withscores=True)
        return ms_to_datetime(first[0][1]) if first else None
