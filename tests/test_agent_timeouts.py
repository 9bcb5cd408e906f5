"""A run's timeout end to end: a real agent, a real flow that ignores SIGTERM and hangs in
C code holding the GIL (its engine's own threads stop with it), so only the agent can
stop it. The run must end FAILED (TimedOut) and its process must be gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records, wait_for
from tests.figures import Figure

# Fixtures of this module: one Redis for these slow tests, a flows folder, agent processes.
redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents
pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split()[2] != "Z"


def test_a_hung_flow_deaf_to_sigterm_is_stopped_and_timed_out(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "hung", "hung", "q", parameters={"record_to": str(trace)}, timeout_seconds=2)
    run = broker.create_flow_run(deployment="hung")
    agents.start("q")
    [started] = wait_for(lambda: records(trace), 60, "the flow to start")
    found = wait_for(
        lambda: (r := broker.read_flow_run(run.id)).state.is_terminal and r, 120, "the timeout"
    )
    assert (found.state.type, found.state.name) == (StateType.FAILED, "TimedOut")
    wait_for(lambda: not alive(started["pid"]), 60, "the hung flow's process to be stopped")
    assert found.end_time and found.start_time
    figure("seconds_past_timeout", (found.end_time - found.start_time).total_seconds() - 2)


def test_a_timeout_holds_after_the_agent_that_started_the_run_was_killed(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "deaf", "deaf", "q", parameters={"record_to": str(trace)}, timeout_seconds=4)
    run = broker.create_flow_run(deployment="deaf")
    first = agents.start("q")
    [started] = wait_for(lambda: records(trace), 60, "the flow to start")
    first.kill()
    first.wait()
    agents.start("q")  # it sweeps the queue; the engine, alive, hears its run ended
    found = wait_for(
        lambda: (r := broker.read_flow_run(run.id)).state.is_terminal and r, 120, "the timeout"
    )
    assert (found.state.type, found.state.name) == (StateType.FAILED, "TimedOut")
    wait_for(lambda: not alive(started["pid"]), 60, "the flow's process to be stopped")
