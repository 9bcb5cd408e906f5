"""The agent and the engine end to end: real `runq agent start` processes, real flows.

The flows live in a temporary file and record their own start and end times (and pids)
in files, so the checks rest on what actually executed, not on what the agent says.
Waits are on conditions with timeouts; leases, heartbeats and grace periods are short
(environment variables) so crash recovery is quick.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runq.broker import Broker, FlowRun, StateType
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
from tests.pause_points import pause_points  # noqa: F401 (autouse: RUNQ_TEST_PAUSE_AFTER_CLAIM)
from tests.redis_server import free_port
from tests.test_metrics import get, parse, value

# Fixtures of this module: one Redis for these slow tests, a flows folder, agent processes.
redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents

pytestmark = pytest.mark.slow


def test_end_to_end_with_parameters_result_and_logs(broker: Broker, agents: Agents) -> None:
    deploy(broker, "hello", "hello", "e2e", parameters={"name": "runq"})
    run = broker.create_flow_run(deployment="hello", parameters={"times": 2})
    agent = agents.start("e2e", args=("--run-once",))
    assert agent.wait(timeout=180) == 0
    done = broker.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED
    assert done.result == "Hello, runq! Hello, runq!"
    assert done.infrastructure_id and done.infrastructure_id.split(":")[1].isdigit()
    assert [line.message for line in broker.read_logs(run.id)] == ["Hello, runq! Hello, runq!"]


def test_a_failing_flow_is_retried_then_failed(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    attempts = workdir / "attempts.jsonl"
    deploy(broker, "flaky", "flaky", "retry", parameters={"record_to": str(attempts)}, retries=2)
    run = broker.create_flow_run(deployment="flaky")
    agents.start("retry")
    wait_for(lambda: state_of(broker, run.id) is StateType.FAILED, 180, "FAILED")
    failed = broker.read_flow_run(run.id)
    assert failed.run_count == 3 and len(records(attempts)) == 3
    assert "RuntimeError: boom" in failed.state.message
    assert any("about to fail" in line.message for line in broker.read_logs(run.id))


def test_three_agents_never_exceed_a_limit_of_two(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    broker.create_work_queue("limited", concurrency_limit=2)
    deploy(
        broker, "sleepy", "sleepy", "limited", parameters={"seconds": 1, "record_to": str(trace)}
    )
    runs = [broker.create_flow_run(deployment="sleepy") for _ in range(12)]
    for _ in range(3):
        agents.start("limited")
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 240, "all 12 runs to end")
    assert all(state_of(broker, run.id) is StateType.COMPLETED for run in runs)
    spans = records(trace)
    assert len(spans) == 12
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    figure("agents", len(agents.procs))
    figure("max_in_flight", peak)
    figure("concurrency_limit", broker.read_work_queue("limited").concurrency_limit)
    assert peak <= 2


def test_priority_order(broker: Broker, agents: Agents, workdir: Path) -> None:
    trace = workdir / "trace.jsonl"
    for queue in ("high", "low"):
        deploy(
            broker,
            queue,
            "sleepy",
            queue,
            parameters={"seconds": 0.1, "record_to": str(trace), "tag": queue},
        )
    runs = [broker.create_flow_run(deployment=q) for q in ("low", "high", "low", "high", "high")]
    agents.start("high", "low", args=("--limit", "1"))
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 120, "runs to end")
    order = [span["tag"] for span in sorted(records(trace), key=lambda span: span["start"])]
    assert order == ["high", "high", "high", "low", "low"]


def test_pause_while_agents_wait(broker: Broker, agents: Agents, figure: Figure) -> None:
    deploy(broker, "hello", "hello", "pausable")
    agent = agents.start("pausable")
    wait_for(lambda: broker.read_work_queue("pausable").agents, 120, "the agent to poll")
    broker.pause_work_queue("pausable")
    run = broker.create_flow_run(deployment="hello")
    # The observation window is the agent's own claims, not a time: its claim on the
    # paused queue (the wake-up the new run sent) and its fallback poll a second later
    # both come after the run was made, by Redis' clock; neither may deliver it.
    window_ends = broker.server_time().timestamp() + 1.0
    wait_for(
        lambda: last_poll(broker, "pausable") > window_ends, 120, "two polls of the paused queue"
    )
    figure("runs_claimed_while_paused", int(state_of(broker, run.id) is not StateType.SCHEDULED))
    assert state_of(broker, run.id) is StateType.SCHEDULED
    resumed = broker.resume_work_queue("pausable")
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "COMPLETED")
    claimed_at = broker.read_flow_run(run.id).claimed_at
    figure(
        "resume_to_claimed",
        round((claimed_at - resumed.updated).total_seconds() * 1000, 1),
        unit="ms",
    )
    assert agent.poll() is None


def test_prefetch_claims_early_and_starts_on_time(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    """The agent is up and waiting before the run is made (its start-up is no part of
    the window), and the claim time is the run's own, stamped by Redis' clock."""
    trace = workdir / "trace.jsonl"
    deploy(
        broker, "sleepy", "sleepy", "prefetch", parameters={"seconds": 0, "record_to": str(trace)}
    )
    agents.start("prefetch", args=("--prefetch-seconds", "60"))
    wait_for(lambda: broker.read_work_queue("prefetch").agents, 120, "the agent to poll")
    run = broker.create_flow_run(deployment="sleepy", start_in_seconds=8)
    wait_for(lambda: state_of(broker, run.id) is not StateType.SCHEDULED, 120, "the claim")
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "COMPLETED")
    done = broker.read_flow_run(run.id)
    figure(
        "claimed_before_due",
        round((run.expected_start_time - done.claimed_at).total_seconds() * 1000, 1),
        unit="ms",
    )
    assert done.claimed_at < run.expected_start_time, "claimed early, by the prefetch"
    [span] = records(trace)
    assert span["pid"] == engine_pid(done), "the flow ran in the engine process the run names"
    lag = span["start"] - run.expected_start_time.timestamp()
    figure("started_after_due", round(lag * 1000, 1), unit="ms")
    assert lag >= 0, "claimed early, started on time: never before it was due"


def test_agent_killed_between_claim_and_launch(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(
        broker, "sleepy", "sleepy", "fragile", parameters={"seconds": 0, "record_to": str(trace)}
    )
    run = broker.create_flow_run(deployment="sleepy")
    doomed = agents.start("fragile", env={"RUNQ_TEST_PAUSE_AFTER_CLAIM": "60"})
    wait_for(lambda: state_of(broker, run.id) is StateType.PENDING, 120, "the claim")
    doomed.kill()
    doomed.wait()
    killed_at = broker.server_time()
    agents.start("fragile")
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "COMPLETED elsewhere")
    figure("lease", float(agent_helpers.FAST["RUNQ_LEASE_SECONDS"]), unit="s")
    figure(
        "kill_to_claimed_again",
        (broker.read_flow_run(run.id).claimed_at - killed_at).total_seconds(),
        unit="s",
    )
    figure("executions", len(records(trace)))
    assert len(records(trace)) == 1, "executed once"
    assert broker.read_flow_run(run.id).run_count == 1


def test_agent_and_flow_killed_mid_run(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    broker.create_work_queue("one", concurrency_limit=1)
    deploy(broker, "long", "sleepy", "one", parameters={"seconds": 300, "record_to": str(trace)})
    deploy(broker, "short", "sleepy", "one", parameters={"seconds": 0, "record_to": str(trace)})
    first = broker.create_flow_run(deployment="long")
    second = broker.create_flow_run(deployment="short")
    doomed = agents.start("one")
    engine_pid = engine_pid_when_running(broker, first.id)
    doomed.kill()
    os.kill(engine_pid, signal.SIGKILL)
    killed_on_redis = broker.server_time()
    agents.start("one")
    wait_for(lambda: state_of(broker, first.id) is StateType.CRASHED, 120, "CRASHED")
    wait_for(lambda: state_of(broker, second.id) is StateType.COMPLETED, 120, "the next run")
    figure("lease", float(agent_helpers.FAST["RUNQ_LEASE_SECONDS"]), unit="s")
    figure(
        "kill_to_crashed",
        (broker.read_flow_run(first.id).end_time - killed_on_redis).total_seconds(),
        unit="s",
    )
    figure(
        "kill_to_slot_reused",
        (broker.read_flow_run(second.id).claimed_at - killed_on_redis).total_seconds(),
        unit="s",
    )
    assert broker.read_work_queue("one").active_runs == 0


def test_cancel_stops_the_flow_and_its_grandchild(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "parent", "with_grandchild", "cancel", parameters={"record_to": str(trace)})
    run = broker.create_flow_run(deployment="parent")
    agents.start("cancel")
    wait_for(lambda: records(trace), 120, "the grandchild to start")
    engine_pid = engine_pid_when_running(broker, run.id)
    child_pid = records(trace)[0]["child"]
    assert broker.cancel_flow_run(run.id).state.type is StateType.CANCELLING
    wait_for(lambda: state_of(broker, run.id) is StateType.CANCELLED, 120, "CANCELLED")
    for pid in (engine_pid, child_pid):
        wait_for(lambda: not alive(pid), 120, f"process {pid} to be gone")


def last_poll(broker: Broker, queue: str) -> float:
    """When an agent last claimed from ``queue`` (Redis' clock, epoch seconds; 0: never)."""
    polls = broker.client.zrange(broker.keys.queue(queue).agents, -1, -1, withscores=True)
    return polls[0][1] / 1000 if polls else 0.0


def engine_pid(run: FlowRun) -> int:
    """The pid in a process run's infrastructure id (host:pid)."""
    return int(str(run.infrastructure_id).rsplit(":", 1)[1])


def runs_in_flight(port: int) -> float | None:
    """The runs an agent still holds, from its /metrics (None while it does not answer)."""
    try:
        status, text = get(port)
    except OSError:
        return None
    return value(parse(text), "runq_agent_runs_in_flight") if status == 200 else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[1][0] != "Z"


def test_a_stopped_agents_late_writes_are_rejected(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    """The old owner is stopped between its claim and its launch (a pause long enough
    that a busy machine cannot miss it); once it wakes, the test waits until it holds no
    run any more (its /metrics), so whatever it tried after waking has happened."""
    trace = workdir / "trace.jsonl"
    deploy(
        broker, "sleepy", "sleepy", "stopped", parameters={"seconds": 0, "record_to": str(trace)}
    )
    run = broker.create_flow_run(deployment="sleepy")
    port = free_port()
    frozen = agents.start(
        "stopped", args=("--health-port", str(port)), env={"RUNQ_TEST_PAUSE_AFTER_CLAIM": "10"}
    )
    wait_for(lambda: state_of(broker, run.id) is StateType.PENDING, 120, "the claim")
    os.kill(frozen.pid, signal.SIGSTOP)
    stopped_at = broker.server_time()
    old_owner = broker.read_flow_run(run.id).agent_id
    try:
        agents.start("stopped")
        wait_for(
            lambda: state_of(broker, run.id) is StateType.COMPLETED,
            120,
            "COMPLETED by the other agent",
        )
        figure(
            "stop_to_claimed_again",
            (broker.read_flow_run(run.id).claimed_at - stopped_at).total_seconds(),
            unit="s",
        )
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    wait_for(lambda: runs_in_flight(port) == 0, 120, "the old owner to let go of the run")
    figure("executions", len(records(trace)))
    assert len(records(trace)) == 1, "executed once"
    done = broker.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED and done.run_count == 1
    assert done.agent_id != old_owner, "the other agent ran it"


def test_a_flow_process_killed_under_a_live_agent_is_crashed(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "long", "sleepy", "killed", parameters={"seconds": 300, "record_to": str(trace)})
    run = broker.create_flow_run(deployment="long")
    agents.start("killed")
    engine_pid = engine_pid_when_running(broker, run.id)
    os.kill(engine_pid, signal.SIGKILL)
    killed_at = broker.server_time()
    wait_for(lambda: state_of(broker, run.id) is StateType.CRASHED, 120, "CRASHED")
    figure(
        "kill_to_crashed",
        (broker.read_flow_run(run.id).end_time - killed_at).total_seconds(),
        unit="s",
    )
    assert broker.read_flow_run(run.id).state.message == "infrastructure exited with status -9"
    assert broker.read_work_queue("killed").active_runs == 0


def test_sigterm_hands_back_unstarted_runs_and_deregisters(
    broker: Broker, agents: Agents, figure: Figure
) -> None:
    deploy(broker, "hello", "hello", "graceful")
    run = broker.create_flow_run(deployment="hello")
    # Stopped between claim and launch: the pause outlasts any wait of this test.
    agent = agents.start("graceful", env={"RUNQ_TEST_PAUSE_AFTER_CLAIM": "60"})
    wait_for(lambda: state_of(broker, run.id) is StateType.PENDING, 120, "the claim")
    wait_for(broker.list_agents, 120, "the agent to register")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    handed_back = broker.read_flow_run(run.id)
    figure("runs_handed_back", int(handed_back.state.type is StateType.SCHEDULED))
    figure("slots_held_after_exit", broker.read_work_queue("graceful").active_runs)
    assert handed_back.state.type is StateType.SCHEDULED and handed_back.agent_id is None
    assert broker.list_agents() == []
    assert broker.read_work_queue("graceful").active_runs == 0


def test_skip_if_late_cancels_instead_of_starting(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "catch-up",
        "sleepy",
        "late",
        parameters={"seconds": 0, "record_to": str(trace)},
        skip_if_late_by_seconds=60,
    )
    from datetime import timedelta

    late = broker.create_flow_run(
        deployment="catch-up", scheduled_start_time=broker.server_time() - timedelta(minutes=5)
    )
    on_time = broker.create_flow_run(deployment="catch-up")
    agents.start("late")
    wait_for(lambda: ended(broker, late.id, on_time.id), 120, "both runs to end")
    skipped = broker.read_flow_run(late.id)
    assert skipped.state.type is StateType.CANCELLED and skipped.state.message.startswith(
        "skipped: late by 5m"
    )
    assert state_of(broker, on_time.id) is StateType.COMPLETED
    assert len(records(trace)) == 1


def test_the_health_endpoint_answers_while_the_agent_runs(broker: Broker, agents: Agents) -> None:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = agents.start("health", args=("--health-port", str(port)))

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    wait_for(healthy, 120, "the health endpoint")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    assert not healthy()


def test_strict_refuses_a_redis_that_may_evict(
    broker: Broker, agents: Agents, figure: Figure
) -> None:
    broker.client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        agent = agents.start("strict", args=("--strict",))
        assert agent.wait(timeout=120) == 1
        figure("strict_agent_exit_code", agent.returncode)
        output = (agents.workdir / f"agent-{len(agents.procs) - 1}.log").read_text()
        assert "maxmemory-policy allkeys-lru" in output and "Traceback" not in output
        assert output.strip().splitlines()[-1].startswith("Redis maxmemory-policy is allkeys-lru")
    finally:
        broker.client.config_set("maxmemory-policy", "noeviction")


def test_a_blocked_queue_does_not_delay_the_next(
    broker: Broker, agents: Agents, figure: Figure
) -> None:
    broker.create_work_queue("blocked", concurrency_limit=0)
    deploy(broker, "stuck", "hello", "blocked")
    deploy(broker, "free", "hello", "open")
    broker.enqueue_flow_runs(
        "blocked", [{"deployment_id": broker.read_deployment("stuck").id}] * 500
    )
    agents.start("blocked", "open")
    wait_for(lambda: broker.read_work_queue("open").agents, 120, "the agent to poll")
    run = broker.create_flow_run(deployment="free")
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "the open queue's run")
    claimed = broker.read_flow_run(run.id)
    figure("runs_blocked_ahead", broker.read_work_queue("blocked").scheduled_runs)
    figure(
        "due_to_claimed",
        round((claimed.claimed_at - claimed.expected_start_time).total_seconds() * 1000, 1),
        unit="ms",
    )
    # No time threshold (shared machines are noisy): the bound is wait_for's timeout, the
    # delay itself is a figure in docs/reliability.md.
    assert broker.read_work_queue("blocked").scheduled_runs == 500


@pytest.mark.skipif(
    shutil.which("faketime") is None, reason="faketime (Debian's package) is not installed"
)
def test_an_agent_whose_clock_runs_ahead_never_starts_a_run_early(
    broker: Broker, agents: Agents, figure: Figure
) -> None:
    """The agent and its engines run 10 minutes ahead (libfaketime); Redis' clock decides."""
    deploy(broker, "hello", "hello", "skewed")
    skew = ["faketime", "-f", "+10m"]
    agents.start("skewed", args=("--prefetch-seconds", "60"), wrap=skew)
    wait_for(lambda: broker.read_work_queue("skewed").agents, 120, "the agent to poll")
    runs = [broker.create_flow_run(deployment="hello", start_in_seconds=s) for s in (6, 8)]
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 120, "the runs to end")
    finished = [broker.read_flow_run(run.id) for run in runs]
    lags = [
        (r.start_time - r.expected_start_time).total_seconds() for r in finished if r.start_time
    ]
    figure(
        "agent_clock_ahead_of_redis",
        round(clock_of(skew) - broker.server_time().timestamp(), 1),
        unit="s",
    )
    figure("runs_started_early", sum(lag < 0 for lag in lags))
    figure("earliest_start_after_due", round(min(lags, default=0) * 1000, 1), unit="ms")
    for run in runs:
        done = broker.read_flow_run(run.id)
        assert done.state.type is StateType.COMPLETED
        assert done.claimed_at < done.expected_start_time, "claimed early, by the prefetch"
        assert done.start_time >= done.expected_start_time, "but started on time"


