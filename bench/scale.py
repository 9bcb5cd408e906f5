"""What agents cost Redis when idle, and what a wake-up costs when many agents wait.

Run: ``.venv/bin/python bench/scale.py [--idle-seconds S] [--samples N] [--runs N]``. It
starts a private redis-server (Redis 7 when installed, else 6.2) with its append-only
file on, then, as separate processes (each an :class:`Agent` with an in-process
infrastructure that completes each run at once, no scheduler thread):

- one agent serving 300 queues (``scale-000`` .. ``scale-299``), one serving one queue
  (``solo``), and 30 idle agents on one queue (``herd``).

It measures, and prints as a table and then as its last line one JSON object:

- idle_commands_per_s: Redis commands per second with all 32 agents idle
  (INFO stats total_commands_processed over the idle window)
- idle_aof_bytes_per_s: growth of the append-only file per second over that window
- idle_cpu_s_per_min: CPU seconds per minute of the 300-queue agent, idle
- due_to_claimed_p99_ms_300q / _1q: from a run's due time to its claim (both by Redis'
  clock) for a run on the 300th queue of the big agent and, in the same run, on the
  one-queue agent's queue
- claims_per_delivered_run_30_agents: claim-script calls on ``herd`` (counted with
  MONITOR) per run delivered, when runs are enqueued one by one to the 30 idle agents

Targets: at most 2 claim calls per delivered run; the 300th queue within 2x
of the one-queue agent. Figures depend on the machine; compare them within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from noop_infrastructure import NoopInfrastructure, percentile  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from runq.broker import Broker  # noqa: E402
from tests.redis_server import RedisServer, available_binaries  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
BIG_QUEUES = [f"scale-{i:03d}" for i in range(300)]
HERD = 30


def agent_process(url: str, queues: list[str], name: str) -> None:
    """One agent, until SIGTERM (the target of a spawned process)."""
    from runq.agent.agent import Agent, AgentSettings

    broker = Broker.from_url(url)
    noop = NoopInfrastructure(Broker.from_url(url))
    settings = AgentSettings(work_queues=queues, name=name, prefetch_seconds=0, scheduler=False)
    agent = Agent(broker, settings, lambda deployment, b: noop)
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    agent.start()
    agent.run()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def idle_figures(broker: Broker, big_pid: int, seconds: float) -> dict[str, float]:
    """Commands/s and AOF bytes/s of the whole idle fleet; CPU s/min of the big agent."""

    def snapshot() -> tuple[float, int, int, float]:
        stats, persistence = broker.client.info("stats"), broker.client.info("persistence")
        return (
            time.monotonic(),
            int(stats["total_commands_processed"]),
            int(persistence["aof_current_size"]),
            cpu_seconds(big_pid),
        )

    t0, commands0, aof0, cpu0 = snapshot()
    time.sleep(seconds)
    t1, commands1, aof1, cpu1 = snapshot()
    elapsed = t1 - t0
    return {
        "idle_commands_per_s": round((commands1 - commands0 - 2) / elapsed, 1),
        "idle_aof_bytes_per_s": round((aof1 - aof0) / elapsed, 1),
        "idle_cpu_s_per_min": round((cpu1 - cpu0) / elapsed * 60, 3),
    }


def claim_latency(broker: Broker, queue: str) -> float:
    """Milliseconds from due to claimed of one run due now on ``queue``."""
    run = broker.create_flow_run(queue)
    deadline = time.monotonic() + 30
    while (claimed := broker.read_flow_run(run.id)).claimed_at is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"a run on {queue!r} was not claimed within 30 s")
        time.sleep(0.001)
    return (claimed.claimed_at - claimed.expected_start_time).total_seconds() * 1000


class ClaimCounter:
    """Counts EVALSHA calls of the claim script on one queue, through MONITOR."""

    def __init__(self, broker: Broker, queue: str, sha: str) -> None:
        self.count = 0
        self._needle = (f'"{sha}"', broker.keys.queue(queue).config)
        self._stop = threading.Event()
        self._monitor = broker.client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            for command in self._monitor.listen():
                text = command.get("command", "")
                if self._needle[0].strip('"') in text and self._needle[1] in text:
                    self.count += 1
                if self._stop.is_set():
                    return
        except Exception:  # the connection closes when the bench ends
            return

    def stop(self) -> None:
        self._stop.set()


def claim_sha(broker: Broker) -> str:
    from runq.broker.scripts import server_major_version, source

    return hashlib.sha1(
        source("claim", server_major_version(broker.client) >= 7).encode()
    ).hexdigest()


def herd_claims(broker: Broker, runs: int) -> float:
    """Claim calls per delivered run: ``runs`` enqueued one by one to the idle herd."""
    counter = ClaimCounter(broker, "herd", claim_sha(broker))
    time.sleep(0.2)  # MONITOR is attached
    for _ in range(runs):
        claim_latency(broker, "herd")
    wait_until(lambda: broker.read_work_queue("herd").active_runs == 0, 30, "herd runs to end")
    time.sleep(0.5)  # the wake-ups of the last freed slot are claimed too
    counter.stop()
    broker.create_flow_run("solo")  # one more command, so the listener sees the stop
    return counter.count / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="runq-scale-"))
    binaries = available_binaries()
    server = RedisServer(
        binaries["redis7"] or binaries["redis6"],
        workdir,
        extra_args=("--auto-aof-rewrite-percentage", "0"),
    )
    server.start()
    procs: list[Any] = []
    try:
        figures = measure(server.url, args, procs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title="runq at scale: idle cost and wake-ups")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value}")
    Console(stderr=True).print(table)
    print(json.dumps(figures))


def measure(url: str, args: argparse.Namespace, procs: list[Any]) -> dict[str, float]:
    broker = Broker.from_url(url)
    fleet = [(BIG_QUEUES, "big"), (["solo"], "solo")] + [
        (["herd"], f"herd-{i}") for i in range(HERD)
    ]
    for queues, name in fleet:
        proc = SPAWN.Process(target=agent_process, args=(url, queues, name), daemon=True)
        proc.start()
        procs.append(proc)
    wait_until(lambda: len(broker.list_agents()) == len(fleet), 120, "every agent to register")
    time.sleep(3.0)  # past start-up: every agent has claimed once and waits
    figures = idle_figures(broker, procs[0].pid, args.idle_seconds)
    big, solo = [], []
    for _ in range(args.samples):
        big.append(claim_latency(broker, BIG_QUEUES[-1]))
        solo.append(claim_latency(broker, "solo"))
    figures["due_to_claimed_p99_ms_300q"] = round(percentile(big, 0.99), 2)
    figures["due_to_claimed_p99_ms_1q"] = round(percentile(solo, 0.99), 2)
    figures["claims_per_delivered_run_30_agents"] = round(herd_claims(broker, args.runs), 2)
    broker.close()
    return figures


if __name__ == "__main__":
    main()
