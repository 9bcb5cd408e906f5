"""The fields of a ``prefect deployment build`` file that runq reads past.

A Prefect 2 deployment YAML holds runq's own fields (name, flow_name, entrypoint, path,
parameters, work_queue_name, tags, schedule, is_schedule_active, description,
infrastructure with type, env, command, working_dir, stream_output) beside fields that
describe Prefect's server and blocks. ``runq deployment apply`` takes such a file as it
is: the fields that mean nothing here are dropped and named in one warning line; those
whose value would change what runs (a storage block, overrides, a work pool) are refused
with why, together with every unknown field, so one run of ``apply`` lists them all.
"""

from __future__ import annotations

from typing import Any

#: Prefect's own bookkeeping: dropped whatever its value.
PREFECT_ONLY = (
    "version",
    "manifest_path",
    "parameter_openapi_schema",
    "timestamp",
    "enforce_parameter_schema",
)
#: Dropped when empty (null, {}, [] or ''); otherwise refused, saying why.
EMPTY_OR_REFUSED = {
    "storage": "runq runs the code in the deployment's path (or image); a storage block is "
    "not fetched: put the code there and remove storage",
    "infra_overrides": "move these settings into infrastructure",
    "work_pool_name": "runq has work queues, not work pools: use work_queue_name",
    "triggers": "runq deployments have no triggers",
    "schedules": "give one schedule (cron, interval or rrule) under schedule",
}
#: runq's own fields where Prefect writes null (or '') for "not set": runq's default.
NULL_MEANS_DEFAULT = (
    "description",
    "is_schedule_active",
    "work_queue_name",
    "tags",
    "parameters",
    "path",
)
#: What every Prefect infrastructure block carries.
BLOCK_FIELDS = (
    "block_type_slug",
    "_block_type_slug",
    "_block_document_id",
    "_block_document_name",
    "_is_anonymous",
)
#: Prefect's process block fields that runq's process has not: dropped when empty.
PROCESS_EMPTY = ("name", "labels")
#: The engine command Prefect writes for a process: runq starts its own engine.
PREFECT_ENGINE = ["python", "-m", "prefect.engine"]
#: Prefect block types and runq's own name for them.
BLOCK_TYPES = {"docker-container": "docker", "kubernetes-job": "kubernetes"}

Refusal = tuple[list[str], str]


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def strip_prefect_fields(data: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[Refusal]]:
    """``data`` without the Prefect 2 fields that mean nothing here.

    Returns:
        The remaining fields; the names dropped, as the warning lists them
        (``version``, ``description: null``, ``infrastructure._block_type_slug``); and
        the refusals, each a field path and why.
    """
    kept = dict(data)
    ignored: list[str] = []
    refused: list[Refusal] = []
    for name in PREFECT_ONLY:
        if name in kept:
            del kept[name]
            ignored.append(name)
    for name, why in EMPTY_OR_REFUSED.items():
        if name in kept:
            value = kept.pop(name)  # refused or not, it is not one of runq's fields
            if is_empty(value):
                ignored.append(name)
            else:
                refused.append(([name], why))
    for name in NULL_MEANS_DEFAULT:
        if name in kept and (kept[name] is None or (name == "path" and kept[name] == "")):
            ignored.append(f"{name}: {'null' if kept.pop(name) is None else repr('')}")
    schedule = kept.get("schedule")
    if isinstance(schedule, dict) and "timezone" in schedule and schedule["timezone"] is None:
        kept["schedule"] = {key: value for key, value in schedule.items() if key != "timezone"}
        ignored.append("schedule.timezone: null")
    infrastructure = kept.get("infrastructure")
    if isinstance(infrastructure, dict) and infrastructure.get("type") in BLOCK_TYPES:
        kind = infrastructure["type"]
        refused.append(
            (
                ["infrastructure", "type"],
                (
                    f"Prefect's {kind!r} block is runq's type {BLOCK_TYPES[kind]!r}, whose fields "
                    "differ: rewrite this section (see `runq deployment create --help`)"
                ),
            )
        )
        del kept["infrastructure"]  # its own fields are judged once it is rewritten
    elif isinstance(infrastructure, dict):
        kept["infrastructure"] = _strip_infrastructure(infrastructure, ignored)
    return kept, ignored, refused


def _strip_infrastructure(block: dict[str, Any], ignored: list[str]) -> dict[str, Any]:
    """The infrastructure without Prefect's block fields and empty process-only ones."""
    kept = dict(block)
    kind = kept.get("type", "process")
    for name in BLOCK_FIELDS:
        if name in kept:
            del kept[name]
            ignored.append(f"infrastructure.{name}")
    if kind == "process":
        for name in PROCESS_EMPTY:
            if name in kept and is_empty(kept[name]):
                del kept[name]
                ignored.append(f"infrastructure.{name}")
        if kept.get("command") == PREFECT_ENGINE:
            del kept["command"]
            ignored.append("infrastructure.command (Prefect's engine)")
    return kept
