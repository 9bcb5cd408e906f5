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

from ..keys import QueueKeys
from . import specs
from .base import (
    GLOBAL_SCRIPTS,
    QUEUE_SCRIPTS,
    RUN_FIELDS,
    located,
    server_major_version,
    source,
    uses_sharded_wakeups,
)
from .limits import LimitScripts
from .sources import (
    WAKE_COUNTED,
    WAKE_PUBLISH,
    WAKE_SPUBLISH,
    WAKE_UNCOUNTED,
)
from .upkeep import UpkeepScripts

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


def _pairs(fields: Mapping[str, str] | None) -> list[str]:
    return [item for pair in (fields or {}).items() for item in pair]


class Scripts(LimitScripts, UpkeepScripts):
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

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