def clock_of(wrap: list[str]) -> float:
    """The clock (epoch seconds) a process started under ``wrap`` reads: the skew it gets."""
    return float(
        subprocess.run([*wrap, "date", "+%s.%N"], capture_output=True, text=True, check=True).stdout
    )


def test_agents_and_flows_ride_out_a_redis_restart(
    broker: Broker, agents: Agents, workdir: Path, redis_server, figure: Figure
) -> None:
    broker.client.config_set("appendfsync", "always")  # every accepted write is on disk
    trace = workdir / "trace.jsonl"
    deploy(
        broker, "sleepy", "sleepy", "restart", parameters={"seconds": 0.5, "record_to": str(trace)}
    )
    run = broker.create_flow_run(deployment="sleepy")
    agent = agents.start("restart", env={"RUNQ_LEASE_SECONDS": "10"})  # outlives the outage
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 120, "RUNNING")
    redis_server.kill()
    killed = time.monotonic()
    wait_for(lambda: records(trace), 120, "the flow to end while Redis is down")
    redis_server.start()
    back = time.monotonic()
    wait_for(
        lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "COMPLETED after the restart"
    )
    figure("outage", round(back - killed, 2), unit="s")
    figure("restart_to_completed", round(time.monotonic() - back, 2), unit="s")
    after = broker.create_flow_run(deployment="sleepy", parameters={"seconds": 0})
    wait_for(lambda: state_of(broker, after.id) is StateType.COMPLETED, 120, "a run made after it")
    figure(
        "runs_completed",
        sum(state_of(broker, made.id) is StateType.COMPLETED for made in (run, after)),
    )
    figure("executions", len(records(trace)))
    figure("agent_still_up", int(agent.poll() is None))
    assert agent.poll() is None, "the agent kept running"
    assert len(records(trace)) == 2


