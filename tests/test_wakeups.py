"""Wake-ups without a thundering herd: new work wakes as many idle agents as it
can employ, not all of them; the wake-up names its queue; a dead waiter does not strand a
run. On Redis 6.2, 7 and a Redis 7 cluster (sharded pub/sub there).

The agents here are real :class:`Agent` loops on threads of the test (each with its own
connection), so each one's claim calls can be counted; their fallback poll is an hour,
so every claim after start-up was caused by a wake-up. The dead waiter is a real agent
process, killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runq.agent.agent import Agent, AgentSettings
from runq.broker import Broker, Deployment, FlowRun, StateType
from runq.broker.scripts import uses_sharded_wakeups
from runq.broker.settings import BrokerSettings
from tests.agent_helpers import FAST, wait_for
from tests.figures import Figure

ON_CLUSTER = True
HOUR = 3600.0


class HeldHandle:
    """A started run that ends when the test releases it."""

    infrastructure_id = "held"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def poll(self) -> int | None:
        return 0 if self.release.is_set() else None

    def stop(self, grace_seconds: float) -> int:
        return 0


class Instant:
    """An infrastructure that runs each run to COMPLETED at once (or, with ``hold``, marks
    it RUNNING and completes it when the event is set)."""

    def __init__(self, broker: Broker, hold: threading.Event | None = None) -> None:
        self.broker, self.hold = broker, hold

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> Any:
        token = env["RUNQ_FLOW_RUN_TOKEN"]
        self.broker.set_state(run.id, StateType.RUNNING, token=token)
        if self.hold is not None:
            return HeldHandle(self.hold)
        self.broker.set_state(run.id, StateType.COMPLETED, token=token)
        return HeldHandle(ENDED)


ENDED = threading.Event()
ENDED.set()


class Fleet:
    """Agents on threads; ``claims[i]`` counts agent i's claim calls per queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.agents: list[Agent] = []
        self.threads: list[threading.Thread] = []
        self.claims: list[dict[str, int]] = []

    def start(
        self,
        queues: list[str],
        *,
        limit: int | None = None,
        hold: threading.Event | None = None,
        lease: float | None = None,
    ) -> Agent:
        settings = BrokerSettings(lease_seconds=lease) if lease else BrokerSettings()
        broker = Broker.from_url(self.url, settings=settings)
        infrastructure = Instant(Broker.from_url(self.url), hold)
        settings = AgentSettings(
            work_queues=queues,
            limit=limit,
            query_interval=HOUR,
            prefetch_seconds=0,
            heartbeat_seconds=1,
            scheduler=False,
        )
        agent = Agent(broker, settings, lambda deployment, b: infrastructure)
        counts: dict[str, int] = {}
        real_claim = broker.claim

        def counted(queue: str, *args: Any, **kwargs: Any) -> list[FlowRun]:
            counts[queue] = counts.get(queue, 0) + 1
            return real_claim(queue, *args, **kwargs)

        broker.claim = counted  # type: ignore[method-assign]
        agent.start()
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self.agents.append(agent)
        self.threads.append(thread)
        self.claims.append(counts)
        return agent

    def total(self, queue: str) -> int:
        return sum(counts.get(queue, 0) for counts in self.claims)

    def stop(self) -> None:
        for agent in self.agents:
            agent.request_stop()
        for thread in self.threads:
            thread.join(timeout=60)
        for agent in self.agents:
            agent.broker.close()


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Fleet]:
    agents = Fleet(redis_url)
    yield agents
    agents.stop()


def waiters(broker: Broker, queue: str) -> set[str]:
    return set(broker.client.zrange(broker.keys.queue(queue).waiters, 0, -1))


def settled(fleet: Fleet, broker: Broker, queue: str, count: int) -> None:
    """Every agent listens and has registered as a waiter of ``queue``."""
    wait_for(
        lambda: all(agent.wakeup.subscribed.is_set() for agent in fleet.agents),
        120,
        "subscriptions",
    )
    wait_for(lambda: len(waiters(broker, queue)) == count, 120, "every agent to wait on the queue")


def claimed(broker: Broker, run: FlowRun) -> FlowRun | None:
    current = broker.read_flow_run(run.id)
    return current if current.claimed_at is not None else None


def probe(broker: Broker, channel: str) -> int:
    """How many clients hear ``channel`` (a harmless message the agents ignore)."""
    if uses_sharded_wakeups(broker.client):
        return int(broker.client.spublish(channel, "probe"))
    return int(broker.client.publish(channel, "probe"))


