"""The typed Python API over runq's Redis data: ``from broker import Broker``.

Every state change of a queue or a run is one Lua script on that queue's slot (see
``broker/scripts``); this module validates input, picks keys, formats arguments and
decodes replies. Global indexes (queue names, run id -> queue, deployments, agents) are
written around the scripts, idempotently, in an order that never hides an accepted run:
an index entry is written before the record it points to, and a dangling one is
harmless.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar
from uuid import UUID, uuid4

import redis
from pydantic import BaseModel, ValidationError

from .connection import Client, as_cluster_url, connect, describe_failure, mask_url
from .embedded import EmbeddedServer
from .errors import (
    BrokerUnavailable,
    DeploymentNotFound,
    FlowRunNotFound,
    InvalidInput,
    InvalidTransition,
    RedisOutOfMemory,
    StaleClaim,
    WorkQueueNotFound,
    is_out_of_memory,
    translate_script_error,
)
from .keys import Keys, QueueKeys
from .models import (
    DEFAULT_FROM_STATES,
    Agent,
    Deployment,
    DeploymentSpec,
    FlowRun,
    FlowRunCreate,
    LogLine,
    StateType,
    SweepResult,
    WorkQueue,
    check_bytes,
    is_utf8,
    validate_name,
)
from .ids import new_run_id
from .names import generate_run_name
from .records import decode_queue, decode_run, pairs_to_dict
from .scripts import Scripts
from .settings import ENV_SETTINGS, BrokerSettings
if TYPE_CHECKING:
    from .scheduling import Scheduler
from .timeutil import datetime_to_ms, datetime_to_us, ms_to_datetime, us_to_datetime
from .text import (
    LOG_LINE_OVERHEAD,
    LOG_STREAMS,
    log_marker,
    split_utf8,
)

Model = TypeVar("Model", bound=BaseModel)
log = logging.getLogger("runq.broker")
CREATE_BATCH = 1000  # runs per run_create call: bounds the time one script holds Redis
RUN_QUEUE_CACHE = 10_000  # run ids whose queue a Broker remembers
MAX_PREVIEW_HOURS = 24 * 366 * 100  # a century: beyond any horizon the scheduler fills
MAX_LIST_LIMIT = 1_000_000
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once: dumps() is slow
LOG_APPEND_BATCH_BYTES = 1024 * 1024  # message bytes per log_append call: bounds its time
LOG_APPEND_BATCH_LINES = 1000


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """``model(**data)``, with a validation failure as one readable InvalidInput line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}" if where else message) from None


def checked_name(name: str, what: str = "work queue") -> str:
    try:
        return validate_name(name)
    except ValueError as error:
        raise InvalidInput(f"Invalid {what} name {name!r}: {error}.") from None


def checked_run_id(run_id: str | UUID) -> str:
    try:
        return str(UUID(str(run_id)))
    except ValueError:
        raise InvalidInput(f"{str(run_id)!r} is not a valid flow run id.") from None


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def check_text(arguments: Iterable[Any]) -> None:
    """Refuse a string Redis cannot be sent (a lone surrogate, as Python decodes bytes that
    are not UTF-8) before anything is written, rather than fail halfway through.

    Looks at each argument and the strings of a list argument (tags, states); what is
    inside a dict (parameters) is the models' to check."""
    for value in arguments:
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, (list, tuple, set, frozenset)):
            texts = [item for item in value if isinstance(item, str)]
        for text in texts:
            if not is_utf8(text):
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise InvalidInput(f"{shown!r} is not valid text (it is not UTF-8).")


