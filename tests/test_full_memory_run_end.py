"""Full memory at a run's end: what a flow finished while Redis refused writes is kept.

Redis at maxmemory with noeviction refuses every write that may grow memory. A run's
lease is renewed by a script that runs anyway (heartbeat.lua), so a healthy run is never
CRASHED for it, at any point of its life: its engine keeps renewing while its final
state is refused, its agent renews what it holds whether or not the agent's own registry
entry could be written, and once memory is back the final state is accepted under the
same claim. Real agents and engines, on Redis 6.2, 7 and the cluster; memory stays full
for three leases by Redis' own clock while this test sweeps the queue (as live agents
do), so an unrenewed lease would be settled in that time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runq.broker import Broker, BrokerSettings, FlowRun, StateType
from tests import agent_helpers, test_faults
from tests.agent_helpers import Agents, deploy, state_of, wait_for
from tests.figures import Figure

ON_CLUSTER = True
workdir = agent_helpers.workdir
full_memory = test_faults.full_memory  # maxmemory just under use, on every node

LEASE = 4.0  # long enough that an agent's sweep (every lease / 3) is no stall (lease / 2)
LEASES_FULL = 3
SETTINGS = {"RUNQ_LEASE_SECONDS": str(LEASE), "RUNQ_HEARTBEAT_SECONDS": "0.5"}

FLOWS = '''

def when_told(go: str, returned: str) -> str:
    """Runs until the file ``go`` exists, then says so in ``returned`` and returns."""
    while not os.path.exists(go):
        time.sleep(0.05)
    record(returned, at=time.time())
    return "finished"
'''


@pytest.fixture
def flows(workdir: Path) -> Path:
    with (workdir / "flows.py").open("a") as handle:
        handle.write(FLOWS)
    return workdir


@pytest.fixture
def agents(redis_url: str, flows: Path) -> Iterator[Agents]:
    pool = Agents(redis_url, flows)
    yield pool
    pool.stop_all()


@pytest.fixture
def observer(redis_url: str) -> Iterator[Broker]:
    """The test's own Broker, with the agents' lease (its sweeps judge stalls by it)."""
    instance = Broker.from_url(redis_url, settings=BrokerSettings(lease_seconds=LEASE))
    yield instance
    instance.close()


def hold_full_memory(broker: Broker, queue: str, run: FlowRun) -> int:
    """Keep memory full for LEASES_FULL leases by Redis' clock, sweeping ``queue`` four
    times a lease as agents do: the run must stay live throughout. Returns the sweeps."""
    until = broker.server_time().timestamp() + LEASES_FULL * LEASE
    sweeps = 0
    while broker.server_time().timestamp() < until:
        result = broker.sweep(queue)
        sweeps += 1
        assert run.id not in result.crashed + result.requeued, "a healthy run was settled"
        assert state_of(broker, run.id) in (StateType.PENDING, StateType.RUNNING)
        time.sleep(LEASE / 4)
    return sweeps


@pytest.mark.slow
def test_a_flow_that_ends_under_full_memory_completes_when_memory_returns(
    broker: Broker, observer: Broker, agents: Agents, flows: Path, full_memory, figure: Figure
) -> None:
    """The flow returns while memory is full and stays full for three leases: its engine
    renews its lease until its COMPLETED is accepted, once memory is back, however long
    that takes (here six times the engine's patience for an unreachable Redis). Its agent
    is gone by then (flows outlive their agent), so the engine alone renews the lease."""
    go, returned = flows / "go", flows / "returned.jsonl"
    deploy(
        broker,
        "told",
        "when_told",
        "oom-end",
        parameters={"go": str(go), "returned": str(returned)},
    )
    run = broker.create_flow_run(deployment="told")
    agents.start("oom-end", env={**SETTINGS, "RUNQ_ENGINE_PATIENCE_SECONDS": str(LEASE / 2)})
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 60, "the flow to run")
    claim = broker.read_flow_run(run.id).claim_id
    agents.stop_all()  # SIGKILL: the engine runs on, its own process group
    full_memory()
    try:
        go.touch()
        wait_for(lambda: agent_helpers.records(returned), 60, "the flow to return")
        sweeps = hold_full_memory(observer, "oom-end", run)
    finally:
        full_memory.free()
    wait_for(lambda: broker.read_flow_run(run.id).state.is_terminal, 120, "the run to end")
    done = broker.read_flow_run(run.id)
    crashed = int(done.state.type is StateType.CRASHED)
    figure("runs_crashed_by_full_memory_at_their_end", crashed)
    figure("sweeps_under_full_memory_after_the_flow_returned", sweeps)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.claim_id == claim and done.run_count == 1
    assert [s.type for s in done.state_history].count(StateType.CRASHED) == 0


@pytest.mark.slow
def test_a_run_its_agent_alone_renews_outlives_full_memory(
    broker: Broker, observer: Broker, agents: Agents, flows: Path, full_memory, figure: Figure
) -> None:
    """A prefetched run waits PENDING for its due time: only its agent renews its lease
    (its engine starts heartbeating once RUNNING). Memory full for three leases then:
    the agent's own registry write is refused, its runs' leases are renewed all the
    same, and the run starts and completes under its first claim."""
    go, returned = flows / "go", flows / "returned.jsonl"
    go.touch()
    deploy(
        broker,
        "told",
        "when_told",
        "oom-wait",
        parameters={"go": str(go), "returned": str(returned)},
    )
    due_in = LEASE * (LEASES_FULL + 2)  # still waiting when memory comes back
    run = broker.create_flow_run(deployment="told", start_in_seconds=due_in)
    agents.start("oom-wait", env=SETTINGS, args=("--prefetch-seconds", str(2 * due_in)))

    def submitted() -> bool:
        seen = broker.read_flow_run(run.id)
        return seen.state.type is StateType.PENDING and bool(seen.infrastructure_id)

    wait_for(submitted, 60, "the prefetched run's engine to start")
    claim = broker.read_flow_run(run.id).claim_id
    full_memory()
    try:
        sweeps = hold_full_memory(observer, "oom-wait", run)
    finally:
        full_memory.free()
    wait_for(lambda: broker.read_flow_run(run.id).state.is_terminal, 120, "the run to end")
    done = broker.read_flow_run(run.id)
    lost = int(done.claim_id != claim)
    figure("agent_renewed_claims_lost_to_full_memory", lost)
    figure("sweeps_under_full_memory_while_pending", sweeps)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.claim_id == claim and done.run_count == 1
    assert len(agent_helpers.records(returned)) == 1
