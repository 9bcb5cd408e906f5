"""The agent side of named limits and timeouts: what parked runs cost an idle agent and
the runs that do not wait, and how long a timed-out flow's process outlives its deadline.

- :func:`idle_command_rates`: Redis commands per second with one real agent process
  idle on a queue, no run waiting vs ``waiting`` runs parked on a full limit.
- :func:`unblocked_latencies`: due -> claimed of untagged runs (Redis' clock, from the
  run's record) with an Agent serving the queue, before and after runs are parked there.
- :func:`timeout_overruns`: a real agent process, flows that sleep far past a short
  timeout; how long past its deadline each flow's process still ran.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from uuid import UUID

from runq.broker import Broker, FlowRun, StateType

from .limit_fixtures import (
    AgentProcess,
    CommandCounter,
    ThreadAgent,
    fill_limit,
    park_runs,
    wait_until,
)
from .noop_infrastructure import NoopInfrastructure

SETTLE_SECONDS = 3.0  # after a change, before a window: the agent's reactions die down
FULL_LIMIT = 2  # the slots of the full limit (held by runs no agent serves)

SLEEPER_FLOW = """
import json, os, time


def sleeper(record_to: str, seconds: float = 60.0) -> None:
    with open(record_to + ".tmp", "w") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "start": time.time()}))
    os.replace(record_to + ".tmp", record_to)  # whole, or not there
    time.sleep(seconds)
"""


def idle_command_rates(
    url: str, workdir: Path, waiting: int, window: float, tick: Callable[[float], None]
) -> dict[str, float]:
    """Commands/s (and Redis CPU us/s) of an idle agent process with 0, then ``waiting``
    runs parked on its queue's full limit (the limit exists and is full in both)."""
    broker = Broker.from_url(url)
    tag, queue = "bench-idle", "bench-idle"
    fill_limit(broker, tag, FULL_LIMIT)
    counter = CommandCounter(broker)
    with AgentProcess(url, queue, workdir):
        time.sleep(SETTLE_SECONDS)
        calls_0, usec_0 = counter.over(window, tick)
        park_runs(broker, queue, tag, waiting)
        time.sleep(SETTLE_SECONDS)
        calls_n, usec_n = counter.over(window, tick)
        still = broker.read_concurrency_limit(tag)
        if still.waiting != waiting or still.active != FULL_LIMIT:
            raise RuntimeError(f"the limit changed during the window: {still}")
    broker.close()
    return {"calls_0": calls_0, "usec_0": usec_0, "calls_n": calls_n, "usec_n": usec_n}


def _due_to_claimed(
    broker: Broker, queue: str, samples: int, tick: Callable[[], None]
) -> list[float]:
    """Milliseconds from due to claimed of ``samples`` untagged runs, one at a time: half
    due at once (the enqueue's wake-up serves them), half 0.2 s later (the agent's timer)."""
    latencies = []
    for i in range(samples):
        start_in = 0.2 if i % 2 == 0 else 0.0
        run = broker.create_flow_run(queue, start_in_seconds=start_in)

        def claimed(run_id: str = str(run.id)) -> object:
            found = broker.read_flow_run(run_id)
            return found if found.claimed_at is not None else None

        found = wait_until(claimed, 10, "an untagged run to be claimed")
        assert isinstance(found, FlowRun) and found.claimed_at is not None
        latencies.append((found.claimed_at - found.expected_start_time).total_seconds() * 1000)
        tick()
    return latencies


def unblocked_latencies(
    url: str, waiting: int, samples: int, tick: Callable[[], None]
) -> tuple[list[float], list[float]]:
    """(with 0 waiting, with ``waiting`` parked) due -> claimed latencies of untagged runs
    on one queue served by one Agent, the queue's tagged runs parked on a full limit."""
    broker = Broker.from_url(url)
    tag, queue = "bench-unblock", "bench-unblock"
    fill_limit(broker, tag, FULL_LIMIT)
    completer, agent_broker = Broker.from_url(url), Broker.from_url(url)
    noop = NoopInfrastructure(completer)
    with ThreadAgent(agent_broker, queue, lambda d, b: noop):
        time.sleep(0.5)  # the agent is up and idle
        none_waiting = _due_to_claimed(broker, queue, samples, tick)
        park_runs(broker, queue, tag, waiting)
        time.sleep(SETTLE_SECONDS)
        with_waiting = _due_to_claimed(broker, queue, samples, tick)
        if broker.read_concurrency_limit(tag).waiting != waiting:
            raise RuntimeError("parked runs left the line during the samples")
    for each in (completer, agent_broker, broker):
        each.close()
    return none_waiting, with_waiting


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not: it runs no more code)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@dataclass
class Overruns:
    """What the timeout phase measured."""

    overruns_ms: list[float] = field(default_factory=list)  # pid gone - (start + timeout)
    timed_out: int = 0  # runs that ended FAILED TimedOut
    runs: int = 0


def _ended(broker: Broker, run_id: UUID) -> FlowRun | None:
    run = broker.read_flow_run(run_id)
    return run if run.state.is_terminal else None


def _kill_leftovers(pids: list[int]) -> None:
    """Kill the flows this phase started that still run (an agent that failed to)."""
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def timeout_overruns(
    url: str,
    workdir: Path,
    runs: int,
    timeout: float,
    env: dict[str, str],
    tick: Callable[[], None],
) -> Overruns:
    """``runs`` runs of a flow that sleeps 60 s under a deployment ``timeout`` s timeout,
    one agent process (with ``env``); each flow's overrun past its deadline."""
    broker = Broker.from_url(url)
    flows = workdir / "sleeper_flow.py"
    flows.write_text(SLEEPER_FLOW)
    queue = "bench-timeouts"
    broker.create_deployment(
        name="sleeper",
        entrypoint=f"{flows}:sleeper",
        work_queue_name=queue,
        timeout_seconds=timeout,
        infrastructure={"type": "process", "stream_output": False},
    )
    records = [workdir / f"sleeper-{i}.json" for i in range(runs)]
    pids: list[int] = []
    result = Overruns(runs=runs)
    try:
        with AgentProcess(url, queue, workdir, env):
            ids = [
                broker.create_flow_run(deployment="sleeper", parameters={"record_to": str(path)}).id
                for path in records
            ]
            wait_until(lambda: all(p.exists() for p in records), 120, "the flows to start")
            pids = [int(json.loads(p.read_text())["pid"]) for p in records]
            gone_at: dict[int, float] = {}
            deadline = time.monotonic() + 120
            while len(gone_at) < len(pids):
                if time.monotonic() > deadline:
                    raise RuntimeError("timed-out flows still ran 120 s later")
                for pid in pids:
                    if pid not in gone_at and not _alive(pid):
                        gone_at[pid] = time.time()
                        tick()
                time.sleep(0.005)
            for run_id, pid in zip(ids, pids, strict=True):
                run = wait_until(partial(_ended, broker, run_id), 60, "a timed-out run to end")
                assert isinstance(run, FlowRun) and run.start_time is not None
                if run.state.type is StateType.FAILED and run.state.name == "TimedOut":
                    result.timed_out += 1
                due = run.start_time.timestamp() + timeout
                result.overruns_ms.append((gone_at[pid] - due) * 1000)
    finally:
        _kill_leftovers(pids)
        broker.close()
    return result
