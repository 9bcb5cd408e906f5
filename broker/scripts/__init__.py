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
    "claim",
    "set_state",
    "run_annotate",
    "runs_unschedule",
    "heartbeat",
    "sweep",
    "preview",
    "log_append",
)
GLOBAL_SCRIPTS = ("deployment_save",)
RUN_FIELDS = 10  # fields per run in run_create.lua's ARGV


@cache
def source(name: str, shebang: bool = True) -> str:
    """The text sent to Redis for script ``name`` (prelude included for queue scripts);
    ``shebang``: keep the file's Redis 7 flags line (False for Redis 6.2)."""
    own = resources.files(__package__).joinpath(f"{name}.lua").read_text()
    first, _, rest = own.partition("\n")
    flags = ""
    if first.startswith("#!"):
        flags, own = first + "\n", rest
    if name in QUEUE_SCRIPTS:
        prelude = resources.files(__package__).joinpath("_common.lua").read_text()
        own = prelude + "\n" + own
    return (flags if shebang else "") + own


def server_major_version(client: Any) -> int:
    """The major version of the Redis behind ``client`` (one node's, on a cluster)."""
    info = client.info("server")
    if "redis_version" not in info:  # a cluster client may answer per node
        info = next(iter(info.values()))
    return int(str(info["redis_version"]).split(".")[0])


class Scripts:
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] | None = None

    @property
    def _scripts(self) -> dict[str, Script]:
        if self._registered is None:
            shebang = server_major_version(self._client) >= 7
            self._registered = {
                name: self._client.register_script(source(name, shebang))
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

    def queue_update(self, keys: QueueKeys, *, name: str, fields: Mapping[str, str]) -> Any:
        """queue_update.lua: ``fields`` among description, concurrency_limit, is_paused
        ("" removes one)."""
        pairs = [item for pair in fields.items() for item in pair]
        return self._run("queue_update", keys.script_keys, [name, *pairs])

    def queue_delete(self, keys: QueueKeys, *, force: bool, name: str) -> Any:
        """queue_delete.lua: the queue with its runs."""
        return self._run("queue_delete", keys.script_keys, ["1" if force else "0", name])

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
    ) -> Any:
        """set_state.lua: compare-and-set of a run's state; ``fields`` stored on the record."""
        pairs = [item for pair in (fields or {}).items() for item in pair]
        return self._run("set_state", keys.script_keys, [
            run_id, state_type, state_name, message, token, " ".join(from_states),
            "" if due_ms is None else str(due_ms), str(lease_ms), str(retention_ms), *pairs,
        ])

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
        lines: Sequence[str | bytes],
    ) -> Any:
        """log_append.lua: ``lines`` is flat: stream, message, stream, message, ..."""
        return self._run(
            "log_append", keys.script_keys, [run_id, str(max_bytes), str(overhead), *lines]
        )

    def deployment_save(
        self, names: str, record: str, *, mode: str, deployment_id: str, name: str,
        document: str | bytes, old_name: str,
    ) -> Any:
        """deployment_save.lua: KEYS ``names`` (the name index) and ``record``."""
        return self._run(
            "deployment_save", [names, record], [mode, deployment_id, name, document, old_name]
        )
