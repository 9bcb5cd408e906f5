"""What each script receives, declared on the Python side: the names of its KEYS and of
its ARGV, in the order of its file's header. The typed methods of
:class:`~runq.broker.scripts.Scripts` build both lists from these declarations and
nothing else, and tests/test_lua_scripts.py holds each declaration against its header,
so a script and its caller cannot disagree on what comes where.

Key names are those of :class:`~runq.broker.keys.QueueKeys` (``config``, ``active``,
``run_prefix``, ...), plus a run's ``run`` (its record), ``logs`` and ``history``, and
``auto`` (one deployment's schedule-made runs on the queue).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..keys import QueueKeys

#: The keys of one run, by the name a header gives them.
RUN_KEYS = {"run": QueueKeys.run, "logs": QueueKeys.logs, "history": QueueKeys.history}


@dataclass(frozen=True)
class ScriptSpec:
    """One script's KEYS and ARGV names; ``*_rest``: a group repeated after them."""

    name: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]
    keys_rest: tuple[str, ...] = ()
    argv_rest: tuple[str, ...] = ()

    def queue_keys(
        self,
        keys: QueueKeys,
        *,
        run_id: str = "",
        deployment_id: str = "",
        runs: Sequence[str] = (),
    ) -> list[str]:
        """KEYS for a queue script: ``run_id`` names the run of ``run``, ``logs`` and
        ``history``; ``deployment_id`` that of ``auto``; ``runs`` one repeated group each."""
        named = [_key(keys, name, run_id, deployment_id) for name in self.keys]
        for each in runs:
            named += [_key(keys, name, each, deployment_id) for name in self.keys_rest]
        return named

    def key_list(self, values: Mapping[str, str]) -> list[str]:
        """KEYS given by name (a script outside any queue's slot)."""
        if set(values) != set(self.keys):
            raise TypeError(f"{self.name} takes KEYS {self.keys}, not {tuple(values)}")
        return [values[name] for name in self.keys]

    def args(self, values: Mapping[str, Any], rest: Iterable[Any] = ()) -> list[Any]:
        """ARGV in header order from ``values`` by name, then the repeated ``rest``."""
        if set(values) != set(self.argv):
            raise TypeError(f"{self.name} takes ARGV {self.argv}, not {tuple(values)}")
        tail = list(rest)
        group = len(self.argv_rest)
        if (tail and not group) or (group and len(tail) % group):
            raise ValueError(f"{self.name} repeats ARGV in groups of {self.argv_rest}")
        return [values[name] for name in self.argv] + tail


def _key(keys: QueueKeys, name: str, run_id: str, deployment_id: str) -> str:
    if name in RUN_KEYS:
        if not run_id:
            raise ValueError(f"KEYS {name!r} needs a run id")
        return RUN_KEYS[name](keys, run_id)
    if name == "auto":
        if not deployment_id:
            raise ValueError("KEYS 'auto' needs a deployment id")
        return keys.auto(deployment_id)
    value: str = getattr(keys, name)
    return value


RUN = ("run", "logs", "history")