def test_a_run_crashed_behind_its_owners_back_is_stopped_there(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    """Agent and flow frozen past the lease: the run is CRASHED (its slot freed); when they
    wake, the flow must not go on beside whoever gets the slot next."""
    trace = workdir / "trace.jsonl"
    deploy(broker, "slow", "sleepy", "frozen", parameters={"seconds": 3, "record_to": str(trace)})
    run = broker.create_flow_run(deployment="slow")
    agent = agents.start("frozen")
    engine_pid = engine_pid_when_running(broker, run.id)
    for pid in (agent.pid, engine_pid):
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: broker.sweep().crashed, 120, "the lease to run out")
    finally:
        for pid in (engine_pid, agent.pid):
            os.kill(pid, signal.SIGCONT)
    woke = time.monotonic()
    wait_for(lambda: not alive(engine_pid), 120, "the flow to be stopped")
    figure("wake_to_flow_stopped", round(time.monotonic() - woke, 2), unit="s")
    # The flow runs in its engine's process (test_prefetch_claims_early_and_starts_on_time
    # checks the pid): with that process gone it can no longer finish.
    figure("executions_after_crash", len(records(trace)))
    assert records(trace) == []
    assert state_of(broker, run.id) is StateType.CRASHED


def test_a_queue_deleted_under_a_running_agent_is_created_again(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    """As at start: the agent names the queue, so it exists (Redis restored empty, or an
    operator's delete), and one line says so instead of a warning on every poll."""
    broker.create_work_queue("comeback")
    agents.start("comeback")
    wait_for(lambda: broker.read_work_queue("comeback").agents, 120, "the agent to poll")
    broker.delete_work_queue("comeback")  # (no deployment on it yet: that would refuse)
    wait_for(
        lambda: "comeback" in [q.name for q in broker.list_work_queues()], 120, "the queue again"
    )
    deploy(broker, "hello", "hello", "comeback")
    run = broker.create_flow_run(deployment="hello")
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "the run on it")
    log = (workdir / "agent-0.log").read_text()
    assert log.count("Work queue 'comeback' was gone; created it again.") == 1, log
