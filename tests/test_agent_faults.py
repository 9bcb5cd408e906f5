"""Faults operators meet, end to end with real agents and engines.

Agents are stopped (SIGTERM) or killed (SIGKILL) while flows print; Redis is stopped
(SIGSTOP) for longer than the lease and filled to maxmemory while flows run. Every test
runs on Redis 6.2 and 7 (the session servers of conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import FAST, Agents, deploy, ended, state_of, wait_for
from tests.figures import Figure

workdir = agent_helpers.workdir

MORE_FLOWS = '''

def chatty(lines: int, every: float) -> int:
    for i in range(lines):
        print(f"line {i}", flush=True)
        print(f"err {i}", file=sys.stderr, flush=True)
        time.sleep(every)
    return lines


def silent(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def chatty_until(gate: str, every: float) -> int:
    """Prints a line on each stream every ``every`` seconds until the test creates
    ``gate``: it prints before, while and after its agent goes, however slow the machine."""
    i = 0
    while True:
        print(f"line {i}", flush=True)
        print(f"err {i}", file=sys.stderr, flush=True)
        i += 1
        if os.path.exists(gate):
            return i
        time.sleep(every)


def gated(gate: str) -> str:
    """Runs until the test creates ``gate``: however long a busy machine takes to start
    the others, this one is still running."""
    while not os.path.exists(gate):
        time.sleep(0.05)
    return gate
'''


@pytest.fixture
def flows(workdir: Path) -> Path:
    with (workdir / "flows.py").open("a") as handle:
        handle.write(MORE_FLOWS)
    return workdir


@pytest.fixture
def agents(redis_url: str, flows: Path) -> Iterator[Agents]:
    pool = Agents(redis_url, flows)
    yield pool
    pool.stop_all()


def agent_with_a_pipe(redis_url: str, cwd: Path, queue: str) -> subprocess.Popen[bytes]:
    """An agent whose output is a pipe read by this test, as under a log collector that
    goes away with it: the case where a flow's writes used to fail."""
    command = [
        sys.executable,
        "-m",
        "runq",
        "agent",
        "start",
        "--hide-welcome",
        "--api",
        redis_url,
        "-q",
        queue,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **FAST},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_flows_outlive_their_agent_and_a_new_agent_watches_them(
    broker: Broker,
    redis_url: str,
    agents: Agents,
    flows: Path,
    how: signal.Signals,
    figure: Figure,
) -> None:
    """Both flows run until the test opens their gate, after the new agent watches them:
    however slow the machine, the printing one prints before, while and after its agent
    is gone."""
    gate = flows / "gate"
    deploy(
        broker, "chatty", "chatty_until", "outlive", parameters={"gate": str(gate), "every": 0.25}
    )
    deploy(broker, "gated", "gated", "outlive", parameters={"gate": str(gate)})
    printing = broker.create_flow_run(deployment="chatty")
    quiet = broker.create_flow_run(deployment="gated")
    first = agent_with_a_pipe(redis_url, flows, "outlive")
    try:
        wait_for(
            lambda: all(state_of(broker, r.id) is StateType.RUNNING for r in (printing, quiet)),
            120,
            "both flows to run",
        )
        first.send_signal(how)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        assert first.stdout is not None
        first.stdout.close()  # whoever read the agent's output is gone with it
    printed_with_the_agent = len(broker.read_logs(printing.id, count=10_000))
    successor = agents.start("outlive")
    wait_for(
        lambda: (flows / "agent-0.log").read_text().count("Watching flow run") == 2,
        120,
        "the new agent to watch the runs",
    )
    gate.touch()
    wait_for(lambda: ended(broker, printing.id, quiet.id), 180, "both runs to end")
    assert successor.poll() is None
    for run in (printing, quiet):
        assert state_of(broker, run.id) is StateType.COMPLETED, broker.read_flow_run(run.id).state
    printed = broker.read_flow_run(printing.id).result
    lines = [line.message for line in broker.read_logs(printing.id, count=10_000)]
    assert [m for m in lines if m.startswith("line ")] == [f"line {i}" for i in range(printed)]
    assert [m for m in lines if m.startswith("err ")] == [f"err {i}" for i in range(printed)]
    assert len(lines) > printed_with_the_agent, "it printed on after its agent was gone"
    figure("flows_completed_after_agent_stop", 2)
    figure("log_lines_kept", sum(1 for m in lines if m.startswith(("line ", "err "))))


