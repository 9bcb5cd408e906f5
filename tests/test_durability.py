"""Durability: Redis killed with -9 at random moments while four agents work, restarted.

With appendonly and appendfsync always, a run accepted (its create returned) is never
lost: at the end each one ended exactly once or is still queued, and none ran twice
(the flows record each execution). Agents ride out every restart.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records

redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents
pytestmark = pytest.mark.slow

RUNS = 500


def test_runs_survive_redis_being_killed_while_agents_work(
    broker: Broker, agents: Agents, workdir: Path, redis_server
) -> None:
    broker.client.config_set("appendfsync", "always")
    trace = workdir / "executions.jsonl"
    deploy(broker, "mark", "mark", "durable")
    deployment = broker.read_deployment("mark")
    accepted = broker.enqueue_flow_runs(
        "durable",
        [{"deployment_id": deployment.id, "parameters": {"i": i, "record_to": str(trace)}} for i in range(RUNS)],
    )
    procs = [agents.start("durable", env={"RUNQ_LEASE_SECONDS": "5"}) for _ in range(4)]
    rng = random.Random(7)
    for _ in range(4):  # kill -9 at random moments, a short outage each time
        time.sleep(rng.uniform(1.0, 4.0))
        redis_server.kill()
        time.sleep(rng.uniform(0.1, 1.0))
        redis_server.start()
        broker.client.config_set("appendfsync", "always")

    deadline = time.monotonic() + 300
    while True:
        states = Counter(broker.read_flow_run(run_id).state.type for run_id in accepted)
        if all(state.is_terminal for state in states):
            break
        assert time.monotonic() < deadline, f"runs did not end: {states}"
        time.sleep(1)

    executions = Counter(line["i"] for line in records(trace))
    assert max(executions.values()) == 1, "no run executed twice"
    assert sum(states.values()) == RUNS, "no accepted run vanished"
    completed = [run_id for run_id in accepted if broker.read_flow_run(run_id).state.type is StateType.COMPLETED]
    assert len(completed) >= RUNS * 0.95, states
    assert all(proc.poll() is None for proc in procs), "the agents rode out every restart"
