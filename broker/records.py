"""Decoding of the Redis hashes that hold queues and runs into models.

The field names stored in Redis are short (a run record is written for every run and
read on every claim); this module is the only one that knows them.
"""

from __future__ import annotations

import json
from typing import Sequence

from .models import FlowRun, QueueAgent, State, StateType, WorkQueue
from .timeutil import ms_to_datetime, us_to_datetime


def pairs_to_dict(flat: Sequence[str]) -> dict[str, str]:
    """A flat ``[field, value, ...]`` array (HGETALL inside Lua) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def decode_run(fields: dict[str, str], queue: str) -> FlowRun:
    """Build a FlowRun from its record hash."""
    result = fields.get("result")
    token = fields.get("token")
    return FlowRun(
        id=fields["id"],
        name=fields["name"],
        work_queue_name=queue,
        deployment_id=fields.get("dep") or None,
        flow_name=fields.get("flow") or None,
        parameters=json.loads(fields.get("params") or "{}"),
        state=State(
            type=StateType(fields["st"]),
            name=fields["sn"],
            timestamp=us_to_datetime(fields.get("sts")),
            message=fields.get("smsg") or None,
        ),
        expected_start_time=ms_to_datetime(int(fields["due"])),
        created=us_to_datetime(fields["created"]),
        start_time=us_to_datetime(fields.get("start")),
        end_time=us_to_datetime(fields.get("end")),
        agent_id=fields.get("agent") or None,
        infrastructure_id=fields.get("infra") or None,
        run_count=int(fields.get("count") or 0),
        idempotency_key=fields.get("ikey") or None,
        tags=json.loads(fields.get("tags") or "[]"),
        claim_token=int(token) if token else None,
        claimed_at=us_to_datetime(fields.get("claimed")),
        heartbeat_at=us_to_datetime(fields.get("hb")),
        result=json.loads(result) if result else None,
    )


def decode_queue(
    config: dict[str, str],
    active: int = 0,
    scheduled: int = 0,
    agents: Sequence[str] = (),
) -> WorkQueue:
    """Build a WorkQueue from its config hash and the counters queue_read.lua returns."""
    limit = config.get("concurrency_limit")
    return WorkQueue(
        id=config["id"],
        name=config["name"],
        description=config.get("description", ""),
        concurrency_limit=int(limit) if limit not in (None, "") else None,
        is_paused=config.get("is_paused") == "1",
        created=us_to_datetime(config["created"]),
        updated=us_to_datetime(config["updated"]),
        last_polled=us_to_datetime(config.get("last_polled")),
        active_runs=active,
        scheduled_runs=scheduled,
        agents=[
            QueueAgent(id=agent_id, last_polled=ms_to_datetime(float(score)))
            for agent_id, score in zip(agents[::2], agents[1::2])
        ],
    )