QUEUE_CREATE = ScriptSpec(
    "queue_create",
    ("config", "ready", "events"),
    ("mode", "queue_id", "description", "limit", "name"),
)
QUEUE_READ = ScriptSpec(
    "queue_read",
    ("config", "ready", "scheduled", "active", "agents"),
    ("agents_window_ms", "late_after_ms"),
)
QUEUE_GAUGES = ScriptSpec(
    "queue_gauges",
    ("config", "ready", "scheduled", "active", "agents", "run_prefix"),
    ("agents_window_ms", "late_after_ms"),
)
QUEUE_UPDATE = ScriptSpec(
    "queue_update",
    ("config", "scheduled", "waiters", "wake", "events"),
    ("name",),
    argv_rest=("field", "value"),
)
QUEUE_DELETE = ScriptSpec(
    "queue_delete",
    (
        "config",
        "active",
        "scheduled",
        "ready",
        "agents",
        "waiters",
        "runs",
        "done",
        "idempotency",
        "names_index",
        "ended_index",
        "wake",
        "events",
        "run_prefix",
        "index_prefix",
        "auto_prefix",
    ),
    ("name",),
)
RUN_CREATE = ScriptSpec(
    "run_create",
    (
        "config",
        "ready",
        "scheduled",
        "runs",
        "idempotency",
        "names_index",
        "waiters",
        "wake",
        "events",
        "run_prefix",
        "index_prefix",
        "auto_prefix",
    ),
    ("queue_id", "with_records", "name"),
    argv_rest=(
        "run_id",
        "run_name",
        "deployment_id",
        "flow_name",
        "parameters",
        "tags",
        "idempotency_key",
        "due_ms",
        "delay_ms",
        "auto",
        "timeout_ms",
    ),
)
RUN_CANCEL = ScriptSpec(
    "run_cancel",
    (
        *RUN,
        "active",
        "ready",
        "scheduled",
        "done",
        "ended_index",
        "waiters",
        "wake",
        "events",
        "index_prefix",
        "auto_prefix",
    ),
    ("run_id", "message", "retention_ms"),
)
RUN_RETRY = ScriptSpec(
    "run_retry",
    (
        *RUN,
        "config",
        "active",
        "ready",
        "scheduled",
        "done",
        "ended_index",
        "waiters",
        "wake",
        "events",
        "index_prefix",
    ),
    ("run_id", "message", "queue_name"),
)
RUN_DELETE = ScriptSpec(
    "run_delete",
    (
        *RUN,
        "scheduled",
        "runs",
        "done",
        "idempotency",
        "names_index",
        "ended_index",
        "events",
        "index_prefix",
        "auto_prefix",
    ),
    ("run_id",),
)
RUNS_REINDEX = ScriptSpec(
    "runs_reindex",
    ("config", "runs", "names_index", "run_prefix", "index_prefix"),
    ("cursor_id", "cursor_ms", "batch"),
)
CLAIM = ScriptSpec(
    "claim",
    (
        "config",
        "agents",
        "active",
        "scheduled",
        "ready",
        "done",
        "waiters",
        "wake",
        "events",
        "ended_index",
        "run_prefix",
        "index_prefix",
        "auto_prefix",
    ),
    (
        "agent_id",
        "max_runs",
        "prefetch_ms",
        "lease_ms",
        "reclaim_batch",
        "retention_ms",
        "nonce",
        "queue_name",
    ),
)
SET_STATE = ScriptSpec(
    "set_state",
    (
        *RUN,
        "config",
        "active",
        "ready",
        "scheduled",
        "done",
        "ended_index",
        "waiters",
        "wake",
        "events",
        "index_prefix",
        "auto_prefix",
    ),
    (
        "run_id",
        "state_type",
        "state_name",
        "message",
        "token",
        "from_states",
        "due_ms",
        "lease_ms",
        "retention_ms",
        "queue_name",
    ),
    argv_rest=("field", "value"),
)
RUN_ANNOTATE = ScriptSpec(
    "run_annotate", ("run",), ("run_id", "token"), argv_rest=("field", "value")
)
RUNS_UNSCHEDULE = ScriptSpec(
    "runs_unschedule",
    (
        "auto",
        "scheduled",
        "runs",
        "done",
        "idempotency",
        "names_index",
        "ended_index",
        "events",
        "run_prefix",
        "index_prefix",
        "auto_prefix",
    ),
    (),
)
HEARTBEAT = ScriptSpec(
    "heartbeat",
    ("config", "active"),
    ("lease_ms",),
    keys_rest=("run",),
    argv_rest=("run_id", "token"),
)
SWEEP = ScriptSpec(
    "sweep",
    (
        "config",
        "active",
        "ready",
        "scheduled",
        "runs",
        "done",
        "idempotency",
        "agents",
        "waiters",
        "names_index",
        "ended_index",
        "wake",
        "events",
        "run_prefix",
        "index_prefix",
        "auto_prefix",
    ),
    ("batch", "retention_ms", "agent_ttl_ms", "lease_ms"),
)
PREVIEW = ScriptSpec("preview", ("scheduled", "ready", "run_prefix"), ("horizon_ms", "limit"))
LOG_APPEND = ScriptSpec(
    "log_append",
    ("run", "logs"),
    ("run_id", "max_bytes", "overhead", "lost", "lost_bytes", "notice"),
    argv_rest=("stream", "message"),
)
DEPLOYMENT_SAVE = ScriptSpec(
    "deployment_save",
    ("names", "record"),
    ("mode", "deployment_id", "name", "document", "old_name"),
)
#: A named concurrency limit's keys at one value (broker/keys.py LimitKeys).
LIMIT_VALUE = ("config", "values", "holders", "claims", "waiting", "notified", "where", "starts")
LIMIT_ACQUIRE = ScriptSpec(
    "limit_acquire", LIMIT_VALUE, ("run_id", "claim_id", "queue", "due_ms", "value", "notify_ms")
)
LIMIT_RELEASE = ScriptSpec(
    "limit_release", LIMIT_VALUE, ("run_id", "claim_id", "value", "notify_ms")
)
LIMIT_PASS = ScriptSpec(
    "limit_pass", LIMIT_VALUE, ("value", "notify_ms", "older_ms", "max_holders", "resend")
)
LIMIT_SAVE = ScriptSpec("limit_save", ("config",), ("mode", "name"), argv_rest=("field", "value"))
LIMIT_DELETE = ScriptSpec("limit_delete", ("config", "values", "value_prefix"), ("name",))
RUN_PARK = ScriptSpec(
    "run_park",
    (*RUN, "active", "ready", "scheduled", "waiters", "wake", "events", "index_prefix"),
    ("run_id", "token", "message", "limit"),
)
RUN_UNPARK = ScriptSpec(
    "run_unpark",
    ("run", "scheduled", "waiters", "wake", "events", "config", "index_prefix"),
    ("run_id",),
)

#: Every script, by name: the queue scripts (one queue's slot), then the others.
QUEUE_SPECS = {
    spec.name: spec
    for spec in (
        QUEUE_CREATE,
        QUEUE_READ,
        QUEUE_UPDATE,
        QUEUE_DELETE,
        RUN_CREATE,
        RUN_CANCEL,
        RUN_RETRY,
        RUN_DELETE,
        RUNS_REINDEX,
        CLAIM,
        SET_STATE,
        RUN_ANNOTATE,
        RUNS_UNSCHEDULE,
        HEARTBEAT,
        SWEEP,
        PREVIEW,
        LOG_APPEND,
        QUEUE_GAUGES,
        RUN_PARK,
        RUN_UNPARK,
    )
}
GLOBAL_SPECS = {
    spec.name: spec
    for spec in (
        DEPLOYMENT_SAVE,
        LIMIT_ACQUIRE,
        LIMIT_RELEASE,
        LIMIT_PASS,
        LIMIT_SAVE,
        LIMIT_DELETE,
    )
}
