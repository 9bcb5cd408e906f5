"""Flow runs: create (one, many, the bulk enqueue), read, list, preview, unschedule."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable
from uuid import UUID

from .checks import checked_run_id, ms, validated
from .core import BrokerCore
from .enqueue import create_runs, enqueue_runs, unschedule_runs
from .errors import FlowRunNotFound, InvalidInput
from .models import Deployment, FlowRun, FlowRunCreate, StateType, WorkQueue
from .records import decode_run, pairs_to_dict

MAX_PREVIEW_HOURS = 24 * 366 * 100  # a century: beyond any horizon the scheduler fills
MAX_LIST_LIMIT = 1_000_000


class FlowRuns(BrokerCore):
    """The Broker's flow-run methods (``read_deployment``, ``read_work_queue`` come from
    the Deployments and WorkQueues classes it is composed with)."""

    if TYPE_CHECKING:  # what the classes it is composed with provide

        def read_deployment(self, name_or_id: str | UUID) -> Deployment: ...

        def read_work_queue(self, name_or_id: str | UUID) -> WorkQueue: ...

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

        Returns:
            The run (the existing one when the idempotency key was known).

        Raises:
            InvalidInput: no queue, bad name, parameters not JSON-serialisable or over
                ``settings.max_parameters_bytes`` (merged with the deployment's).
            DeploymentNotFound: no such deployment.
        """
        request: dict[str, Any] = {
            "parameters": parameters or {},
            "scheduled_start_time": scheduled_start_time,
            "start_in_seconds": start_in_seconds,
            "idempotency_key": idempotency_key,
            "tags": list(tags),
            "name": name,
        }
        if deployment is not None:
            found = self.read_deployment(deployment)
            queue = queue or found.work_queue_name
            request.update(
                deployment_id=found.id,
                flow_name=found.flow_name,
                parameters={**found.parameters, **request["parameters"]},
                tags=list(dict.fromkeys([*found.tags, *request["tags"]])),
            )
        if queue is None:
            raise InvalidInput("A flow run needs a work queue or a deployment.")
        return self.create_flow_runs(queue, [validated(FlowRunCreate, request)])[0]

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
        return [decode_run(pairs_to_dict(record), queue) for record in create_runs(self, queue, runs)]

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

    def read_flow_run(self, run_id: str | UUID) -> FlowRun:
        """One flow run by id.

        Raises:
            InvalidInput: not a run id.
            FlowRunNotFound: no such run (or its record expired after retention).
        """
        run_id = checked_run_id(run_id)
        queue = self._queue_of(run_id)
        fields = self.client.hgetall(self.keys.queue(queue).run(run_id))
        if not fields:
            raise FlowRunNotFound(run_id)
        return decode_run(fields, queue)

    def list_flow_runs(
        self,
        queue: str | None = None,
        *,
        states: Iterable[StateType | str] | None = None,
        deployment_id: str | UUID | None = None,
        limit: int = 100,
    ) -> list[FlowRun]:
        """Runs, newest first, optionally filtered.

        Args:
            queue: one queue's runs; all queues by default.
            states: keep only runs in these state types.
            deployment_id: keep only this deployment's runs.
            limit: at most this many runs.

        Returns:
            Matching runs, newest first.

        Raises:
            WorkQueueNotFound: ``queue`` does not exist.
        """
        if not 0 < limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        wanted = {StateType(s) for s in states} if states else None
        dep = str(deployment_id) if deployment_id else None
        if queue is not None:
            queues = [self.read_work_queue(queue).name]
        else:
            queues = sorted(self.client.smembers(self.keys.queue_names))
        found: list[FlowRun] = []
        for name in queues:
            found.extend(self._scan_runs(name, wanted, dep, limit))
        found.sort(key=lambda run: run.created, reverse=True)
        return found[:limit]

    def _scan_runs(
        self, queue: str, wanted: set[StateType] | None, dep: str | None, limit: int
    ) -> list[FlowRun]:
        keys = self.keys.queue(queue)
        found: list[FlowRun] = []
        start, page = 0, max(limit, 200)
        while len(found) < limit:
            ids = self.client.zrevrange(keys.runs, start, start + page - 1)
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for run_id in ids:
                pipe.hgetall(keys.run(run_id))
            for fields in pipe.execute():
                if not fields:
                    continue
                run = decode_run(fields, queue)
                if wanted and run.state.type not in wanted:
                    continue
                if dep and str(run.deployment_id) != dep:
                    continue
                found.append(run)
            start += page
        return found[:limit]

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
