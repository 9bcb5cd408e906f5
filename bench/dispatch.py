"""Dispatch latency and throughput through the whole agent.

Run: ``.venv/bin/python bench/dispatch.py [--url redis://...] [--samples N]``. Without
--url it starts a private redis-server on a free port. Prints a table, then as its last
line one JSON object with the keys the agent issue names:

- due_to_claimed_p50_ms / _p99_ms: from a run's due time to its claim, with an idle agent
  (prefetch 0), both stamped by Redis' clock; runs come due while the agent waits
- engine_start_p50_ms: from the claim of a process run to its RUNNING state, i.e. the
  agent's submission plus the start-up of ``runq flow-run execute`` (Prefect 2's engine
  takes about 2.4 s here)
- noop_runs_per_s: runs per second through the agent with an in-process infrastructure
  that completes each run at once (claim, submit, settle: the agent's own overhead)
- true_runs_per_s: runs per second when each run starts ``/bin/true`` as its process
  (those runs end CRASHED: /bin/true reports no state; it measures process dispatch)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from runq.agent.agent import Agent, AgentSettings  # noqa: E402
from runq.agent.infrastructure import for_deployment  # noqa: E402
from runq.broker import Broker, Deployment, FlowRun, StateType  # noqa: E402
from tests.redis_server import RedisServer, available_binaries  # noqa: E402


class DoneHandle:
    """A handle of a run that already completed."""

    infrastructure_id = "noop"

    def poll(self) -> int:
        return 0

    def stop(self, grace_seconds: float) -> int:
        return 0


class NoopInfrastructure:
    """Completes each run in-process as a real engine would, through the broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> DoneHandle:
        token = int(env["RUNQ_FLOW_RUN_TOKEN"])
        self.broker.set_state(run.id, StateType.RUNNING, token=token)
        self.broker.set_state(run.id, StateType.COMPLETED, token=token)
        return DoneHandle()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class RunningAgent:
    """An Agent on its own thread, stopped on exit."""

    def __init__(self, broker: Broker, queue: str, infrastructure=None, **settings) -> None:
        config = AgentSettings(work_queues=[queue], prefetch_seconds=0, heartbeat_seconds=5, **settings)
        self.agent = Agent(broker, config, infrastructure or for_deployment)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self) -> Agent:
        self.agent.start()
        self.thread.start()
        return self.agent

    def __exit__(self, *exc) -> None:
        self.agent.request_stop()
        self.thread.join(timeout=30)


def wait_all_ended(broker: Broker, queue: str, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = broker.read_work_queue(queue)
        if state.scheduled_runs == 0 and state.active_runs == 0:
            return
        time.sleep(0.02)
    raise RuntimeError(f"runs on {queue!r} did not end in {timeout}s")


def due_to_claimed(url: str, samples: int) -> list[float]:
    broker = Broker.from_url(url)
    noop = NoopInfrastructure(Broker.from_url(url))
    latencies = []
    with RunningAgent(broker, "latency", lambda d, b: noop):
        time.sleep(0.5)  # the agent is up and idle
        for i in range(samples):
            if i % 2:
                run = broker.create_flow_run("latency")  # due now: the enqueue signal wakes it
            else:
                run = broker.create_flow_run("latency", start_in_seconds=0.2)  # its timer wakes it
            deadline = time.monotonic() + 10
            while (claimed := broker.read_flow_run(run.id)).claimed_at is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("a run was not claimed within 10 s")
                time.sleep(0.002)
            latencies.append((claimed.claimed_at - claimed.expected_start_time).total_seconds() * 1000)
    broker.close()
    return latencies


def engine_start(url: str, samples: int, workdir: Path) -> list[float]:
    broker = Broker.from_url(url)
    (workdir / "noop_flow.py").write_text("def noop():\n    return None\n")
    broker.create_deployment(name="engine-start", entrypoint=f"{workdir}/noop_flow.py:noop", work_queue_name="engine")
    with RunningAgent(broker, "engine", limit=1):
        runs = [broker.create_flow_run(deployment="engine-start") for _ in range(samples)]
        wait_all_ended(broker, "engine", samples)
    starts = []
    for run in runs:
        done = broker.read_flow_run(run.id)
        assert done.state.type is StateType.COMPLETED, done.state
        starts.append((done.start_time - done.claimed_at).total_seconds() * 1000)
    broker.close()
    return starts


def throughput(url: str, queue: str, total: int, infrastructure=None, deployment: str | None = None) -> float:
    broker = Broker.from_url(url)
    if deployment:
        broker.enqueue_flow_runs(queue, [{"deployment_id": broker.read_deployment(deployment).id} for _ in range(total)])
    else:
        broker.enqueue_flow_runs(queue, [{} for _ in range(total)])
    started = time.perf_counter()
    with RunningAgent(broker, queue, infrastructure):
        wait_all_ended(broker, queue, total)
    rate = total / (time.perf_counter() - started)
    broker.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    args = parser.parse_args()
    logging.getLogger("runq").setLevel(logging.WARNING + 10)  # the table is the output
    workdir = Path(tempfile.mkdtemp(prefix="runq-dispatch-"))
    server = None
    url = args.url
    if url is None:
        binaries = available_binaries()
        server = RedisServer(binaries["redis7"] or binaries["redis6"], workdir / "redis", extra_args=("--appendonly", "no"))
        server.start()
        url = server.url
    try:
        Broker.from_url(url).client.flushall()
        latency = due_to_claimed(url, args.samples)
        engine = engine_start(url, max(10, args.samples // 10), workdir)
        completer = Broker.from_url(url)
        noop_rate = throughput(url, "noop", 2000, lambda d, b: NoopInfrastructure(completer))
        Broker.from_url(url).create_deployment(name="true", command=["/bin/true"], work_queue_name="true",
                                               infrastructure={"type": "process", "command": ["/bin/true"], "stream_output": False})
        true_rate = throughput(url, "true", 200, deployment="true")
    finally:
        if server:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "due_to_claimed_p50_ms": round(statistics.median(latency), 2),
        "due_to_claimed_p99_ms": round(percentile(latency, 0.99), 2),
        "engine_start_p50_ms": round(statistics.median(engine), 1),
        "noop_runs_per_s": round(noop_rate, 1),
        "true_runs_per_s": round(true_rate, 1),
    }
    table = Table(title="runq dispatch benchmark")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    table.add_row("due -> claimed p50", f"{figures['due_to_claimed_p50_ms']} ms", f"{len(latency)} runs, idle agent, Redis clock")
    table.add_row("due -> claimed p99", f"{figures['due_to_claimed_p99_ms']} ms", "")
    table.add_row("claim -> RUNNING p50", f"{figures['engine_start_p50_ms']} ms", f"{len(engine)} process runs (p99 {percentile(engine, 0.99):.0f} ms)")
    table.add_row("runs/s, no-op infrastructure", f"{figures['noop_runs_per_s']}", "2000 runs, one agent")
    table.add_row("runs/s, /bin/true processes", f"{figures['true_runs_per_s']}", "200 runs, one agent")
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
