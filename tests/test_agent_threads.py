"""The agent's threads and ``--match``, with real agent processes.

A slow infrastructure call must hold up nothing else: heartbeats renew every lease on
their own thread and submissions run in a bounded pool, so while one submission blocks
for three leases no other run of that agent is reclaimed or CRASHED, and runs on its
other queues start meanwhile. ``match`` serves every queue whose name starts with a
prefix, including queues created after the agent started.

The agent runs as a process of its own (``python driver.py CONFIG``): an Agent whose
infrastructure factory wraps the real one and blocks the submission of runs whose
deployment carries the tag ``block`` until the test creates a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests.agent_helpers import (  # noqa: F401
    FAST,
    Agents,
    deploy,
    ended,
    redis_server,
    state_of,
    wait_for,
    workdir,
)
from tests.figures import Figure

LEASE = float(FAST["RUNQ_LEASE_SECONDS"])

DRIVER = '''
import json, logging, signal, sys, time
from pathlib import Path

from runq.agent.agent import Agent, AgentSettings
from runq.agent.infrastructure import for_deployment
from runq.broker import Broker
from runq.broker.settings import BrokerSettings

config = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
release, blocked = Path(config["release"]), Path(config["blocked"])


class Blocking:
    """Submits like the real runner, after blocking until the test says so."""

    def __init__(self, inner, after=False):
        self.inner, self.after = inner, after

    def submit(self, run, deployment, env):
        started = self.inner.submit(run, deployment, env) if self.after else None
        with open(blocked, "a") as handle:
            handle.write(str(run.id) + "\\n")
        while not release.exists():
            time.sleep(0.05)
        return started or self.inner.submit(run, deployment, env)


def infrastructure_for(deployment, broker):
    inner = for_deployment(deployment, broker)
    if deployment is not None and "block" in (deployment.tags or []):
        return Blocking(inner)
    if deployment is not None and "block-after-start" in (deployment.tags or []):
        return Blocking(inner, after=True)
    return inner


broker = Broker.from_url(config["url"], settings=BrokerSettings.from_env())
settings = AgentSettings.from_settings(config["queues"], scheduler=False)
agent = Agent(broker, settings, infrastructure_for, match=config.get("match"))
signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
agent.start()
print("started", agent.id, flush=True)
agent.run()
'''


class Driven:
    """Driver processes, killed at the end of the test."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        (workdir / "driver.py").write_text(DRIVER)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queues: list[str], match: list[str] | None = None) -> subprocess.Popen[bytes]:
        config = {
            "url": self.url,
            "queues": queues,
            "match": match,
            "release": str(self.workdir / "release"),
            "blocked": str(self.workdir / "blocked"),
        }
        proc = subprocess.Popen(
            [sys.executable, str(self.workdir / "driver.py"), json.dumps(config)],
            cwd=self.workdir,
            env={**os.environ, **FAST},
            stdout=open(self.workdir / f"driver-{len(self.procs)}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def redis_url(redis_server) -> str:  # noqa: F811
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def broker(redis_url: str) -> Iterator[Broker]:
    instance = Broker.from_url(redis_url)
    yield instance
    instance.close()


@pytest.fixture
def driven(redis_url: str, workdir: Path) -> Iterator[Driven]:  # noqa: F811
    pool = Driven(redis_url, workdir)
    yield pool
    pool.stop_all()


def test_a_blocked_submission_holds_up_no_other_run(
    broker: Broker,
    driven: Driven,
    workdir: Path,
    figure: Figure,  # noqa: F811
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "stuck",
        "mark",
        "slow",
        parameters={"record_to": str(trace), "i": 0},
        tags=["block"],
    )
    deploy(
        broker,
        "beside",
        "sleepy",
        "slow",
        parameters={"seconds": 3 * LEASE, "record_to": str(trace)},
    )
    deploy(broker, "quick", "mark", "fast", parameters={"record_to": str(trace), "i": 1})
    stuck = broker.create_flow_run(deployment="stuck")
    beside = broker.create_flow_run(deployment="beside")
    driven.start(["slow", "fast"])
    wait_for(lambda: (workdir / "blocked").exists(), 120, "the submission to block")
    active = broker.keys.queue("slow").active
    first_deadline = broker.client.zscore(active, str(stuck.id))
    assert first_deadline is not None
    claim_of_stuck = broker.read_flow_run(stuck.id).claimed_at
    quick = [broker.create_flow_run(deployment="quick") for _ in range(3)]
    wait_for(
        lambda: ended(broker, *(run.id for run in quick)), 120, "the other queue's runs to end"
    )
    assert all(state_of(broker, run.id) is StateType.COMPLETED for run in quick)

    # Three leases with the submission still blocked: the heartbeats moved its lease
    # deadline (ms, in the queue's active ZSET) three leases past the one of its claim,
    # and a sweep finds no lease expired.
    def renewed_past_three_leases() -> bool:
        deadline = broker.client.zscore(active, str(stuck.id))
        return deadline is not None and deadline >= first_deadline + 3 * LEASE * 1000

    wait_for(renewed_past_three_leases, 20 * LEASE, "the lease renewed three leases on")
    swept = broker.sweep("slow")
    assert swept.requeued == [] and swept.crashed == [], "a lease lapsed while a submission blocked"
    held = broker.read_flow_run(stuck.id)
    assert held.state.type is StateType.PENDING and held.claimed_at == claim_of_stuck
    assert state_of(broker, beside.id) in (StateType.RUNNING, StateType.COMPLETED)
    (workdir / "release").write_text("")
    wait_for(lambda: ended(broker, stuck.id, beside.id), 120, "the held runs to end")
    for run in (stuck, beside):
        final = broker.read_flow_run(run.id)
        assert final.state.type is StateType.COMPLETED, final.state
        assert final.run_count == 1, "delivered again"
    assert broker.read_flow_run(stuck.id).claimed_at == claim_of_stuck
    figure("runs_reclaimed_while_blocked", 0)


def test_sigterm_during_a_blocked_submission_still_stops_the_agent(
    broker: Broker,
    driven: Driven,
    workdir: Path,  # noqa: F811
) -> None:
    deploy(
        broker,
        "stuck",
        "mark",
        "held",
        parameters={"record_to": str(workdir / "t"), "i": 0},
        tags=["block"],
    )
    stuck = broker.create_flow_run(deployment="stuck")
    agent = driven.start(["held"])
    wait_for(lambda: (workdir / "blocked").exists(), 120, "the submission to block")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    run = broker.read_flow_run(stuck.id)
    assert run.state.type is StateType.SCHEDULED, "handed back"
    assert broker.list_agents() == []


def test_match_serves_queues_created_after_it_started(
    broker: Broker,
    driven: Driven,
    workdir: Path,
    figure: Figure,  # noqa: F811
) -> None:
    trace = workdir / "trace.jsonl"
    broker.create_work_queue("team-a-early")
    broker.create_work_queue("team-b-other")
    driven.start([], match=["team-a-"])
    deploy(broker, "early", "mark", "team-a-early", parameters={"record_to": str(trace), "i": 1})
    deploy(
        broker, "late", "mark", "team-a-late", parameters={"record_to": str(trace), "i": 2}
    )  # creates it
    deploy(broker, "other", "mark", "team-b-other", parameters={"record_to": str(trace), "i": 3})
    runs = [broker.create_flow_run(deployment=name) for name in ("early", "late")]
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 120, "the matching queues' runs")
    assert all(state_of(broker, run.id) is StateType.COMPLETED for run in runs)
    other = broker.create_flow_run(deployment="other")
    # A run on the matching queue created after it shows the agent still polls; the
    # other queue's run must not have been touched meanwhile.
    after = broker.create_flow_run(deployment="late")
    wait_for(lambda: ended(broker, after.id), 120, "one more run")
    assert broker.read_flow_run(other.id).state.type is StateType.SCHEDULED
    assert broker.read_flow_run(other.id).claimed_at is None
    figure("matched_queue_created_later_served", True)


def test_agent_start_match_flag_serves_a_queue_made_later(
    broker: Broker,
    redis_url: str,
    workdir: Path,  # noqa: F811
) -> None:
    """The same through the CLI: ``runq agent start -m PREFIX``."""
    agents = Agents(redis_url, workdir)
    try:
        agents.start(args=("-m", "cli-", "--no-scheduler"))
        trace = workdir / "trace.jsonl"
        wait_for(lambda: broker.list_agents(), 120, "the agent to register")
        deploy(broker, "later", "mark", "cli-later", parameters={"record_to": str(trace), "i": 1})
        run = broker.create_flow_run(deployment="later")
        wait_for(lambda: ended(broker, run.id), 120, "the run on a queue created after the agent")
        assert state_of(broker, run.id) is StateType.COMPLETED
    finally:
        agents.stop_all()


def test_a_submission_that_raises_ends_its_run_and_frees_its_slot(
    broker: Broker,
    redis_url: str,
    workdir: Path,  # noqa: F811
) -> None:
    """An infrastructure call that fails with an error no one foresaw (here Popen's
    ValueError for a NUL in the command) ends the run CRASHED, saying why, rather than
    leaving it PENDING under renewed leases; the agent's one slot is free again."""
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "broken",
        "mark",
        "odd",
        parameters={"record_to": str(trace), "i": 0},
        infrastructure={
            "type": "process",
            "command": [sys.executable + "\0"],
            "warm_engine": False,
        },
    )
    deploy(broker, "fine", "mark", "odd", parameters={"record_to": str(trace), "i": 1})
    broken = broker.create_flow_run(deployment="broken")
    agents = Agents(redis_url, workdir)
    try:
        agents.start("odd", args=("--limit", "1", "--no-scheduler"))
        wait_for(lambda: ended(broker, broken.id), 120, "the run that cannot start to end")
        final = broker.read_flow_run(broken.id)
        assert final.state.type is StateType.CRASHED
        assert final.state.message == "could not start: embedded null byte"
        fine = broker.create_flow_run(deployment="fine")
        wait_for(lambda: ended(broker, fine.id), 120, "a run after it, in the same slot")
        assert state_of(broker, fine.id) is StateType.COMPLETED
    finally:
        agents.stop_all()


