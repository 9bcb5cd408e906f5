"""Dispatch latency and throughput through the whole agent.

Run: ``.venv/bin/python bench/dispatch.py [--url redis://...] [--samples N]``. Without
--url it starts a private redis-server on a free port. Prints a table, then as its last
line one JSON object with the keys the agent issue names:

- due_to_claimed_p50_ms / _p99_ms: from a run's due time to its claim, with an idle agent
  (prefetch 0), both stamped by Redis' clock; runs come due while the agent waits
- engine_start_p50_ms: from the claim of a process run to its RUNNING state, i.e. the
  agent's submission plus the start-up of the engine, the default way (the warm engine;
  Prefect 2's engine takes about 2.4 s here); engine_start_cold_p50_ms and
  engine_start_warm_p50_ms: the same with a fresh ``python -m runq flow-run execute`` per
  run (``--no-warm-engine``) and forked by the agent's warm engine
- noop_runs_per_s: runs per second through the agent with an in-process infrastructure
  that completes each run at once (claim, submit, settle: the agent's own overhead)
- true_runs_per_s: runs per second when each run starts ``/bin/true`` as its process
  (those runs end CRASHED: /bin/true reports no state; it measures process dispatch)
- true_runs_per_s_cold / _warm: runs per second of a no-op Python flow through the process
  infrastructure, one agent without a limit, cold and warm: the true cost of a run
- runs_200_limit_10_s / runs_200_limit_10_cold_s: first create to all completed of 200
  no-op flow runs through one agent at ``--limit 10``, warm and cold

Warm figures are null when the agent has no warm engine (an older tree).
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

from noop_infrastructure import NoopInfrastructure, percentile  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from runq.agent.agent import Agent, AgentSettings  # noqa: E402
from runq.agent.infrastructure import for_deployment  # noqa: E402
from runq.broker import Broker, StateType  # noqa: E402
from tests.redis_server import RedisServer, available_binaries  # noqa: E402

#: The agent has a warm engine (this tree's); an older tree measures the cold path only.
HAS_WARM = "warm_engine" in AgentSettings.__dataclass_fields__


class RunningAgent:
    """An Agent on its own thread, stopped on exit."""

    def __init__(
        self, broker: Broker, queue: str, infrastructure=None, warm: bool = True, **settings
    ) -> None:
        if HAS_WARM:
            settings["warm_engine"] = warm
        config = AgentSettings(
            work_queues=[queue], prefetch_seconds=0, heartbeat_seconds=5, **settings
        )
        self.agent = Agent(broker, config, infrastructure or for_deployment)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self) -> Agent:
        self.agent.start()
        warm_engine = getattr(self.agent, "warm_engine", None)
        if warm_engine is not None and not warm_engine.wait_ready():
            raise RuntimeError("the warm engine did not start")
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
            latencies.append(
                (claimed.claimed_at - claimed.expected_start_time).total_seconds() * 1000
            )
    broker.close()
    return latencies


def noop_flow(url: str, workdir: Path) -> str:
    """The deployment of a no-op Python flow (its name)."""
    (workdir / "noop_flow.py").write_text("def noop():\n    return None\n")
    Broker.from_url(url).create_deployment(
        name="noop-flow",
        entrypoint=f"{workdir}/noop_flow.py:noop",
        work_queue_name="engine",
        infrastructure={"type": "process", "stream_output": False},
    )
    return "noop-flow"


def engine_start(url: str, samples: int, deployment: str, warm: bool) -> list[float]:
    """Claim -> RUNNING of ``samples`` runs, one at a time (limit 1)."""
    broker = Broker.from_url(url)
    queue = f"engine-{'warm' if warm else 'cold'}"
    with RunningAgent(broker, queue, warm=warm, limit=1):
        runs = [broker.create_flow_run(queue, deployment=deployment) for _ in range(samples)]
        wait_all_ended(broker, queue, samples)
    starts = []
    for run in runs:
        done = broker.read_flow_run(run.id)
        assert done.state.type is StateType.COMPLETED, done.state
        starts.append((done.start_time - done.claimed_at).total_seconds() * 1000)
    broker.close()
    return starts


def throughput(
    url: str, queue: str, total: int, infrastructure=None, deployment: str | None = None, **agent
) -> float:
    broker = Broker.from_url(url)
    if deployment:
        broker.enqueue_flow_runs(
            queue, [{"deployment_id": broker.read_deployment(deployment).id} for _ in range(total)]
        )
    else:
        broker.enqueue_flow_runs(queue, [{} for _ in range(total)])
    with RunningAgent(broker, queue, infrastructure, **agent):
        started = time.perf_counter()  # the agent is up (and its warm engine ready)
        wait_all_ended(broker, queue, total)
        rate = total / (time.perf_counter() - started)
    broker.close()
    return rate


def all_completed_in(
    url: str, queue: str, total: int, deployment: str, warm: bool, limit: int
) -> float:
    """Seconds from the first of ``total`` runs created (one by one, the agent waiting)
    to the last completed, at the agent's ``limit``."""
    broker = Broker.from_url(url)
    with RunningAgent(broker, queue, warm=warm, limit=limit):
        started = time.perf_counter()
        runs = [broker.create_flow_run(queue, deployment=deployment) for _ in range(total)]
        wait_all_ended(broker, queue, total)
        seconds = time.perf_counter() - started
    completed = sum(broker.read_flow_run(run.id).state.type is StateType.COMPLETED for run in runs)
    if completed != total:
        raise RuntimeError(f"only {completed} of {total} runs completed")
    broker.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument(
        "--runs", type=int, default=200, help="no-op flow runs per throughput figure"
    )
    args = parser.parse_args()
    logging.getLogger("runq").setLevel(logging.WARNING + 10)  # the table is the output
    workdir = Path(tempfile.mkdtemp(prefix="runq-dispatch-"))
    server = None
    url = args.url
    if url is None:
        binaries = available_binaries()
        server = RedisServer(
            binaries["redis7"] or binaries["redis6"],
            workdir / "redis",
            extra_args=("--appendonly", "no"),
        )
        server.start()
        url = server.url
    try:
        Broker.from_url(url).client.flushall()
        latency = due_to_claimed(url, args.samples)
        flow = noop_flow(url, workdir)
        samples = max(10, args.samples // 10)
        engine_cold = engine_start(url, samples, flow, warm=False)
        engine_warm = engine_start(url, samples, flow, warm=True) if HAS_WARM else None
        completer = Broker.from_url(url)
        noop_rate = throughput(url, "noop", 2000, lambda d, b: NoopInfrastructure(completer))
        Broker.from_url(url).create_deployment(
            name="true",
            command=["/bin/true"],
            work_queue_name="true",
            infrastructure={"type": "process", "command": ["/bin/true"], "stream_output": False},
        )
        true_rate = throughput(url, "true", 200, deployment="true")
        flow_cold = throughput(url, "flow-cold", args.runs, deployment=flow, warm=False)
        flow_warm = (
            throughput(url, "flow-warm", args.runs, deployment=flow, warm=True)
            if HAS_WARM
            else None
        )
        limited_cold = all_completed_in(url, "limited-cold", 200, flow, warm=False, limit=10)
        limited_warm = (
            all_completed_in(url, "limited-warm", 200, flow, warm=True, limit=10)
            if HAS_WARM
            else None
        )
    finally:
        if server:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def p50(samples: list[float] | None) -> float | None:
        return None if samples is None else round(statistics.median(samples), 1)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    figures = {
        "due_to_claimed_p50_ms": round(statistics.median(latency), 2),
        "due_to_claimed_p99_ms": round(percentile(latency, 0.99), 2),
        "engine_start_p50_ms": p50(engine_warm or engine_cold),
        "noop_runs_per_s": round(noop_rate, 1),
        "true_runs_per_s": round(true_rate, 1),
        "engine_start_cold_p50_ms": p50(engine_cold),
        "engine_start_warm_p50_ms": p50(engine_warm),
        "true_runs_per_s_cold": rounded(flow_cold),
        "true_runs_per_s_warm": rounded(flow_warm),
        "runs_200_limit_10_s": rounded(limited_warm),
        "runs_200_limit_10_cold_s": rounded(limited_cold),
    }
    print_table(figures, latency, engine_cold, engine_warm, args.runs)
    print(json.dumps(figures))


def print_table(
    figures: dict, latency: list[float], cold: list[float], warm: list[float] | None, runs: int
) -> None:
    def show(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"

    def ratio(a: float | None, b: float | None) -> str:
        return "" if not a or not b else f"{a / b:.1f}x"

    table = Table(title="runq dispatch benchmark")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    table.add_row(
        "due -> claimed p50",
        f"{figures['due_to_claimed_p50_ms']} ms",
        f"{len(latency)} runs, idle agent, Redis clock",
    )
    table.add_row("due -> claimed p99", f"{figures['due_to_claimed_p99_ms']} ms", "")
    table.add_row(
        "claim -> RUNNING p50, cold",
        show(figures["engine_start_cold_p50_ms"], " ms"),
        f"{len(cold)} process runs, fresh Python each (p99 {percentile(cold, 0.99):.0f} ms)",
    )
    table.add_row(
        "claim -> RUNNING p50, warm",
        show(figures["engine_start_warm_p50_ms"], " ms"),
        "forked by the warm engine"
        + (
            f" (p99 {percentile(warm, 0.99):.0f} ms); cold/warm "
            + ratio(figures["engine_start_cold_p50_ms"], figures["engine_start_warm_p50_ms"])
            if warm
            else ""
        ),
    )
    table.add_row(
        "runs/s, no-op infrastructure", f"{figures['noop_runs_per_s']}", "2000 runs, one agent"
    )
    table.add_row(
        "runs/s, /bin/true processes", f"{figures['true_runs_per_s']}", "200 runs, one agent"
    )
    table.add_row(
        "runs/s, no-op flow, cold",
        show(figures["true_runs_per_s_cold"]),
        f"{runs} runs, one agent, no limit",
    )
    table.add_row(
        "runs/s, no-op flow, warm",
        show(figures["true_runs_per_s_warm"]),
        f"{runs} runs; warm/cold "
        + ratio(figures["true_runs_per_s_warm"], figures["true_runs_per_s_cold"]),
    )
    table.add_row(
        "200 runs at limit 10, cold",
        show(figures["runs_200_limit_10_cold_s"], " s"),
        "first create to all completed",
    )
    table.add_row(
        "200 runs at limit 10, warm",
        show(figures["runs_200_limit_10_s"], " s"),
        "cold/warm " + ratio(figures["runs_200_limit_10_cold_s"], figures["runs_200_limit_10_s"]),
    )
    Console().print(table)


if __name__ == "__main__":
    main()
