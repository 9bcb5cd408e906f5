"""Loads the Lua scripts once and calls them through typed wrappers: one method of
:class:`Scripts` per ``.lua`` file, building that file's KEYS and ARGV from its
declaration in :mod:`.specs` (the names and order of its header), so no caller builds a
KEYS or ARGV list or names a script by string.

Each ``.lua`` file beside this module is one atomic operation; ``include/`` holds the
helper files a script's header includes (:mod:`.sources` puts them together, each script
with only the helpers it declares). redis-py's ``register_script`` sends ``EVALSHA`` and
loads the script once after a server restart or ``SCRIPT FLUSH``. An error Redis raises
inside a script names the file and line it came from, not a line of the composed text.

A file's first line may be a Redis 7 shebang (``#!lua``, ``#!lua flags=allow-oom``,
``#!lua flags=no-writes``): it says how the script behaves when memory is full. It is
kept as the first line of the text sent to Redis 7 and left out for Redis 6.2, which does
not know it (the scripts order their writes for 6.2 instead: docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from ..errors import translate_script_error
from ..keys import QueueKeys
from . import specs
from .sources import (
    WAKE_COUNTED,
    WAKE_PUBLISH,
    WAKE_SPUBLISH,
    WAKE_UNCOUNTED,
    Composed,
    compose,
    locate,
)
from .specs import ScriptSpec

__all__ = [
    "GLOBAL_SCRIPTS",
    "QUEUE_SCRIPTS",
    "RUN_FIELDS",
    "WAKE_COUNTED",
    "WAKE_PUBLISH",
    "WAKE_SPUBLISH",
    "WAKE_UNCOUNTED",
    "Scripts",
    "located",
    "server_major_version",
    "source",
    "uses_sharded_wakeups",
]

QUEUE_SCRIPTS = tuple(specs.QUEUE_SPECS)
GLOBAL_SCRIPTS = tuple(specs.GLOBAL_SPECS)
RUN_FIELDS = len(specs.RUN_CREATE.argv_rest)  # fields per run in run_create.lua's ARGV


def source(name: str, shebang: bool = True, sharded: bool = False, cluster: bool = False) -> str:
    """The text sent to Redis for script ``name``, its helpers included (see
    :func:`.sources.compose` for the flags)."""
    return compose(name, shebang, sharded, cluster).text


def located(error: redis.ResponseError, composed: Composed | None = None) -> redis.ResponseError:
    """``error`` with its ``user_script:N`` turned into the file and line it came from
    (the exception's type is kept: out-of-memory stays out-of-memory)."""
    text = locate(str(error), composed)
    return error if text == str(error) else type(error)(text)


def server_major_version(client: Any) -> int:
    """The major version of the Redis behind ``client`` (one node's, on a cluster)."""
    info = client.info("server")
    if "redis_version" not in info:  # a cluster client may answer per node
        info = next(iter(info.values()))
    return int(str(info["redis_version"]).split(".")[0])


def uses_sharded_wakeups(client: Any) -> bool:
    """True when wake-ups travel by sharded pub/sub: a Redis Cluster of Redis 7 or newer
    (the agent then SSUBSCRIBEs; plain pub/sub elsewhere)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster) and server_major_version(client) >= 7


def _pairs(fields: Mapping[str, str] | None) -> list[str]:
    return [item for pair in (fields or {}).items() for item in pair]


class Scripts:
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] | None = None
        self._composed: dict[str, Composed] = {}

    @property
    def _scripts(self) -> dict[str, Script]:
        if self._registered is None:
            from redis.cluster import RedisCluster

            shebang = server_major_version(self._client) >= 7
            sharded = uses_sharded_wakeups(self._client)
            cluster = isinstance(self._client, RedisCluster)
            self._composed = {
                name: compose(name, shebang, sharded, cluster)
                for name in QUEUE_SCRIPTS + GLOBAL_SCRIPTS
            }
            self._registered = {
                name: self._client.register_script(composed.text)
                for name, composed in self._composed.items()
            }
        return self._registered

    def load_all(self, *, only_missing: bool = False) -> None:
        """SCRIPT LOAD every script now (agents do, at start): a client whose ACL allows
        EVALSHA but not SCRIPT LOAD (the engine user) can then run them. On a cluster
        both commands go to every primary."""
        scripts = list(self._scripts.items())
        if only_missing:
            found = self._client.script_exists(*(script.sha for _, script in scripts))
            if isinstance(found, dict):  # a cluster client answers per node
                found = [all(flags) for flags in zip(*found.values())]
            scripts = [item for item, exists in zip(scripts, found) if not exists]
        for name, script in scripts:
            try:
                self._client.script_load(script.script)
            except redis.ResponseError as error:
                raise located(error, self._composed.get(name)) from None

    def translate(self, error: redis.ResponseError) -> Exception:
        """The exception for a script's error reply (its place in the files named)."""
        return translate_script_error(located(error))

    def _run(
        self, spec: ScriptSpec, keys: Sequence[str], args: Sequence[Any], client: Any = None
    ) -> Any:
        """Run ``spec``'s script; its ``RUNQ`` errors become exceptions."""
        try:
            return self._scripts[spec.name](keys=keys, args=args, client=client)
        except redis.exceptions.NoPermissionError:
            raise  # the caller names the server (broker.core)
        except redis.ResponseError as error:
            raise translate_script_error(located(error, self._composed.get(spec.name))) from None

    # ---- one method per script; KEYS and ARGV as its spec (and header) declares ----------
    # ``client``: a pipeline to queue the call on (its reply comes from ``execute()``).

    def queue_create(
        self,
        keys: QueueKeys,
        *,
        mode: str,
        queue_id: str,
        description: str,
        limit: int | None,
        name: str,
    ) -> Any:
        """queue_create.lua: mode "create" | "ensure"; ``limit`` None for none."""
        spec = specs.QUEUE_CREATE
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "mode": mode,
                    "queue_id": queue_id,
                    "description": description,
                    "limit": "" if limit is None else str(limit),
                    "name": name,
                }
            ),
        )

    def queue_read(
        self, keys: QueueKeys, *, agents_window_ms: int, late_after_ms: int, client: Any = None
    ) -> Any:
        """queue_read.lua: a snapshot of the queue and its counters."""
        spec = specs.QUEUE_READ
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "agents_window_ms": str(agents_window_ms),
                    "late_after_ms": str(late_after_ms),
                }
            ),
            client,
        )

    def queue_gauges(
        self, keys: QueueKeys, *, agents_window_ms: int, late_after_ms: int, client: Any = None
    ) -> Any:
        """queue_gauges.lua: the figures of the queue's metrics (read-only)."""
        spec = specs.QUEUE_GAUGES
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "agents_window_ms": str(agents_window_ms),
                    "late_after_ms": str(late_after_ms),
                }
            ),
            client,
        )

    def queue_update(self, keys: QueueKeys, *, name: str, fields: Mapping[str, str]) -> Any:
        """queue_update.lua: ``fields`` among description, concurrency_limit, is_paused
        ("" removes one)."""
        spec = specs.QUEUE_UPDATE
        return self._run(spec, spec.queue_keys(keys), spec.args({"name": name}, _pairs(fields)))

    def queue_delete(self, keys: QueueKeys, *, name: str) -> Any:
        """queue_delete.lua: the queue with its SCHEDULED runs; its history stays."""
        spec = specs.QUEUE_DELETE
        return self._run(spec, spec.queue_keys(keys), spec.args({"name": name}))

    def run_create(
        self,
        keys: QueueKeys,
        *,
        queue_id: str,
        with_records: bool,
        name: str,
        runs: Iterable[Sequence[str]],
        client: Any = None,
    ) -> Any:
        """run_create.lua: ``runs`` holds the 10 fields of each run, as its header says."""
        spec = specs.RUN_CREATE
        fields: list[str] = []
        for run in runs:
            if len(run) != RUN_FIELDS:
                raise ValueError(f"run_create takes {RUN_FIELDS} fields per run")
            fields.extend(run)
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "queue_id": queue_id,
                    "with_records": "1" if with_records else "0",
                    "name": name,
                },
                fields,
            ),
            client,
        )

    def run_cancel(self, keys: QueueKeys, *, run_id: str, message: str, retention_ms: int) -> Any:
        """run_cancel.lua: the operator's cancel."""
        spec = specs.RUN_CANCEL
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args(
                {
                    "run_id": run_id,
                    "message": message,
                    "retention_ms": str(retention_ms),
                }
            ),
        )

    def claim(
        self,
        keys: QueueKeys,
        *,
        agent_id: str,
        max_runs: int,
        prefetch_ms: int,
        lease_ms: int,
        reclaim_batch: int,
        retention_ms: int,
        nonce: str,
        queue_name: str,
    ) -> Any:
        """claim.lua: up to ``max_runs`` runs for ``agent_id``."""
        spec = specs.CLAIM
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "agent_id": agent_id,
                    "max_runs": str(max_runs),
                    "prefetch_ms": str(prefetch_ms),
                    "lease_ms": str(lease_ms),
                    "reclaim_batch": str(reclaim_batch),
                    "retention_ms": str(retention_ms),
                    "nonce": nonce,
                    "queue_name": queue_name,
                }
            ),
        )

    def set_state(
        self,
        keys: QueueKeys,
        *,
        run_id: str,
        state_type: str,
        state_name: str,
        message: str,
        token: str,
        from_states: Iterable[str],
        due_ms: int | None,
        lease_ms: int,
        retention_ms: int,
        fields: Mapping[str, str] | None = None,
        client: Any = None,
        queue_name: str = "",
    ) -> Any:
        """set_state.lua: compare-and-set of a run's state; ``fields`` stored on the record;
        ``queue_name`` names the queue in its not-found error."""
        spec = specs.SET_STATE
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args(
                {
                    "run_id": run_id,
                    "state_type": state_type,
                    "state_name": state_name,
                    "message": message,
                    "token": token,
                    "from_states": " ".join(from_states),
                    "due_ms": "" if due_ms is None else str(due_ms),
                    "lease_ms": str(lease_ms),
                    "retention_ms": str(retention_ms),
                    "queue_name": queue_name,
                },
                _pairs(fields),
            ),
            client,
        )

    def run_retry(self, keys: QueueKeys, *, run_id: str, message: str, queue_name: str) -> Any:
        """run_retry.lua: an ended run back to SCHEDULED, due now (refused on a deleted queue)."""
        spec = specs.RUN_RETRY
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args(
                {
                    "run_id": run_id,
                    "message": message,
                    "queue_name": queue_name,
                }
            ),
        )

    def run_delete(self, keys: QueueKeys, *, run_id: str) -> Any:
        """run_delete.lua: a run not in flight, with its logs, history and index entries."""
        spec = specs.RUN_DELETE
        return self._run(spec, spec.queue_keys(keys, run_id=run_id), spec.args({"run_id": run_id}))

    def runs_reindex(self, keys: QueueKeys, *, cursor_id: str, cursor_ms: str, batch: int) -> Any:
        """runs_reindex.lua: index one batch of runs written before the indexes existed."""
        spec = specs.RUNS_REINDEX
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "cursor_id": cursor_id,
                    "cursor_ms": cursor_ms,
                    "batch": str(batch),
                }
            ),
        )

    def run_annotate(
        self, keys: QueueKeys, *, run_id: str, token: str, fields: Mapping[str, str]
    ) -> Any:
        """run_annotate.lua: facts the run's owner learned (``infra``)."""
        spec = specs.RUN_ANNOTATE
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args(
                {
                    "run_id": run_id,
                    "token": token,
                },
                _pairs(fields),
            ),
        )

    def runs_unschedule(self, keys: QueueKeys, *, deployment_id: str) -> Any:
        """runs_unschedule.lua: the SCHEDULED runs a deployment's schedule made here."""
        spec = specs.RUNS_UNSCHEDULE
        return self._run(spec, spec.queue_keys(keys, deployment_id=deployment_id), spec.args({}))

    def heartbeat(
        self, keys: QueueKeys, *, lease_ms: int, claims: Iterable[tuple[str, str]]
    ) -> Any:
        """heartbeat.lua: renew the leases of ``(run_id, token)`` pairs."""
        spec, pairs = specs.HEARTBEAT, [(str(run_id), str(token)) for run_id, token in claims]
        return self._run(
            spec,
            spec.queue_keys(keys, runs=[run_id for run_id, _ in pairs]),
            spec.args({"lease_ms": str(lease_ms)}, [item for pair in pairs for item in pair]),
        )

    def sweep(
        self, keys: QueueKeys, *, batch: int, retention_ms: int, agent_ttl_ms: int, lease_ms: int
    ) -> Any:
        """sweep.lua: settle expired leases, purge old terminal runs."""
        spec = specs.SWEEP
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "batch": str(batch),
                    "retention_ms": str(retention_ms),
                    "agent_ttl_ms": str(agent_ttl_ms),
                    "lease_ms": str(lease_ms),
                }
            ),
        )

    def preview(self, keys: QueueKeys, *, horizon_ms: int, limit: int) -> Any:
        """preview.lua: SCHEDULED runs due within the horizon."""
        spec = specs.PREVIEW
        return self._run(
            spec,
            spec.queue_keys(keys),
            spec.args(
                {
                    "horizon_ms": str(horizon_ms),
                    "limit": str(limit),
                }
            ),
        )

    def log_append(
        self,
        keys: QueueKeys,
        *,
        run_id: str,
        max_bytes: int,
        overhead: int,
        lost: int = 0,
        lost_bytes: int = 0,
        notice: str = "",
        lines: Sequence[str | bytes],
    ) -> Any:
        """log_append.lua: ``lines`` is flat: stream, message, stream, message, ..."""
        spec = specs.LOG_APPEND
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args(
                {
                    "run_id": run_id,
                    "max_bytes": str(max_bytes),
                    "overhead": str(overhead),
                    "lost": str(lost),
                    "lost_bytes": str(lost_bytes),
                    "notice": notice,
                },
                lines,
            ),
        )

    def deployment_save(
        self,
        names: str,
        record: str,
        *,
        mode: str,
        deployment_id: str,
        name: str,
        document: str | bytes,
        old_name: str,
    ) -> Any:
        """deployment_save.lua: KEYS ``names`` (the name index) and ``record``."""
        spec = specs.DEPLOYMENT_SAVE
        return self._run(
            spec,
            spec.key_list({"names": names, "record": record}),
            spec.args(
                {
                    "mode": mode,
                    "deployment_id": deployment_id,
                    "name": name,
                    "document": document,
                    "old_name": old_name,
                }
            ),
        )