def _names_redis_on_failure(cls: type) -> type:
    """Wrap the public methods so a lost connection says which Redis and why, and text
    Redis cannot take is refused before the method starts."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: "Broker", *args: Any, **kwargs: Any) -> Any:
            check_text(args)
            check_text(kwargs.values())
            try:
                return method(self, *args, **kwargs)
            except RedisOutOfMemory:
                raise RedisOutOfMemory(f"Redis at {mask_url(self.url)}") from None
            except (redis.ConnectionError, redis.TimeoutError) as error:
                raise BrokerUnavailable(describe_failure(self.url, error)) from None
            except redis.exceptions.NoPermissionError as error:
                raise BrokerUnavailable(
                    f"Redis at {mask_url(self.url)} refused a command: {error} "
                    "(the ACL user lacks a permission runq needs; see deploy/redis-acl.conf)."
                ) from None
            except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
                if is_out_of_memory(error):
                    raise RedisOutOfMemory(f"Redis at {mask_url(self.url)}") from None
                # READONLY, BUSY, LOADING, a cluster resharding...: transient
                raise BrokerUnavailable(
                    f"Redis at {mask_url(self.url)} refused a command: {error}."
                ) from None

        return wrapper

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, wrap(member))
    return cls


@_names_redis_on_failure
class Broker:
    """runq's work queues, deployments, flow runs and agents on one Redis."""

    def __init__(
        self, client: Client, *, url: str = "", settings: BrokerSettings | None = None
    ) -> None:
        self.client = client
        self.url = url
        #: On a Redis Cluster scripts cannot be pipelined (redis-py refuses EVALSHA in a
        #: cluster pipeline) and multi-key reads must go slot by slot.
        self.cluster = isinstance(client, redis.RedisCluster)
        self.settings = settings or BrokerSettings()
        self.keys = Keys(self.settings.prefix)
        self.scripts = Scripts(client)
        self._run_queues: dict[str, str] = {}

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def from_url(
        cls, url: str, *, settings: BrokerSettings | None = None, cluster: bool = False
    ) -> "Broker":
        """Connect to the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``, or
        ``redis+cluster://`` for a Redis Cluster).

        Args:
            url: the Redis URL, with ``user:password@`` for an ACL user.
            settings: tunables; defaults to :class:`BrokerSettings`.
            cluster: treat a ``redis://`` or ``rediss://`` URL as a cluster's seed node.

        Returns:
            A connected Broker.

        Raises:
            InvalidInput: the URL is malformed.
            BrokerUnavailable: Redis cannot be reached or refuses the credentials.
        """
        url = as_cluster_url(url) if cluster else url
        return cls(connect(url), url=url, settings=settings)

    @classmethod
    def embedded(
        cls, home: str | os.PathLike | None = None, *, settings: BrokerSettings | None = None
    ) -> "Broker":
        """Start or reuse the local redis-server under ``home`` (default ``RUNQ_HOME``).

        Args:
            home: directory holding the socket, configuration and data.
            settings: tunables; defaults to :class:`BrokerSettings`.

        Returns:
            A Broker connected to the embedded server.

        Raises:
            BrokerUnavailable: no redis-server binary, or the server did not start.
        """
        from pathlib import Path

        server = EmbeddedServer(Path(home)) if home else EmbeddedServer.default()
        return cls.from_url(server.ensure_running(), settings=settings)

    @classmethod
    def from_env(cls, url: str | None = None, *, cluster: bool = False) -> "Broker":
        """``url``, else ``RUNQ_API_URL``, else the URL in the file ``RUNQ_API_URL_FILE``
        names (a mounted secret), else the embedded default; settings from env.

        ``cluster`` (or ``RUNQ_REDIS_CLUSTER=1``) reads a ``redis://`` URL as a Redis
        Cluster's seed node.

        Raises:
            InvalidInput: a malformed URL or setting, or an unreadable URL file.
            BrokerUnavailable: Redis cannot be reached.
        """
        from .connection import URL_FILE_ENV, read_url_file

        settings = BrokerSettings.from_env()
        url = url or os.environ.get("RUNQ_API_URL")
        if not url and os.environ.get(URL_FILE_ENV):
            url = read_url_file(os.environ[URL_FILE_ENV])
        cluster = cluster or os.environ.get("RUNQ_REDIS_CLUSTER", "").lower() in ("1", "true", "yes")
        if url:
            return cls.from_url(url, settings=settings, cluster=cluster)
        if cluster:
            raise InvalidInput("--cluster needs a Redis URL (--api or RUNQ_API_URL).")
        return cls.embedded(settings=settings)

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def server_time(self) -> datetime:
        """Redis' clock, which judges every due time and lease.

        Returns:
            The server's current time as an aware UTC datetime.
        """
        seconds, micros = self.client.time()
        return us_to_datetime(seconds * 1_000_000 + micros)

    def eviction_policy(self) -> str | None:
        """Redis' ``maxmemory-policy``, read from ``INFO memory`` (None when INFO is not
        allowed): anything but ``noeviction`` may drop run records under memory pressure.
        Never CONFIG: runq's ACL user has none (deploy/redis-acl.conf)."""
        from .connection import eviction_policy

        return eviction_policy(self.client)

    def server_info(self) -> dict[str, Any]:
        """What ``runq server status`` reports: version, pid, memory and persistence.

        CONFIG is read where the server allows it (managed services often do not).
        """
        info = self.client.info()
        details: dict[str, Any] = {
            "url": mask_url(self.url),
            "pid": info.get("process_id"),
            "version": info.get("redis_version"),
            "uptime_seconds": info.get("uptime_in_seconds"),
            "used_memory": info.get("used_memory"),
            "used_memory_human": info.get("used_memory_human"),
            "used_memory_peak_human": info.get("used_memory_peak_human"),
            "maxmemory_policy": info.get("maxmemory_policy"),
            "aof_enabled": bool(info.get("aof_enabled")),
            "appendfsync": None,
            "save": None,
        }
        try:
            config = self.client.config_get("appendfsync") | self.client.config_get("save")
        except redis.ResponseError:
            config = {}
        details.update(appendfsync=config.get("appendfsync"), save=config.get("save"))
        if self.cluster:  # INFO and CONFIG above came from one node; say how many there are
            details["cluster_primaries"] = len(self.client.get_primaries())
        return details

    # ---- work queues ------------------------------------------------------------------

    def _queue(self, name: str) -> QueueKeys:
        return self.keys.queue(checked_name(name))

    def _create_queue(
        self, name: str, mode: str, concurrency_limit: int | None, description: str
    ) -> tuple[WorkQueue, bool]:
        keys = self._queue(name)
        if concurrency_limit is not None:
            self._check_limit(concurrency_limit)
        self.client.sadd(self.keys.queue_names, name)
        limit = "" if concurrency_limit is None else str(concurrency_limit)
        created, config = self.scripts.queue(
            "queue_create", keys, [mode, str(uuid4()), description, limit]
        )
        queue = decode_queue(pairs_to_dict(config))
        self.client.hset(self.keys.queue_ids, str(queue.id), name)
        return queue, bool(created)

    @staticmethod
    def _check_limit(limit: Any) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInput(f"Invalid concurrency limit {limit!r}: it must be an integer >= 0.")
        return limit

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
        reply = self.scripts.queue("queue_read", keys, self._queue_read_args())
        if not reply:
            raise WorkQueueNotFound(name)
        return self._decode_queue_read(reply)

    def _queue_read_args(self) -> list[str]:
        return [_ms(self.settings.agent_window_seconds), _ms(self.settings.late_after_seconds)]

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
        args = self._queue_read_args()
        if self.cluster:  # one script call per queue, each on its queue's node
            replies = [self.scripts.queue("queue_read", self.keys.queue(n), args) for n in names]
        else:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                self.scripts.queue("queue_read", self.keys.queue(name), args, client=pipe)
            replies = pipe.execute()
        return [self._decode_queue_read(reply) for reply in replies if reply]

    def _update_queue(self, name: str, fields: dict[str, str]) -> WorkQueue:
        args = [item for pair in fields.items() for item in pair]
        self.scripts.queue("queue_update", self._queue(name), args)
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
        return self._update_queue(name, {"concurrency_limit": str(self._check_limit(limit))})

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
        reply = self.scripts.queue("queue_delete", self._queue(name), ["1" if force else "0"])
        queue_id, run_ids = reply[0], reply[1:]
        self.client.srem(self.keys.queue_names, name)
        self.client.hdel(self.keys.queue_ids, queue_id)
        for start in range(0, len(run_ids), 1000):
            self.client.hdel(self.keys.run_index, *run_ids[start : start + 1000])
        for run_id in run_ids:
            self._run_queues.pop(run_id, None)

    # ---- deployments ------------------------------------------------------------------

    def create_deployment(self, spec: DeploymentSpec | None = None, **fields: Any) -> Deployment:
        """Store a new deployment; its work queue is created if needed.

        Args:
            spec: the deployment, or its fields as keyword arguments (``name``,
                ``entrypoint`` or ``command``, ``parameters``, ``work_queue_name``,
                ``infrastructure``, ``tags``, ``retries``, ``retry_delay_seconds``, ...).

        Returns:
            The stored deployment with its id.

        Raises:
            InvalidInput: a field is invalid, or the parameters or the whole record are
                over ``settings.max_parameters_bytes`` / ``max_deployment_bytes``.
            DeploymentExists: the name is taken; nothing was written.
        """
        spec = spec or validated(DeploymentSpec, fields)
        now = self.server_time()
        deployment = Deployment(**spec.model_dump(), created=now, updated=now)
        # Saved first: a taken name is refused before the queue is created.
        self._save_deployment("create", deployment, deployment.name)
        self.ensure_work_queue(deployment.work_queue_name)
        if deployment.schedule is not None:
            self.scheduler().reschedule(deployment)  # preview shows it with no scheduler up
        return deployment

    def scheduler(self) -> "Scheduler":
        """The schedule materializer over this broker (see :mod:`broker.scheduling`)."""
        from .scheduling import Scheduler

        return Scheduler(self)

    def update_deployment(self, name_or_id: str | UUID, **changes: Any) -> Deployment:
        """Change fields of a deployment (validated as a whole before anything is written).

        Returns:
            The updated deployment.

        Raises:
            DeploymentNotFound: no such deployment.
            InvalidInput: the result would be invalid.
            DeploymentExists: a rename to a name another deployment holds.
        """
        current = self.read_deployment(name_or_id)
        data = current.model_dump(exclude={"id", "created", "updated"})
        data.update(changes)
        spec = validated(DeploymentSpec, data)
        deployment = Deployment(
            **spec.model_dump(), id=current.id, created=current.created, updated=self.server_time()
        )
        self._save_deployment("update", deployment, current.name)
        self.ensure_work_queue(deployment.work_queue_name)
        if current.schedule is not None or deployment.schedule is not None:
            self.scheduler().reschedule(deployment, old_queue=current.work_queue_name)
        return deployment

    def _save_deployment(self, mode: str, deployment: Deployment, old_name: str) -> None:
        """Store the record, refused (nothing written) over the parameters' or the
        document's byte bound."""
        self._check_parameters(_JSON.encode(deployment.parameters), "Default parameters are")
        document = deployment.model_dump_json().encode("utf-8")
        check_bytes(
            "The deployment is",
            len(document),
            self.settings.max_deployment_bytes,
            ENV_SETTINGS["max_deployment_bytes"],
        )
        deployment_id = str(deployment.id)
        self.scripts.call(
            "deployment_save",
            [self.keys.deployment_names, self.keys.deployment(deployment_id)],
            [mode, deployment_id, deployment.name, document, old_name],
        )

    def _check_parameters(self, encoded: str, what: str = "Parameters are") -> None:
        """Refuse parameters (their compact JSON, ASCII: one byte a character) over the bound."""
        check_bytes(
            what,
            len(encoded),
            self.settings.max_parameters_bytes,
            ENV_SETTINGS["max_parameters_bytes"],
        )

    def read_deployment(self, name_or_id: str | UUID) -> Deployment:
        """A deployment by name or id.

        Raises:
            DeploymentNotFound: no such deployment.
        """
        text = str(name_or_id)
        deployment_id = self.client.hget(self.keys.deployment_names, text) or text
        raw = self.client.get(self.keys.deployment(deployment_id))
        if raw is None:
            raise DeploymentNotFound(text)
        return Deployment.model_validate_json(raw)

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, sorted by name."""
        ids = self.client.hvals(self.keys.deployment_names)
        if not ids:
            return []
        found = []
        for deployment_id, raw in zip(ids, self.client.mget([self.keys.deployment(i) for i in ids])):
            if not raw:
                continue
            try:
                found.append(Deployment.model_validate_json(raw))
            except ValidationError as error:  # one bad record must not hide the others
                log.warning("Skipping unreadable deployment %s: %s", deployment_id, error.errors()[0]["msg"])
        return sorted(found, key=lambda d: d.name)

    def delete_deployment(self, name_or_id: str | UUID) -> Deployment:
        """Delete a deployment; the SCHEDULED runs its schedule made go too (others stay).

        Returns:
            The deleted deployment.

        Raises:
            DeploymentNotFound: no such deployment.
        """
        deployment = self.read_deployment(name_or_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.deployment(str(deployment.id)))
        pipe.hdel(self.keys.deployment_names, deployment.name)
        pipe.execute()
        if deployment.schedule is not None:
            scheduler = self.scheduler()
            scheduler.unschedule(str(deployment.id), deployment.work_queue_name)
            scheduler.forget(str(deployment.id))
        return deployment

    # ---- flow runs --------------------------------------------------------------------

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
        created: list[FlowRun] = []
        for batch in self._encoded_batches(runs):
            _, records = self._create_batch(queue, batch, with_records=True)
            created.extend(decode_run(pairs_to_dict(record), queue) for record in records)
        return created

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
        ids: list[str] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runq-enqueue") as sender:
            sending = None
            for batch in self._encoded_batches(runs):
                if sending is not None:
                    ids.extend(sending.result()[0])
                sending = sender.submit(self._create_batch, queue, batch, with_records=False)
            if sending is not None:
                ids.extend(sending.result()[0])
        return ids

    def _encoded_batches(
        self, runs: Iterable[FlowRunCreate | dict[str, Any]]
    ) -> Iterable[list[list[str]]]:
        batch: list[list[str]] = []
        for run in runs:
            if not isinstance(run, FlowRunCreate):
                run = validated(FlowRunCreate, run)
            batch.append(self._encode_run(run))
            if len(batch) == CREATE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _encode_run(self, run: FlowRunCreate) -> list[str]:
        try:
            parameters = _JSON.encode(run.parameters)
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"parameters: not JSON-serialisable ({error}).") from None
        self._check_parameters(parameters)
        due = "" if run.scheduled_start_time is None else str(datetime_to_ms(run.scheduled_start_time))
        return [
            new_run_id(),
            run.name or generate_run_name(),
            str(run.deployment_id) if run.deployment_id else "",
            run.flow_name or "",
            parameters,
            _JSON.encode(run.tags) if run.tags else "",
            run.idempotency_key or "",
            due,
            _ms(run.start_in_seconds),
            "1" if run.auto_scheduled and run.deployment_id else "",
        ]

    def _create_batch(
        self, queue: str, batch: list[list[str]], *, with_records: bool
    ) -> tuple[list[str], list[list[str]]]:
        """Store one batch; returns the run ids in order and, if asked, their records."""
        keys = self._queue(queue)
        ids = [fields[0] for fields in batch]
        args = [str(uuid4()), "1" if with_records else "0"]
        for fields in batch:
            args.extend(fields)
        # Index first, record second: an accepted run is always findable by id.
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.keys.queue_names, queue)
        pipe.hset(self.keys.run_index, mapping=dict.fromkeys(ids, queue))
        try:
            if self.cluster:  # the index and the queue live on different nodes
                pipe.execute()
                created_queue, hits, records = self.scripts.queue("run_create", keys, args)
            else:
                self.scripts.queue("run_create", keys, args, client=pipe)
                try:
                    created_queue, hits, records = pipe.execute()[-1]
                except redis.ResponseError as error:
                    raise translate_script_error(error) from None
        except (RedisOutOfMemory, redis.RedisError) as error:
            self._forget_index_entries(queue, ids, error)
            raise
        if hits:  # idempotency keys already known: those runs exist under other ids
            unused = []
            for position, existing in zip(hits[::2], hits[1::2]):
                unused.append(ids[int(position) - 1])
                ids[int(position) - 1] = existing
            self.client.hdel(self.keys.run_index, *unused)
        if created_queue:
            self.client.hset(self.keys.queue_ids, self.client.hget(keys.config, "id"), queue)
        return ids, records

    def _forget_index_entries(self, queue: str, ids: list[str], error: Exception) -> None:
        """The runs were refused (full memory, say) after their index entries were
        written: remove those entries (a removal Redis allows under full memory), so no
        entry points at a run that does not exist. A lost connection leaves them, and
        then it cannot be known whether the runs were created: they stay findable."""
        if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
            return
        try:
            self.client.hdel(self.keys.run_index, *ids)
            if not self.client.exists(self._queue(queue).config):
                self.client.srem(self.keys.queue_names, queue)
        except redis.RedisError as cleanup_error:
            log.warning("Could not remove the index entries of refused runs: %s", cleanup_error)

    def load_scripts(self, *, only_missing: bool = False) -> None:
        """Load runq's scripts into Redis now (agents do at start, and after a restart of
        Redis), so that a client whose ACL user may run them (EVALSHA) but not load them
        (the engine user) can. ``only_missing``: one SCRIPT EXISTS, then load what is gone."""
        self.scripts.load_all(only_missing=only_missing)

    def _remember_queue(self, run_id: str, queue: str) -> None:
        """Cache run id -> queue (immutable for a run); bounded for long-lived agents."""
        if len(self._run_queues) >= RUN_QUEUE_CACHE:
            self._run_queues.clear()
        self._run_queues[run_id] = queue

    def _queue_of(self, run_id: str) -> str:
        queue = self._run_queues.get(run_id)
        if queue is None:
            queue = self.client.hget(self.keys.run_index, run_id)
            if queue is None:
                raise FlowRunNotFound(run_id)
            self._remember_queue(run_id, queue)
        return queue

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
        reply = self.scripts.queue(
            "preview", self.keys.queue(name), [_ms(hours * 3600), str(limit)]
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
        try:
            keys = self._queue(queue)
        except InvalidInput:
            return []
        deleted = self.scripts.queue("runs_unschedule", keys, [str(deployment_id)])
        if deleted:
            self.client.hdel(self.keys.run_index, *deleted)
        return deleted

    def next_due_time(self, queue: str) -> datetime | None:
        """The due time of the queue's earliest SCHEDULED run in its schedule, if any.

        Agents sleep until this time minus their prefetch when no signal wakes them.
        """
        first = self.client.zrange(self._queue(queue).scheduled, 0, 0, withscores=True)
        return ms_to_datetime(first[0][1]) if first else None

    # ---- agents' side: claim, state, heartbeat, sweep -------------------------------------

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
        reply = self.scripts.queue(
            "claim",
            self._queue(queue),
            [
                agent_id,
                str(max_runs),
                _ms(prefetch_seconds),
                _ms(lease_seconds or self.settings.lease_seconds),
                str(self.settings.reclaim_batch),
                _ms(self.settings.retention_seconds),
                secrets.token_hex(16),  # makes each claim's token unguessable
            ],
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

        Returns:
            The run after the change.

        Raises:
            FlowRunNotFound: no such run.
            InvalidTransition: the run is not in an allowed from-state.
            StaleClaim: ``token`` is not the run's current one, or the run is claimed
                and no token was given.
        """
        run_id = checked_run_id(run_id)
        target = StateType(state)
        if target is StateType.PENDING:
            raise InvalidInput("Only a claim makes a flow run PENDING.")
        allowed = DEFAULT_FROM_STATES[target] if from_states is None else from_states
        extra: list[str] = []
        if result is not None:
            extra += ["result", json.dumps(result, default=repr)]
        if infrastructure_id is not None:
            extra += ["infra", infrastructure_id]
        due = "" if scheduled_start_time is None else str(datetime_to_ms(scheduled_start_time))
        args = [
            run_id,
            target.value,
            name or target.default_name,
            message or "",
            "" if token is None else str(token),
            " ".join(StateType(s).value for s in allowed),
            due,
            _ms(lease_seconds or self.settings.lease_seconds),
            _ms(self.settings.retention_seconds),
            *extra,
        ]
        queue = self._queue_of(run_id)
        record = self.scripts.queue("set_state", self.keys.queue(queue), args)
        return decode_run(pairs_to_dict(record), queue)

    def record_infrastructure(self, run_id: str | UUID, token: str, infrastructure_id: str) -> None:
        """Record where a claimed run executes (host:pid, container, namespace:job).

        Raises:
            FlowRunNotFound: no such run.
            StaleClaim: ``token`` is not the run's current claim.
        """
        run_id = checked_run_id(run_id)
        self.scripts.queue(
            "run_annotate",
            self.keys.queue(self._queue_of(run_id)),
            [run_id, str(token), "infra", infrastructure_id],
        )

    def cancel_flow_run(self, run_id: str | UUID, *, message: str | None = None) -> FlowRun:
        """Cancel a run: SCHEDULED or PENDING become CANCELLED at once; a RUNNING run
        becomes CANCELLING and its owner (told through the heartbeat reply and the
        queue's wake channel) stops its infrastructure, then marks it CANCELLED.

        Returns:
            The run after the change.

        Raises:
            FlowRunNotFound: no such run.
            InvalidTransition: the run already ended (or is already cancelling).
        """
        run_id = checked_run_id(run_id)
        queue = self._queue_of(run_id)
        record = self.scripts.queue(
            "run_cancel",
            self.keys.queue(queue),
            [run_id, message or "cancelled by an operator", _ms(self.settings.retention_seconds)],
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
        if status == "STALE":
            raise StaleClaim(run_id)
        if status == "GONE":
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
        args = [_ms(lease_seconds or self.settings.lease_seconds)]
        for run_id, token in claims:
            args += [str(run_id), str(token)]
        reply = self.scripts.queue("heartbeat", self._queue(queue), args)
        return {str(run_id): status for (run_id, _), status in zip(claims, reply)}

    def sweep(self, queue: str | None = None) -> SweepResult:
        """Settle expired leases and purge terminal runs older than the retention time.

        Never-started runs go back to their queue; started runs whose heartbeats stopped
        become CRASHED; their slots are freed.

        Args:
            queue: one queue; every queue by default.

        Returns:
            The ids of the runs requeued, crashed, cancelled and purged.
        """
        names = [queue] if queue else sorted(self.client.smembers(self.keys.queue_names))
        result = SweepResult()
        batch = self.settings.reclaim_batch
        args = [
            str(batch),
            _ms(self.settings.retention_seconds),
            _ms(self.settings.agent_ttl_seconds),
            _ms(self.settings.lease_seconds),
        ]
        for name in names:
            while True:
                requeued, crashed, cancelled, purged = self.scripts.queue(
                    "sweep", self._queue(name), args
                )
                result.requeued += map(UUID, requeued)
                result.crashed += map(UUID, crashed)
                result.cancelled += map(UUID, cancelled)
                result.purged += map(UUID, purged)
                if purged:
                    self.client.hdel(self.keys.run_index, *purged)
                if max(len(requeued) + len(crashed) + len(cancelled), len(purged)) < batch:
                    break
        return result

    # ---- logs -------------------------------------------------------------------------

    def append_logs(self, run_id: str | UUID, lines: Iterable[tuple[str, str]]) -> int:
        """Add ``(stream, message)`` lines to the run's log, within its byte budget.

        Each line is stamped by Redis' clock (its stream entry id). A message longer than
        ``LOG_LINE_MAX_BYTES`` (UTF-8) is stored as several lines of at most that size,
        cut between characters. The log keeps the newest ``log_max_bytes_per_run`` bytes
        of the run (a line costs its length + ``LOG_LINE_OVERHEAD``): older lines are
        dropped, atomically with the append, and ``read_logs`` starts with a line saying
        how many. The log lives as long as the run's record.

        Lines go in calls of at most ~1 MiB, each atomic: when one fails, the lines of
        the calls before it are stored, the others not.

        Args:
            run_id: the run.
            lines: ``(stream, message)`` pairs, stream ``stdout``, ``stderr`` or
                ``engine`` (what runq itself says about the run).

        Returns:
            How many entries were written (a split line counts each piece).

        Raises:
            FlowRunNotFound: no such run (nothing is written).
            InvalidInput: an unknown stream.
        """
        run_id = checked_run_id(run_id)
        keys = self.keys.queue(self._queue_of(run_id))
        head = [run_id, str(self.settings.log_max_bytes_per_run), str(LOG_LINE_OVERHEAD)]
        batch: list[str | bytes] = []
        size = written = 0
        for stream, message in lines:
            if stream not in LOG_STREAMS:
                raise InvalidInput(f"Invalid log stream {stream!r}: one of {', '.join(LOG_STREAMS)}.")
            for piece in split_utf8(str(message).encode("utf-8", "replace")):
                batch += (stream, piece)
                size += len(piece)
                if size >= LOG_APPEND_BATCH_BYTES or len(batch) >= 2 * LOG_APPEND_BATCH_LINES:
                    written += self.scripts.queue("log_append", keys, head + batch)[0]
                    batch, size = [], 0
        if batch:
            written += self.scripts.queue("log_append", keys, head + batch)[0]
        return written

    @staticmethod
    def _entry_id(entry_id: str) -> tuple[int, int]:
        """A log line id (``ms-seq``, or ``ms``) as a comparable pair."""
        ms, _, seq = str(entry_id).partition("-")
        if not (ms.isdigit() and (seq.isdigit() or not seq) and ms.isascii() and seq.isascii()):
            raise InvalidInput(f"{entry_id!r} is not a log line id (like 1718000000000-0).")
        return int(ms), int(seq or 0)

    def read_logs(
        self,
        run_id: str | UUID,
        *,
        after: str = "0",
        count: int = 1000,
        block_seconds: float | None = None,
    ) -> list[LogLine]:
        """Log lines of a run after entry id ``after`` (``"0"``: from the start).

        When the run's log dropped lines to its byte budget, a reader starting before
        them first gets one ``engine`` line saying so (``[runq: 1234 earlier lines (5.1
        MiB) dropped: ...]``), whose id is that of the newest line dropped: passing it
        back as ``after`` goes on with the oldest line kept.

        Args:
            run_id: the run.
            after: the ``id`` of the last line already read.
            count: at most this many lines (the marker included).
            block_seconds: wait up to this long for a new line (``--follow``).

        Returns:
            The lines, oldest first.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: ``after`` is not a log line id.
        """
        run_id = checked_run_id(run_id)
        position = self._entry_id(after)
        keys = self.keys.queue(self._queue_of(run_id))
        key = keys.logs(run_id)
        # One round trip, counters first: a trim between the two makes the marker count
        # a few lines short, never places it after a line it says was dropped.
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(keys.run(run_id), "ld", "ldb", "ldid", "lmax")
        if block_seconds is None:
            pipe.xrange(key, f"({after}" if position > (0, 0) else "-", "+", count=count)
        else:
            pipe.xread({key: after}, count=count, block=int(block_seconds * 1000))
        (dropped, dropped_bytes, newest_dropped, budget), reply = pipe.execute()
        if block_seconds is None:
            entries = reply
        else:
            entries = reply[0][1] if reply else []
        lines = []
        if dropped and newest_dropped and position < self._entry_id(newest_dropped):
            lines.append(LogLine(
                id=newest_dropped,
                timestamp=ms_to_datetime(self._entry_id(newest_dropped)[0]),
                stream="engine",
                message=log_marker(
                    int(dropped), int(dropped_bytes or 0),
                    int(budget or self.settings.log_max_bytes_per_run), since_read=position > (0, 0),
                ),
            ))
        lines += (
            LogLine(
                id=entry_id,
                timestamp=ms_to_datetime(int(entry_id.split("-")[0])),
                stream=fields.get("s", "stdout"),
                message=fields.get("m", ""),
            )
            for entry_id, fields in entries
        )
        return lines[:count]

    # ---- agents registry --------------------------------------------------------------

    def register_agent(
        self,
        agent_id: str,
        *,
        name: str,
        work_queues: Sequence[str],
        hostname: str = "",
        pid: int | None = None,
    ) -> Agent:
        """Record an agent in the registry (``runq agent ls`` reads it).

        Returns:
            The registered agent.
        """
        now = self.server_time()
        agent = Agent(
            id=agent_id,
            name=name,
            work_queues=list(work_queues),
            hostname=hostname,
            pid=pid,
            started=now,
            last_heartbeat=now,
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.keys.agent(agent_id),
            agent.model_dump_json(),
            ex=int(self.settings.agent_ttl_seconds),
        )
        pipe.zadd(self.keys.agent_registry, {agent_id: datetime_to_us(now)})
        pipe.execute()
        return agent

    def agent_heartbeat(self, agent_id: str) -> None:
        """Mark the agent alive now (by Redis' clock)."""
        now = datetime_to_us(self.server_time())
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.agent_registry, {agent_id: now})
        pipe.expire(self.keys.agent(agent_id), int(self.settings.agent_ttl_seconds))
        pipe.execute()

    def deregister_agent(self, agent_id: str) -> None:
        """Remove the agent from the registry (a clean exit)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.keys.agent_registry, agent_id)
        pipe.delete(self.keys.agent(agent_id))
        pipe.execute()

    def _mget(self, keys: list[str]) -> list[str | None]:
        """MGET of keys in any slots: one MGET per node on a cluster (not atomic)."""
        if self.cluster:
            return self.client.mget_nonatomic(keys)
        return self.client.mget(keys)

    def list_agents(self) -> list[Agent]:
        """Registered agents, most recent heartbeat first (silent ones expire)."""
        entries = self.client.zrevrange(self.keys.agent_registry, 0, -1, withscores=True)
        if not entries:
            return []
        raws = self._mget([self.keys.agent(agent_id) for agent_id, _ in entries])
        agents = []
        for (agent_id, score), raw in zip(entries, raws):
            if raw is None:
                self.client.zrem(self.keys.agent_registry, agent_id)
                continue
            agent = Agent.model_validate_json(raw)
            agent.last_heartbeat = us_to_datetime(int(score))
            agents.append(agent)
        return agents