def test_a_cancellation_during_the_submission_stops_the_run_once_started(
    broker: Broker,
    driven: Driven,
    workdir: Path,  # noqa: F811
) -> None:
    """Cancelled while its submission has not returned (the run RUNNING, the agent with
    no handle yet): the agent keeps the request and stops the infrastructure as soon as
    the submission hands it the handle."""
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "long",
        "sleepy",
        "late-cancel",
        tags=["block-after-start"],
        parameters={"seconds": 600, "record_to": str(trace)},
    )
    run = broker.create_flow_run(deployment="long")
    driven.start(["late-cancel"])
    wait_for(lambda: (workdir / "blocked").exists(), 120, "the submission to block")
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 120, "the run to run")
    broker.cancel_flow_run(run.id)
    log = workdir / "driver-0.log"
    wait_for(lambda: "cancelled while it starts" in log.read_text(), 120, "the agent to hear of it")
    (workdir / "release").write_text("")
    wait_for(
        lambda: "Cancelling flow run" in log.read_text(), 120, "the agent to stop what started"
    )
    wait_for(lambda: ended(broker, run.id), 120, "the run to end")
    assert state_of(broker, run.id) is StateType.CANCELLED
    assert log.read_text().count("Cancelling flow run") == 1, "one stopper"


def test_a_full_agent_claims_again_as_soon_as_its_slot_frees(
    broker: Broker,
    redis_url: str,
    workdir: Path,  # noqa: F811
) -> None:
    """At its limit the agent withdraws from its queues' waiters, so no wake-up comes for
    the runs queued meanwhile; with its fallback poll an hour away, only the slot a run
    frees (the "slot freed" event its loop checks) makes it claim the next."""
    trace = workdir / "trace.jsonl"
    deploy(broker, "quick", "mark", "one-slot", parameters={"record_to": str(trace), "i": 0})
    runs = [broker.create_flow_run(deployment="quick") for _ in range(3)]
    agents = Agents(redis_url, workdir)
    try:
        agents.start(
            "one-slot",
            args=("--limit", "1", "--no-scheduler", "--prefetch-seconds", "0"),
            env={"RUNQ_AGENT_QUERY_INTERVAL": "3600"},
        )
        wait_for(
            lambda: ended(broker, *(run.id for run in runs)), 120, "the runs, one after another"
        )
        assert all(state_of(broker, run.id) is StateType.COMPLETED for run in runs)
    finally:
        agents.stop_all()
