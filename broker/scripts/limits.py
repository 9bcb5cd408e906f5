"""The typed wrappers of the named concurrency limits' scripts (their own slot
``{l:NAME}``) and of the two queue scripts that park a run waiting for a limit and send
it back: a part of :class:`runq.broker.scripts.Scripts`, apart to keep each module short."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..keys import LimitKeys, QueueKeys
from . import specs
from .base import ScriptsBase
from .specs import ScriptSpec


def value_keys(spec: ScriptSpec, keys: LimitKeys, value: str) -> list[str]:
    """KEYS of a script on one value of a limit (``""`` for a plain limit)."""
    return spec.key_list(
        {
            "config": keys.config,
            "values": keys.values,
            "holders": keys.holders(value),
            "claims": keys.claims(value),
            "waiting": keys.waiting(value),
            "notified": keys.notified(value),
            "where": keys.where(value),
            "starts": keys.starts(value),
        }
    )


class LimitScripts(ScriptsBase):
    """limit_acquire, limit_release, limit_pass, limit_save, limit_delete, run_park and
    run_unpark (see :class:`Scripts`)."""

    def limit_acquire(
        self,
        keys: LimitKeys,
        *,
        run_id: str,
        claim_id: str,
        queue: str,
        due_ms: int,
        value: str,
        notify_ms: int,
    ) -> Any:
        """limit_acquire.lua: take a slot for a claimed run, or put it in line."""
        spec = specs.LIMIT_ACQUIRE
        return self._run(
            spec,
            value_keys(spec, keys, value),
            spec.args(
                {
                    "run_id": run_id,
                    "claim_id": claim_id,
                    "queue": queue,
                    "due_ms": str(due_ms),
                    "value": value,
                    "notify_ms": str(notify_ms),
                }
            ),
        )

    def limit_release(
        self, keys: LimitKeys, *, run_id: str, claim_id: str, value: str, notify_ms: int
    ) -> Any:
        """limit_release.lua: give back a slot (or a place in line), pass it on."""
        spec = specs.LIMIT_RELEASE
        return self._run(
            spec,
            value_keys(spec, keys, value),
            spec.args(
                {
                    "run_id": run_id,
                    "claim_id": claim_id,
                    "value": value,
                    "notify_ms": str(notify_ms),
                }
            ),
        )

    def limit_pass(
        self,
        keys: LimitKeys,
        *,
        value: str,
        notify_ms: int,
        older_ms: int,
        max_holders: int,
        resend: str = "",
    ) -> Any:
        """limit_pass.lua: send waiters back for free slots, list holders to check."""
        spec = specs.LIMIT_PASS
        return self._run(
            spec,
            value_keys(spec, keys, value),
            spec.args(
                {
                    "value": value,
                    "notify_ms": str(notify_ms),
                    "older_ms": str(older_ms),
                    "max_holders": str(max_holders),
                    "resend": resend,
                }
            ),
        )

    def limit_save(
        self, keys: LimitKeys, *, mode: str, name: str, fields: Mapping[str, str]
    ) -> Any:
        """limit_save.lua: create (``mode="create"``) or change (``"update"``) a limit."""
        spec = specs.LIMIT_SAVE
        pairs = [item for pair in fields.items() for item in pair]
        return self._run(
            spec,
            spec.key_list({"config": keys.config}),
            spec.args({"mode": mode, "name": name}, pairs),
        )

    def limit_delete(self, keys: LimitKeys, *, name: str) -> Any:
        """limit_delete.lua: delete a limit; returns the runs that waited on it."""
        spec = specs.LIMIT_DELETE
        return self._run(
            spec,
            spec.key_list(
                {"config": keys.config, "values": keys.values, "value_prefix": keys.value_prefix}
            ),
            spec.args({"name": name}),
        )

    def run_park(
        self, keys: QueueKeys, *, run_id: str, token: str, message: str, limit: str
    ) -> Any:
        """run_park.lua: a claimed run waits for a limit, out of its queue's due runs."""
        spec = specs.RUN_PARK
        return self._run(
            spec,
            spec.queue_keys(keys, run_id=run_id),
            spec.args({"run_id": run_id, "token": token, "message": message, "limit": limit}),
        )

    def run_unpark(self, keys: QueueKeys, *, run_id: str) -> Any:
        """run_unpark.lua: a waiting run back among its queue's due runs."""
        spec = specs.RUN_UNPARK
        return self._run(spec, spec.queue_keys(keys, run_id=run_id), spec.args({"run_id": run_id}))
