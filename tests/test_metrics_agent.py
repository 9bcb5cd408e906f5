"""A real agent's /metrics: scraped while it runs five flows and after, then
with a crash and a cancel; with --no-metrics it serves none; its --log-format json lines
parse. Scrapes are parsed with prometheus_client's text parser."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, ended, engine_pid_when_running, state_of, wait_for
from tests.redis_server import free_port
from tests.test_metrics import Samples, get, parse, value

redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

GATE_FLOW = '''
import os, time


def gate(path: str) -> str:
    """Runs until ``path`` exists (or two minutes pass)."""
    deadline = time.time() + 120
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)
    return "opened"
'''
QUEUE = "observed"


def scrape(port: int) -> Samples:
    status, text = get(port)
    assert status == 200, status
    return parse(text)


def count(samples: Samples, name: str, **labels: str) -> float:
    return value(samples, name, **labels) or 0.0


def ended_as(port: int, state: str, expected: int) -> Samples | None:
    samples = scrape(port)
    got = count(
        samples, "runq_agent_runs_ended_total", queue=QUEUE, infrastructure="process", state=state
    )
    return samples if got == expected else None


def test_a_real_agents_metrics_while_it_runs_five_flows_and_after(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    (workdir / "gated.py").write_text(GATE_FLOW)
    gate = workdir / "open"
    broker.create_deployment(
        name="gated",
        entrypoint="gated.py:gate",
        work_queue_name=QUEUE,
        parameters={"path": str(gate)},
    )
    runs = [broker.create_flow_run(deployment="gated") for _ in range(5)]
    port = free_port()
    agents.start(QUEUE, args=("--health-port", str(port), "--log-format", "json", "--no-scheduler"))
    wait_for(
        lambda: all(state_of(broker, r.id) is StateType.RUNNING for r in runs), 120, "five flows"
    )

    def settled_running() -> Samples | None:
        samples = scrape(port) if get(port)[0] == 200 else {}
        return (
            samples
            if count(
                samples, "runq_agent_runs_started_total", queue=QUEUE, infrastructure="process"
            )
            == 5
            else None
        )

    during = wait_for(settled_running, 120, "five starts counted")
    assert isinstance(during, dict)
    assert count(during, "runq_agent_runs_claimed_total", queue=QUEUE) == 5
    assert count(during, "runq_agent_runs_in_flight") == 5
    assert not [key for key, v in during.items() if key[0] == "runq_agent_runs_ended_total" and v]
    assert count(during, "runq_agent_due_to_claimed_seconds_count", queue=QUEUE) == 5
    assert count(during, "runq_agent_last_heartbeat_timestamp_seconds") > 0

    gate.touch()
    wait_for(lambda: ended(broker, *(r.id for r in runs)), 120, "the five flows to end")
    after = wait_for(lambda: ended_as(port, "COMPLETED", 5), 120, "five COMPLETED counted")
    assert isinstance(after, dict)
    assert count(after, "runq_agent_runs_claimed_total", queue=QUEUE) == 5
    assert count(after, "runq_agent_runs_in_flight") == 0
    assert (
        count(
            after,
            "runq_agent_claimed_to_running_seconds_count",
            queue=QUEUE,
            infrastructure="process",
        )
        == 5
    )
    assert (
        count(after, "runq_agent_submission_failures_total", queue=QUEUE, infrastructure="process")
        == 0
    )
    assert not [
        key
        for key in after
        if "run_id" in dict(key[1]) or any(str(r.id) in str(dict(key[1]).values()) for r in runs)
    ], "no run id in any label"

    # A crash (its engine killed: the agent sees it exit without a final state)...
    gate.unlink()
    doomed = broker.create_flow_run(deployment="gated")
    os.kill(engine_pid_when_running(broker, doomed.id), signal.SIGKILL)
    wait_for(lambda: state_of(broker, doomed.id) is StateType.CRASHED, 120, "CRASHED")
    wait_for(lambda: ended_as(port, "CRASHED", 1), 120, "the crash counted")
    # ...and a cancel.
    cancelled = broker.create_flow_run(deployment="gated")
    engine_pid_when_running(broker, cancelled.id)
    broker.cancel_flow_run(cancelled.id)
    wait_for(lambda: state_of(broker, cancelled.id) is StateType.CANCELLED, 120, "CANCELLED")
    final = wait_for(lambda: ended_as(port, "CANCELLED", 1), 120, "the cancel counted")
    assert isinstance(final, dict)
    assert count(final, "runq_agent_runs_claimed_total", queue=QUEUE) == 7
    assert (
        count(
            final,
            "runq_agent_runs_ended_total",
            queue=QUEUE,
            infrastructure="process",
            state="COMPLETED",
        )
        == 5
    )

    # Its log: one JSON object a line, the agent's naming it, claims naming their run.
    lines = (workdir / "agent-0.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert all("agent_id" in r for r in records if r["logger"] == "runq.agent")  # once it has one
    claimed = [r for r in records if r["message"].startswith("Claimed flow run")]
    assert {r["run_id"] for r in claimed} == {str(r.id) for r in (*runs, doomed, cancelled)}
    assert all(r["queue"] == QUEUE for r in claimed)


def test_with_no_metrics_the_agent_serves_none(broker: Broker, agents: Agents) -> None:
    port = free_port()
    agents.start(QUEUE, args=("--health-port", str(port), "--no-metrics", "--no-scheduler"))
    wait_for(lambda: get(port, "/healthz")[0] == 200, 120, "the health endpoint")
    assert get(port, "/metrics")[0] == 404
