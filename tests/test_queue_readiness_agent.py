"""A real agent at its own --limit says so in the registry, and its queue stays healthy
(busy, not missing) in every view; once it stops, every view says so at once."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from runq.ui import views
from runq.ui.waiting import reasons
from tests import agent_helpers
from tests.agent_helpers import Agents, wait_for
from tests.cli_helpers import Invoke

redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

HOLD = """
import os, time


def hold(gate: str) -> str:
    while not os.path.exists(gate):
        time.sleep(0.02)
    return gate
"""


def limit_of(broker: Broker, agent_id: str) -> int | None:
    return next(a.at_limit for a in broker.list_agents() if a.id == agent_id)


def status(runq: Invoke, queue: str) -> tuple[str, list[str]]:
    (row,) = json.loads(runq("work-queue", "ls", "-m", queue, "-o", "json").stdout)
    return row["status"], row["problems"]


def test_an_agent_at_its_limit_keeps_its_queue_healthy_and_its_exit_shows(
    broker: Broker, agents: Agents, workdir: Path, runq: Invoke
) -> None:
    (workdir / "hold.py").write_text(HOLD)
    gate = workdir / "gate"
    broker.create_deployment(
        name="hold", entrypoint="hold.py:hold", work_queue_name="busy", code_from=workdir
    )
    first = broker.create_flow_run(deployment="hold", parameters={"gate": str(gate)})
    second = broker.create_flow_run(deployment="hold", parameters={"gate": str(gate)})
    agent = agents.start("busy", args=("--limit", "1"))
    wait_for(
        lambda: broker.read_flow_run(first.id).state.type is StateType.RUNNING, 60, "the first run"
    )
    (registered,) = broker.list_agents()
    wait_for(lambda: limit_of(broker, registered.id) == 1, 30, "the agent to say it is full")
    # as if it had been full for five minutes: no poll since (the test does not wait)
    then = broker.server_time() - timedelta(minutes=5)
    broker.client.zadd(
        broker.keys.queue("busy").agents, {registered.id: int(then.timestamp() * 1000)}
    )
    assert status(runq, "busy") == ("healthy", [])
    assert views.queue_page(broker, "busy")["queue"]["ui_status"] == "Ready"
    waiting = reasons(broker, broker.read_flow_run(second.id), broker.server_time())
    assert [reason.kind for reason in waiting] == ["agents_at_limit"], waiting
    assert "at its limit (1)" in runq("agent", "ls").stdout
    gate.write_text("open")
    wait_for(lambda: agent_helpers.ended(broker, first.id, second.id), 60, "both runs")
    wait_for(lambda: limit_of(broker, registered.id) is None, 30, "the agent to have room again")
    assert status(runq, "busy") == ("healthy", [])
    agent.send_signal(signal.SIGTERM)
    agent.wait(60)
    assert status(runq, "busy") == ("unhealthy", ["no live agent polls it"])
    assert views.queue_page(broker, "busy")["queue"]["ui_status"] == "Not ready"
