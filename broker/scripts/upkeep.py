"""The typed wrappers of the scripts that keep runs alive and tidy (heartbeat, sweep),
read ahead (preview), store logs and save deployments: the second half of
:class:`runq.broker.scripts.Scripts`, apart to keep each module short."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..keys import QueueKeys
from . import specs
from .base import ScriptsBase


class UpkeepScripts(ScriptsBase):
    """Heartbeat, sweep, preview, log_append and deployment_save (see :class:`Scripts`)."""

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
