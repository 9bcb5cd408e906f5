"""Decoding of the Redis hashes that hold queues and runs into models.

The field names stored in Redis are short (a run record is written for every run and
read on every claim); this module is the only one that knows them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

from .models import FlowRun, QueueAgent, State, StateType, WorkQueue
from .timeutil import ms_to_datetime, us_to_datetime


def pairs_to_dict(flat: Sequence[str]) -> dict[str, str]:
    """A flat ``[field, value, ...]`` array (HGETALL inside Lua) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def decode_run(fields: dict[str, str], queue: str) -> FlowRun:
    """Build a FlowRun from its record hash.

    The record was written by our own scripts, so it is trusted: the models are built
    without re-validation (``model_construct``), which keeps claims cheap.
    """
    get = fields.get
    result, token, deployment = get("result"), get("token"), get("dep")
    limit, _, limit_value = (get("lw") or "").partition("\n")
    timeout = get("tmo")
    if fields["sn"] != "AwaitingConcurrencySlot":
        limit, limit_value = "", ""
    state = State.model_construct(
        type=StateType(fields["st"]),
        name=fields["sn"],
        timestamp=us_to_datetime(get("sts")),
        message=get("smsg") or None,
    )
    return FlowRun.model_construct(
        id=UUID(fields["id"]),
        name=fields["name"],
        work_queue_name=queue,
        deployment_id=UUID(deployment) if deployment else None,
        flow_name=get("flow") or None,
        parameters=json.loads(get("params") or "{}"),
        state=state,
        expected_start_time=ms_to_datetime(int(fields["due"])),
        created=us_to_datetime(int(fields["created"])),
        start_time=us_to_datetime(get("start")),
        end_time=us_to_datetime(get("end")),
        agent_id=get("agent") or None,
        infrastructure_id=get("infra") or None,
        run_count=int(get("count") or 0),
        idempotency_key=get("ikey") or None,
        tags=json.loads(get("tags") or "[]"),
        claim_token=get("claim_token"),
        claim_id=token or None,
        claimed_at=us_to_datetime(get("claimed")),
        heartbeat_at=us_to_datetime(get("hb")),
        timeout_seconds=int(timeout) / 1000 if timeout else None,
        awaiting_limit=limit or None,
        awaiting_limit_value=limit_value,
        result=json.loads(result) if result else None,
        # Given, not defaulted: model_construct inspects a default factory's signature
        # on every call (~90 us), which would double the cost of a claim.
        state_history=[],
    )


#: Entries a run's history LIST holds at most (HISTORY_MAX in broker/scripts/include/history.lua).
HISTORY_MAX = 50


def decode_history(fields: dict[str, str], entries: Sequence[str]) -> list[State]:
    """The run's history: its creation (from the record: run_create.lua stores no entry
    for it) unless the LIST is full and so has dropped it, then the LIST's transitions
    (JSON ``[type, name, timestamp us, message]`` each, oldest first, include/history.lua),
    then, while the run is PENDING, its claim (from the record: claim.lua leaves that
    entry to the transition out of PENDING), as the LIST will hold them."""
    entries = list(entries)
    if fields.get("st") == StateType.PENDING.value:
        claim = [
            "PENDING",
            fields.get("sn", "Pending"),
            fields.get("sts", "0"),
            fields.get("smsg", ""),
        ]
        if not entries or json.loads(entries[-1]) != claim:  # an older claim stored it
            entries = (entries + [json.dumps(claim)])[-HISTORY_MAX:]
    states = []
    if len(entries) < HISTORY_MAX:
        created = us_to_datetime(fields["created"])
        states.append(
            State.model_construct(
                type=StateType.SCHEDULED, name="Scheduled", timestamp=created, message=None
            )
        )
    for entry in entries:
        state_type, name, timestamp, message = json.loads(entry)
        states.append(
            State.model_construct(
                type=StateType(state_type),
                name=name,
                timestamp=us_to_datetime(timestamp),
                message=message or None,
            )
        )
    return states


def decode_queue(
    config: dict[str, str],
    active: int = 0,
    scheduled: int = 0,
    agents: Sequence[str] = (),
    last_polled_ms: str | None = None,
    late: int = 0,
) -> WorkQueue:
    """Build a WorkQueue from its config hash and the counters queue_read.lua returns."""
    limit = config.get("concurrency_limit")
    return WorkQueue(
        id=config["id"],
        name=config["name"],
        description=config.get("description", ""),
        concurrency_limit=int(limit) if limit not in (None, "") else None,
        is_paused=config.get("is_paused") == "1",
        fair_by=config.get("fair_by") or None,
        created=us_to_datetime(config["created"]),
        updated=us_to_datetime(config["updated"]),
        last_polled=ms_to_datetime(float(last_polled_ms)) if last_polled_ms else None,
        active_runs=active,
        scheduled_runs=scheduled,
        late_runs=late,
        agents=[
            QueueAgent(id=agent_id, last_polled=ms_to_datetime(float(score)))
            for agent_id, score in zip(agents[::2], agents[1::2])
        ],
    )
