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

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records, wait_for
from tests.figures import Figure

redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents
pytestmark = pytest.mark.slow

RUNS = 500


def test_runs_survive_redis_being_killed_while_agents_work(
    broker: Broker, agents: Agents, workdir: Path, redis_server, figure: Figure
) -> None:
    broker.client.config_set("appendfsync", "always")
    trace = workdir / "executions.jsonl"
    deploy(broker, "mark", "mark", "durable")
    deployment = broker.read_deployment("mark")
    accepted = broker.enqueue_flow_runs(
        "durable",
        [
            {"deployment_id": deployment.id, "parameters": {"i": i, "record_to": str(trace)}}
            for i in range(RUNS)
        ],
    )
    procs = [agents.start("durable", env={"RUNQ_LEASE_SECONDS": "5"}) for _ in range(4)]
    wait_for(
        lambda: len(broker.list_agents()) == len(procs), 120, "the agents to connect"
    )  # else an outage kills a start
    rng = random.Random(7)
    outages = []
    for _ in range(4):  # kill -9 at random moments, a short outage each time
        time.sleep(rng.uniform(1.0, 4.0))
        redis_server.kill()
        killed = time.monotonic()
        time.sleep(rng.uniform(0.1, 1.0))
        redis_server.start()
        outages.append(time.monotonic() - killed)
        broker.client.config_set("appendfsync", "always")

    deadline = time.monotonic() + 300
    while True:
        states = Counter(broker.read_flow_run(run_id).state.type for run_id in accepted)
        if all(state.is_terminal for state in states):
            break
        assert time.monotonic() < deadline, f"runs did not end: {states}"
        time.sleep(1)

    executions = Counter(line["i"] for line in records(trace))
    figure("runs_accepted", len(accepted))
    figure(
        "runs_lost",
        len(accepted) - sum(count for state, count in states.items() if state.is_terminal),
    )
    figure("runs_run_twice", sum(count > 1 for count in executions.values()))
    figure("runs_completed", states[StateType.COMPLETED])
    figure("redis_kills", len(outages))
    figure("longest_outage", round(max(outages), 2), unit="s")
    figure("agents", len(procs))
    figure("agents_still_up", sum(proc.poll() is None for proc in procs))
    assert max(executions.values()) == 1, "no run executed twice"
    assert sum(states.values()) == RUNS, "no accepted run vanished"
    completed = [
        run_id
        for run_id in accepted
        if broker.read_flow_run(run_id).state.type is StateType.COMPLETED
    ]
    assert len(completed) >= RUNS * 0.95, states
    assert all(proc.poll() is None for proc in procs), "the agents rode out every restart"
