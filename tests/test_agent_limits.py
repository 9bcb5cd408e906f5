"""Named concurrency limits end to end: real `runq agent start` processes on different
queues, real flows that record their own start and end times, and agents or engines
killed -9 while their runs hold slots. The checks rest on what the flows recorded.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import (
    Agents,
    deploy,
    ended,
    engine_pid_when_running,
    records,
    state_of,
    wait_for,
)
from tests.figures import Figure
from tests.test_invariants import peak_overlap

# Fixtures of this module: one Redis for these slow tests, a flows folder, agent processes.
redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents
pytestmark = pytest.mark.slow


def peak(spans: list[dict]) -> int:
    """Most flows running at once, from the times the flows recorded themselves."""
    return peak_overlap([(span["start"], span["end"]) for span in spans])


def test_agents_on_two_queues_never_run_more_than_a_shared_limit(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    broker.create_concurrency_limit("warehouse", 1)
    for queue in ("a", "b"):
        deploy(
            broker,
            f"load-{queue}",
            "sleepy",
            queue,
            parameters={"seconds": 0.3, "record_to": str(trace)},
            tags=["warehouse"],
        )
    runs = [broker.create_flow_run(deployment=f"load-{q}") for q in "abab"]
    agents.start("a")
    agents.start("b")
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 240, "all four runs to end")
    assert all(state_of(broker, run.id) is StateType.COMPLETED for run in runs)
    spans = records(trace)
    figure("max_running", peak(spans))
    assert len(spans) == 4 and peak(spans) == 1
    wait_for(lambda: broker.read_concurrency_limit("warehouse").active == 0, 60, "the slots back")


def test_a_run_whose_agent_and_engine_were_killed_gives_its_slot_back(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    broker.create_concurrency_limit("warehouse", 1)
    deploy(
        broker,
        "long",
        "sleepy",
        "q",
        parameters={"seconds": 300, "record_to": str(trace)},
        tags=["warehouse"],
    )
    deploy(
        broker,
        "short",
        "sleepy",
        "q",
        parameters={"seconds": 0.1, "record_to": str(trace)},
        tags=["warehouse"],
    )
    doomed = broker.create_flow_run(deployment="long")
    agent = agents.start("q")
    engine = engine_pid_when_running(broker, doomed.id)
    waiting = broker.create_flow_run(deployment="short")
    wait_for(
        lambda: broker.read_flow_run(waiting.id).state.name == "AwaitingConcurrencySlot",
        60,
        "the second run to wait for the slot",
    )
    assert broker.read_flow_run(waiting.id).awaiting_limit == "warehouse"
    agent.kill()
    agent.wait()
    os.kill(engine, signal.SIGKILL)
    agents.start("q")  # another agent: it settles the dead run and mends the limit
    wait_for(lambda: ended(broker, doomed.id, waiting.id), 120, "both runs to end")
    assert state_of(broker, doomed.id) is StateType.CRASHED
    assert state_of(broker, waiting.id) is StateType.COMPLETED
    wait_for(lambda: broker.read_concurrency_limit("warehouse").active == 0, 60, "the slots back")
