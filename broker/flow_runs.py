"""Flow runs: create (one, many, the bulk enqueue), read, retry, delete, preview,
unschedule (finding and listing them: run_listing.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from .checks import ms, validated
from .enqueue import create_runs, enqueue_runs, unschedule_runs
from .errors import FlowRunNotFound, InvalidInput, InvalidTransition
from .models import Deployment, FlowRun, FlowRunCreate, WorkQueue
from .parameters import check_parameters
from .records import decode_history, decode_run, pairs_to_dict
from .run_listing import RunListing

MAX_PREVIEW_HOURS = 24 * 366 * 100  # a century: beyond any horizon the scheduler fills
RETRYABLE = frozenset({"FAILED", "CRASHED", "CANCELLED"})  # as run_retry.lua


class FlowRuns(RunListing):
    """The Broker's flow-run methods (``read_deployment``, ``read_work_queue`` come from
    the Deployments and WorkQueues classes it is composed with)."""

    if TYPE_CHECKING:  # what the classes it is composed with provide

        def read_deployment(self, name_or_id: str | UUID) -> Deployment: ...

        def read_work_queue(self, name_or_id: str | UUID) -> WorkQueue: ...

        def ensure_work_queue(self, name: str) -> tuple[WorkQueue, bool]: ...

    def create_flow_run(
        self,
        queue: str | None = None,
        *,
        deployment: str | UUID | None = None,
        parameters: dict[str, Any] | None = None,
        scheduled_start_time: datetime | None = None,
        start_in_seconds: float = 0,
        idempotency_key: str | None = None,
        tags: Iterable[str] = (),
        name: str | None = None,
        timeout_seconds: float | None = None,
    ) -> FlowRun:
        """Create one flow run, SCHEDULED, on a queue.

        Args:
            queue: the work queue; defaults to the deployment's.
            deployment: a deployment name or id; its parameters are the defaults.
            parameters: JSON-serialisable parameters, merged over the deployment's.
            scheduled_start_time: absolute due time; by default the run is due now.
            start_in_seconds: due this long after Redis' current time.
            idempotency_key: a run with this key on the queue is returned instead of a
                new one, however many callers race.
            tags: labels for people and filters.
            name: a name; by default a generated ``adjective-animal``.
            timeout_seconds: stop it and end it FAILED (``TimedOut``) if it still runs
                this long after it started; by default its deployment's timeout.

        Returns:
            The run (the existing one when the idempotency key was known).

        Raises:
            InvalidInput: no queue, bad name, parameters not JSON-serialisable or over
                ``settings.max_parameters_bytes`` (merged with the deployment's), or
                missing, unknown or ill-typed for the deployment's parameter schema.
            DeploymentNotFound: no such deployment.
        """
        request: dict[str, Any] = {
            "parameters": parameters or {},
            "scheduled_start_time": scheduled_start_time,
            "start_in_seconds": start_in_seconds,
            "idempotency_key": idempotency_key,
            "tags": list(tags),
            "name": name,
            "timeout_seconds": timeout_seconds,
        }
        if deployment is not None:
            found = self.read_deployment(deployment)
            queue = queue or found.work_queue_name
            request.update(
                deployment_id=found.id,
                flow_name=found.flow_name,
                parameters={**found.parameters, **request["parameters"]},
                tags=list(dict.fromkeys([*found.tags, *request["tags"]])),
                timeout_seconds=timeout_seconds or found.timeout_seconds,
            )
        if queue is None:
            raise InvalidInput("A flow run needs a work queue or a deployment.")
        run = validated(FlowRunCreate, request)
        if deployment is not None:  # before anything is written: no run, no queue slot
            check_parameters(found.parameter_schema, run.parameters)
        return self.create_flow_runs(queue, [run])[0]

    def create_flow_runs(
        self, queue: str, runs: Iterable[FlowRunCreate | dict[str, Any]]
    ) -> list[FlowRun]:
        """Create many runs on one queue in few round trips.

        Args:
            queue: the work queue, created if needed.
            runs: one :class:`FlowRunCreate` (or its fields) per run.

        Returns:
            The runs in request order (existing ones where an idempotency key was known).

        Raises:
            InvalidInput: a bad queue name or run field (batches before it are stored).
        """
        return [
            decode_run(pairs_to_dict(record), queue) for record in create_runs(self, queue, runs)
        ]

    def enqueue_flow_runs(
        self, queue: str, runs: Iterable[FlowRunCreate | dict[str, Any]]
    ) -> list[str]:
        """Like :meth:`create_flow_runs` but returns only the run ids: the fast path.

        While Redis stores one batch, this thread encodes the next (the socket wait
        releases the GIL), so the client and the server work side by side.

        Returns:
            The run ids, in request order.

        Raises:
            InvalidInput: a bad queue name or run field (batches before it are stored).
        """
        return enqueue_runs(self, queue, runs)

    def read_flow_run(self, name_or_id: str | UUID) -> FlowRun:
        """One flow run, by id or by name, with its state history (oldest first).

        Raises:
            FlowRunNotFound: no such run (or its record expired after retention).
            InvalidInput: several runs have that name (the message lists their ids).
        """
        run_id = self.resolve_flow_run_id(name_or_id)
        queue = self._queue_of(run_id)
        keys = self.keys.queue(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.run(run_id))
        pipe.lrange(keys.history(run_id), 0, -1)
        fields, history = pipe.execute()
        if not fields:
            raise FlowRunNotFound(run_id)
        run = decode_run(fields, queue)
        run.state_history = decode_history(fields, history)
        return run

    def retry_flow_run(self, name_or_id: str | UUID) -> FlowRun:
        """Put an ended run (FAILED, CRASHED or CANCELLED) back on its queue: SCHEDULED,
        due now (the Retry button of Prefect's UI); its run_count grows when it runs again.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: the run is in another state.
        """
        run_id = self.resolve_flow_run_id(name_or_id)
        queue = self._queue_of(run_id)
        current = self.client.hget(self._queue(queue).run(run_id), "st")
        if current is None:
            raise FlowRunNotFound(run_id)
        if current not in RETRYABLE:
            raise self._not_retryable(run_id, current)
        # A run whose queue was deleted since it ended brings its queue back, the way
        # referencing a queue creates it, before the script (which refuses a deleted queue,
        # so a retried run never waits on a queue nobody lists); a run found unretryable
        # above created nothing.
        self.ensure_work_queue(queue)
        try:
            record = self.scripts.run_retry(
                self._queue(queue),
                run_id=run_id,
                message="retried by an operator",
                queue_name=queue,
            )
        except InvalidTransition as error:  # it changed since it was read
            raise self._not_retryable(run_id, error.current) from None
        return decode_run(pairs_to_dict(record), queue)

    @staticmethod
    def _not_retryable(run_id: str, current: str) -> InvalidInput:
        return InvalidInput(
            f"Flow run {run_id} is {current}: only a FAILED, CRASHED or CANCELLED run can "
            "be retried."
        )

    def delete_flow_run(self, name_or_id: str | UUID) -> None:
        """Delete a run with its logs and history; refused while it is in flight.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: the run is PENDING, RUNNING or CANCELLING (cancel it first).
        """
        run_id = self.resolve_flow_run_id(name_or_id)
        queue = self._queue_of(run_id)
        try:
            self.scripts.run_delete(self._queue(queue), run_id=run_id)
        except InvalidTransition as error:
            raise InvalidInput(
                f"Flow run {run_id} is {error.current}: a run in flight cannot be "
                "deleted; cancel it first."
            ) from None
        self.client.hdel(self.keys.run_index, run_id)
        self._run_queues.pop(run_id, None)

    def in_flight_runs(self, queue: str) -> list[FlowRun]:
        """The runs holding a slot of ``queue`` (PENDING, RUNNING, CANCELLING): at most
        its concurrency limit, so this costs what it returns."""
        keys = self._queue(queue)
        run_ids = self.client.zrange(keys.active, 0, -1)
        if not run_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(keys.run(run_id))
        return [decode_run(record, queue) for record in pipe.execute() if record]

    def preview(self, queue: str, *, hours: float = 1.0, limit: int = 1000) -> list[FlowRun]:
        """The SCHEDULED runs of a queue due within ``hours``, earliest first.

        Reads the same schedule and stream the claim reads from, with Redis' clock.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        if not 0 <= hours <= MAX_PREVIEW_HOURS:  # also refuses NaN
            raise InvalidInput(f"hours must be between 0 and {MAX_PREVIEW_HOURS}.")
        name = self.read_work_queue(queue).name
        reply = self.scripts.preview(
            self.keys.queue(name), horizon_ms=ms(hours * 3600), limit=limit
        )
        runs = [decode_run(pairs_to_dict(record), name) for record in reply[1:]]
        runs.sort(key=lambda run: run.expected_start_time)
        return runs[:limit]

    def unschedule_runs(self, queue: str, deployment_id: str | UUID) -> list[str]:
        """Delete the SCHEDULED runs a deployment's schedule made on ``queue``.

        Runs already claimed (PENDING or later) are never touched.

        Returns:
            The ids of the deleted runs.
        """
        return unschedule_runs(self, queue, deployment_id)