def test_a_normally_finished_run_is_neither_stopped_nor_reported_stopped(
    broker: Broker, agents: Agents, flows: Path
) -> None:
    deploy(broker, "silent", "silent", "finish", parameters={"seconds": 0.5})
    runs = [broker.create_flow_run(deployment="silent") for _ in range(4)]
    agents.start("finish")
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 180, "the runs to end")
    wait_for(
        lambda: (flows / "agent-0.log").read_text().count("ended: Completed") == 4,
        120,
        "the agent to settle every run",
    )
    log = (flows / "agent-0.log").read_text()
    assert "stopping it" not in log and "elsewhere" not in log
    assert all(state_of(broker, run.id) is StateType.COMPLETED for run in runs)


def test_a_prefetched_run_of_a_deleted_deployment_ends_cancelled(
    broker: Broker, agents: Agents, flows: Path
) -> None:
    deploy(broker, "later", "silent", "gone", parameters={"seconds": 0})
    agents.start("gone", args=("--prefetch-seconds", "60"))
    wait_for(lambda: broker.read_work_queue("gone").agents, 120, "the agent to poll")
    # Made once the agent waits, due 15 s later: claimed and started well before then.
    run = broker.create_flow_run(deployment="later", start_in_seconds=15)
    wait_for(lambda: broker.read_flow_run(run.id).infrastructure_id, 120, "the prefetched start")
    assert broker.server_time() < run.expected_start_time, "deleted before it was due"
    broker.delete_deployment("later")
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    done = broker.read_flow_run(run.id)
    assert done.state.type is StateType.CANCELLED
    assert "deployment" in str(done.state.message) and "deleted" in str(done.state.message)


@pytest.mark.slow
def test_running_flows_ride_out_a_redis_stall_longer_than_the_lease(
    broker: Broker, redis_server, agents: Agents, figure: Figure
) -> None:
    """Redis stopped for 2.5 leases while six flows run (until the test opens their
    gate, so all six are running however slowly the machine starts them): none is CRASHED."""
    gate = agents.workdir / "gate"
    deploy(broker, "gated", "gated", "stall", parameters={"gate": str(gate)})
    runs = [broker.create_flow_run(deployment="gated") for _ in range(6)]
    agents.start("stall")
    wait_for(
        lambda: all(state_of(broker, r.id) is StateType.RUNNING for r in runs), 180, "the flows"
    )
    lease = float(FAST["RUNQ_LEASE_SECONDS"])
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5 * lease)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    gate.touch()
    wait_for(lambda: ended(broker, *(r.id for r in runs)), 180, "the runs to end")
    states = [state_of(broker, r.id) for r in runs]
    figure("false_crashes_after_stall_end_to_end", states.count(StateType.CRASHED))
    assert states == [StateType.COMPLETED] * 6


@pytest.mark.slow
def test_running_flows_ride_out_full_memory(
    broker: Broker, redis_url: str, agents: Agents, figure: Figure
) -> None:
    """Memory full for three leases while a flow runs: it is not CRASHED, and once memory
    is back it completes, its logs whole."""
    deploy(broker, "chatty", "chatty", "oom", parameters={"lines": 24, "every": 0.25})
    run = broker.create_flow_run(deployment="chatty")
    agents.start("oom")
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 120, "the flow")
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory", "1")
    try:
        time.sleep(3 * float(FAST["RUNQ_LEASE_SECONDS"]))
        assert state_of(broker, run.id) is StateType.RUNNING
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
    wait_for(lambda: ended(broker, run.id), 180, "the run to end")
    assert state_of(broker, run.id) is StateType.COMPLETED
    lines = [line.message for line in broker.read_logs(run.id, count=10_000)]
    kept = [m for m in lines if m.startswith("line ")]
    figure("log_lines_kept_through_full_memory", len(kept))
    assert kept == [f"line {i}" for i in range(24)]