def test_each_run_wakes_one_idle_agent_not_all(
    broker: Broker, fleet: Fleet, figure: Figure
) -> None:
    agents, runs = 5, 10
    for _ in range(agents):
        fleet.start(["herd"])
    settled(fleet, broker, "herd", agents)
    before = fleet.total("herd")
    for _ in range(runs):
        run = broker.create_flow_run("herd")
        wait_for(
            lambda: broker.read_flow_run(run.id).state.type is StateType.COMPLETED,
            120,
            "the run to complete",
        )
    wait_for(lambda: len(waiters(broker, "herd")) == agents, 120, "the agents to wait again")
    calls = fleet.total("herd") - before
    figure("claims_per_delivered_run", calls / runs)
    # One claim for the new run and one for the slot it freed; each agent's first claim
    # after it subscribed may fall inside the window. A broadcast would cost 2 x agents.
    assert calls <= 2 * runs + agents, f"{calls} claim calls for {runs} runs"


def test_a_wake_up_claims_the_queue_it_names(broker: Broker, fleet: Fleet, figure: Figure) -> None:
    queues = [f"many-{i:02d}" for i in range(20)]
    fleet.start(queues)
    settled(fleet, broker, queues[-1], 1)
    wait_for(
        lambda: all(len(waiters(broker, q)) == 1 for q in queues), 120, "waiters on every queue"
    )
    before = dict(fleet.claims[0])
    run = broker.create_flow_run(queues[-1])
    wait_for(
        lambda: broker.read_flow_run(run.id).state.type is StateType.COMPLETED,
        120,
        "the run to complete",
    )
    after = fleet.claims[0]
    others = sum(after.get(q, 0) - before.get(q, 0) for q in queues[:-1])
    figure("other_queues_claimed", others)
    assert others == 0, "a wake-up of one queue claimed other queues too"
    assert after[queues[-1]] > before.get(queues[-1], 0)


def test_a_wake_up_is_passed_on_until_the_work_is_taken(broker: Broker, fleet: Fleet) -> None:
    """Three agents of limit 1, three runs enqueued at once: one wake-up, and each agent
    that fills up wakes the next (no fallback poll could have done it)."""
    hold = threading.Event()
    try:
        for _ in range(3):
            fleet.start(["chain"], limit=1, hold=hold)
        settled(fleet, broker, "chain", 3)
        ids = broker.enqueue_flow_runs("chain", [{} for _ in range(3)])  # one script call
        wait_for(
            lambda: all(broker.read_flow_run(i).state.type is StateType.RUNNING for i in ids),
            120,
            "every run to start",
        )
        owners = {broker.read_flow_run(i).agent_id for i in ids}
        assert owners == {agent.id for agent in fleet.agents}, "each agent took one run"
        assert waiters(broker, "chain") == set(), "full agents wait for no wake-up"
    finally:
        hold.set()


def test_a_dead_waiter_does_not_strand_a_run(
    broker: Broker, fleet: Fleet, redis_url: str, tmp_path: Path, figure: Figure
) -> None:
    """The freshest waiter is an agent killed with SIGKILL: the wake-up finds nobody on its
    channel and goes on (to the next waiter, or to every agent once no live waiter is
    left), at once: the live agent never polls. Both register for a lease of FAST's."""
    survivor = fleet.start(["orphaned"], lease=float(FAST["RUNQ_LEASE_SECONDS"]))
    settled(fleet, broker, "orphaned", 1)
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
        "orphaned",
        "--name",
        "doomed",
        "--no-scheduler",
    ]
    doomed = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, **FAST},
        stdout=open(tmp_path / "doomed.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        agent_id = str(
            wait_for(
                lambda: next((a.id for a in broker.list_agents() if a.name == "doomed"), None),
                120,
                "the agent",
            )
        )
        channel = broker.keys.queue("orphaned").wake_for(agent_id)
        wait_for(
            lambda: agent_id in waiters(broker, "orphaned") and probe(broker, channel) == 1,
            120,
            "the doomed agent to wait",
        )
        # It polls every second (FAST), so it is the freshest waiter: the first one woken.
        wait_for(
            lambda: (
                broker.client.zrevrange(broker.keys.queue("orphaned").waiters, 0, 0) == [agent_id]
            ),
            120,
            "the doomed agent to be the freshest waiter",
        )
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    wait_for(lambda: probe(broker, channel) == 0, 120, "Redis to notice the dead agent")
    run = broker.create_flow_run("orphaned")
    found = wait_for(lambda: claimed(broker, run), 120, "the run to be claimed")
    assert isinstance(found, FlowRun) and found.agent_id == survivor.id
    assert agent_id not in waiters(broker, "orphaned"), "the dead waiter was dropped"
    figure("dead_waiter_run_claimed", True)
