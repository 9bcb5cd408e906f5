"""Loads the Lua scripts once and calls them through typed wrappers: one method of
:class:`Scripts` per ``.lua`` file, its keyword arguments named and ordered as the ARGV of
that file's header, so no caller builds an ARGV list or names a script by string. Queue
scripts get their KEYS from :attr:`broker.keys.QueueKeys.script_keys`.

Each ``.lua`` file beside this module is one atomic operation. Work-queue scripts get the
prelude ``_common.lua`` (shared KEYS names and helpers) prepended at load time, so each
file holds only its own logic while the server still runs one self-contained script.
redis-py's ``register_script`` sends ``EVALSHA`` and loads the script once after a
server restart or ``SCRIPT FLUSH``.

A file's first line may be a Redis 7 shebang (``#!lua``, ``#!lua flags=allow-oom``,
``#!lua flags=no-writes``): it says how the script behaves when memory is full. It is
kept at the top of the text sent to Redis 7 and left out for Redis 6.2, which does not
know it (the scripts order their writes for 6.2 instead; see ``_common.lua``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

import redis
from redis.commands.core import Script

from ..errors import translate_script_error
from ..keys import QueueKeys

QUEUE_SCRIPTS = (
    "queue_create",
    "queue_read",
    "queue_update",
    "queue_delete",
    "run_create",
    "run_cancel",
    "run_retry",
    "run_delete",
    "runs_reindex",
    "claim",
    "set_state",
    "run_annotate",
    "runs_unschedule",
    "heartbeat",
    "sweep",
    "preview",
    "log_append",
    "queue_gauges",
)
GLOBAL_SCRIPTS = ("deployment_save",)
RUN_FIELDS = 10  # fields per run in run_create.lua's ARGV


#: The prelude's wake-up command line, and what it becomes on a Redis 7 cluster: sharded
#: pub/sub keeps a queue's wake-ups on its own node instead of the whole cluster bus.
WAKE_PUBLISH = "local WAKE_PUBLISH = 'PUBLISH'"
WAKE_SPUBLISH = "local WAKE_PUBLISH = 'SPUBLISH'"
#: The prelude's claim that a PUBLISH reply counts every subscriber, and what it becomes on
#: a cluster without sharded pub/sub (Redis 6.2), where it counts only one node's: the
#: waiters' liveness cannot be judged there, so "wake" is broadcast (see _common.lua).
WAKE_COUNTED = "local WAKE_COUNTED = true"
WAKE_UNCOUNTED = "local WAKE_COUNTED = false"


@cache
def source(
    name: str, shebang: bool = True, sharded: bool = False, cluster: bool = False
) -> str:
    """The text sent to Redis for script ``name`` (prelude included for queue scripts);
    ``shebang``: keep the file's Redis 7 flags line (False for Redis 6.2); ``sharded``:
    wake-ups by SPUBLISH (a Redis 7 cluster, see :func:`uses_sharded_wakeups`);
    ``cluster``: a Redis Cluster, whose plain PUBLISH replies count one node only."""
    own = resources.files(__package__).joinpath(f"{name}.lua").read_text()
    first, _, rest = own.partition("\n")
    flags = ""
    if first.startswith("#!"):
        flags, own = first + "\n", rest
    if name in QUEUE_SCRIPTS:
        prelude = resources.files(__package__).joinpath("_common.lua").read_text()
        if sharded:
            prelude = prelude.replace(WAKE_PUBLISH, WAKE_SPUBLISH, 1)
        elif cluster:
            prelude = prelude.replace(WAKE_COUNTED, WAKE_UNCOUNTED, 1)
        own = prelude + "\n" + own
    return (flags if shebang else "") + own


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


class Scripts:
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] | None = None

    @property
    def _scripts(self) -> dict[str, Script]:
        if self._registered is None:
            from redis.cluster import RedisCluster

            shebang = server_major_version(self._client) >= 7
            sharded = uses_sharded_wakeups(self._client)
            cluster = isinstance(self._client, RedisCluster)
            self._registered = {
                name: self._client.register_script(source(name, shebang, sharded, cluster))
                for name in QUEUE_SCRIPTS + GLOBAL_SCRIPTS
            }
        return self._registered

    def load_all(self, *, only_missing: bool = False) -> None:
        """SCRIPT LOAD every script now (agents do, at start): a client whose ACL allows
        EVALSHA but not SCRIPT LOAD (the engine user) can then run them. On a cluster
        both commands go to every primary."""
        scripts = list(self._scripts.values())
        if only_missing:
            found = self._client.script_exists(*(script.sha for script in scripts))
            if isinstance(found, dict):  # a cluster client answers per node
                found = [all(flags) for flags in zip(*found.values())]
            scripts = [script for script, exists in zip(scripts, found) if not exists]
        for script in scripts:
            self._client.script_load(script.script)

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        """Run script ``name``; its ``RUNQ`` errors become exceptions."""
        try:
            return self._scripts[name](keys=keys, args=args, client=client)
        except redis.exceptions.NoPermissionError:
            raise  # the caller names the server (broker.core)
        except redis.ResponseError as error:
            raise translate_script_error(error) from None

    # ---- one method per script, arguments in the ARGV order of its header ---------------
    # ``client``: a pipeline to queue the call on (its reply comes from ``execute()``).

    def queue_create(
        self, keys: QueueKeys, *, mode: str, queue_id: str, description: str,
        limit: int | None, name: str,
    ) -> Any:
        """queue_create.lua: mode "create" | "ensure"; ``limit`` None for none."""
        return self._run("queue_create", keys.script_keys, [
            mode, queue_id, description, "" if limit is None else str(limit), name,
        ])

    def queue_read(
        self, keys: QueueKeys, *, agents_window_ms: int, late_after_ms: int, client: Any = None
    ) -> Any:
        """queue_read.lua: a snapshot of the queue and its counters."""
        return self._run(
            "queue_read", keys.script_keys, [str(agents_window_ms), str(late_after_ms)], client
        )

    def queue_gauges(
        self, keys: QueueKeys, *, agents_window_ms: int, late_after_ms: int, client: Any = None
    ) -> Any:
        """queue_gauges.lua: the figures of the queue's metrics (read-only)."""
        return self._run(
            "queue_gauges", keys.script_keys, [str(agents_window_ms), str(late_after_ms)], client
        )

    def queue_update(self, keys: QueueKeys, *, name: str, fields: Mapping[str, str]) -> Any:
        """queue_update.lua: ``fields`` among description, concurrency_limit, is_paused
        ("" removes one)."""
        pairs = [item for pair in fields.items() for item in pair]
        return self._run("queue_update", keys.script_keys, [name, *pairs])

    def queue_delete(self, keys: QueueKeys, *, name: str) -> Any:
        """queue_delete.lua: the queue with its SCHEDULED runs; its history stays."""
        return self._run("queue_delete", keys.script_keys, [name])

    def run_create(
        self, keys: QueueKeys, *, queue_id: str, with_records: bool, name: str,
        runs: Iterable[Sequence[str]], client: Any = None,
    ) -> Any:
        """run_create.lua: ``runs`` holds the 10 fields of each run, as its header says."""
        args = [queue_id, "1" if with_records else "0", name]
        for fields in runs:
            if len(fields) != RUN_FIELDS:
                raise ValueError(f"run_create takes {RUN_FIELDS} fields per run")
            args.extend(fields)
        return self._run("run_create", keys.script_keys, args, client)

    def run_cancel(self, keys: QueueKeys, *, run_id: str, message: str, retention_ms: int) -> Any:
        """run_cancel.lua: the operator's cancel."""
        return self._run("run_cancel", keys.script_keys, [run_id, message, str(retention_ms)])

    def claim(
        self, keys: QueueKeys, *, agent_id: str, max_runs: int, prefetch_ms: int,
        lease_ms: int, reclaim_batch: int, retention_ms: int, nonce: str, queue_name: str,
    ) -> Any:
        """claim.lua: up to ``max_runs`` runs for ``agent_id``."""
        return self._run("claim", keys.script_keys, [
            agent_id, str(max_runs), str(prefetch_ms), str(lease_ms), str(reclaim_batch),
            str(retention_ms), nonce, queue_name,
        ])

    def set_state(
        self, keys: QueueKeys, *, run_id: str, state_type: str, state_name: str,
        message: str, token: str, from_states: Iterable[str], due_ms: int | None,
        lease_ms: int, retention_ms: int, fields: Mapping[str, str] | None = None,
        client: Any = None, queue_name: str = "",
    ) -> Any:
        """set_state.lua: compare-and-set of a run's state; ``fields`` stored on the record;
        ``queue_name`` names the queue in its not-found error."""
        pairs = [item for pair in (fields or {}).items() for item in pair]
        return self._run("set_state", keys.script_keys, [
            run_id, state_type, state_name, message, token, " ".join(from_states),
            "" if due_ms is None else str(due_ms), str(lease_ms), str(retention_ms),
            queue_name, *pairs,
        ], client)

    def run_retry(self, keys: QueueKeys, *, run_id: str, message: str, queue_name: str) -> Any:
        """run_retry.lua: an ended run back to SCHEDULED, due now (refused on a deleted queue)."""
        return self._run("run_retry", keys.script_keys, [run_id, message, queue_name])

    def run_delete(self, keys: QueueKeys, *, run_id: str) -> Any:
        """run_delete.lua: a run not in flight, with its logs, history and index entries."""
        return self._run("run_delete", keys.script_keys, [run_id])

    def runs_reindex(
        self, keys: QueueKeys, *, cursor_id: str, cursor_ms: str, batch: int
    ) -> Any:
        """runs_reindex.lua: index one batch of runs written before the indexes existed."""
        return self._run("runs_reindex", keys.script_keys, [cursor_id, cursor_ms, str(batch)])

    def run_annotate(
        self, keys: QueueKeys, *, run_id: str, token: str, fields: Mapping[str, str]
    ) -> Any:
        """run_annotate.lua: facts the run's owner learned (``infra``)."""
        pairs = [item for pair in fields.items() for item in pair]
        return self._run("run_annotate", keys.script_keys, [run_id, token, *pairs])

    def runs_unschedule(self, keys: QueueKeys, *, deployment_id: str) -> Any:
        """runs_unschedule.lua: the SCHEDULED runs a deployment's schedule made here."""
        return self._run("runs_unschedule", keys.script_keys, [deployment_id])

    def heartbeat(
        self, keys: QueueKeys, *, lease_ms: int, claims: Iterable[tuple[str, str]]
    ) -> Any:
        """heartbeat.lua: renew the leases of ``(run_id, token)`` pairs."""
        args = [str(lease_ms)]
        for run_id, token in claims:
            args += [str(run_id), str(token)]
        return self._run("heartbeat", keys.script_keys, args)

    def sweep(
        self, keys: QueueKeys, *, batch: int, retention_ms: int, agent_ttl_ms: int, lease_ms: int
    ) -> Any:
        """sweep.lua: settle expired leases, purge old terminal runs."""
        return self._run("sweep", keys.script_keys, [
            str(batch), str(retention_ms), str(agent_ttl_ms), str(lease_ms),
        ])

    def preview(self, keys: QueueKeys, *, horizon_ms: int, limit: int) -> Any:
        """preview.lua: SCHEDULED runs due within the horizon."""
        return self._run("preview", keys.script_keys, [str(horizon_ms), str(limit)])

    def log_append(
        self, keys: QueueKeys, *, run_id: str, max_bytes: int, overhead: int,
        lost: int = 0, lost_bytes: int = 0, notice: str = "", lines: Sequence[str | bytes],
    ) -> Any:
        """log_append.lua: ``lines`` is flat: stream, message, stream, message, ..."""
        return self._run("log_append", keys.script_keys, [
            run_id, str(max_bytes), str(overhead), str(lost), str(lost_bytes), notice, *lines,
        ])

    def deployment_save(
        self, names: str, record: str, *, mode: str, deployment_id: str, name: str,
        document: str | bytes, old_name: str,
    ) -> Any:
        """deployment_save.lua: KEYS ``names`` (the name index) and ``record``."""
        return self._run(
            "deployment_save", [names, record], [mode, deployment_id, name, document, old_name]
        )
