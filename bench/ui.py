"""Server time per request of ``runq ui``: the Work Queues page with 1,000 queues, and the
Flow Runs page with 10,000 and 500,000 runs in history (it must not grow with history).

Run: ``.venv/bin/python bench/ui.py [--url redis://...] [--requests 200]``. Without --url
it starts a private redis-server (bench/throwaway.py). A real ``runq ui`` process
serves; the figure per request is the server's own time (its ``Server-Timing`` header:
from the request reaching the app to the response's headers, the page rendered), and
the client's round trip is shown beside it. History is filled with terminal runs through
the real scripts (bench/listing.py's ``fill``). Prints a table, then as its last line one
JSON object: queues_page_p50_ms, queues_page_p99_ms, queues_api_p50_ms,
queues_api_p99_ms, runs_page_10k_p50_ms, runs_page_500k_p50_ms, runs_page_growth
(500k / 10k), failed_runs_page_500k_p50_ms.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.listing import fill  # noqa: E402
from bench.throwaway import redis_url  # noqa: E402
from runq.broker import Broker  # noqa: E402

QUEUES = 1000
TIMING = re.compile(r"app;dur=([\d.]+)")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Server:
    """A ``runq ui --port 0`` process on the benchmark's Redis."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runq", "ui", "--port", "0", "--api", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"on (http://\S+?)/ ", line)
        if not match:
            raise SystemExit(f"runq ui did not start: {line}{self.proc.stdout.read()}")
        self.url = match.group(1)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def time(self, path: str, requests: int) -> tuple[list[float], list[float]]:
        """Server and round-trip milliseconds of ``requests`` GETs (after two warm-ups)."""
        for _ in range(2):
            self.client.get(path).raise_for_status()
        server, trip = [], []
        for _ in range(requests):
            started = time.perf_counter()
            response = self.client.get(path)
            trip.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            found = TIMING.search(response.headers.get("server-timing", ""))
            assert found, response.headers
            server.append(float(found.group(1)))
        return server, trip

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def make_queues(broker: Broker, count: int) -> None:
    for i in range(count):
        broker.create_work_queue(f"queue-{i:04d}", concurrency_limit=i % 7 or None)


def run(
    url: str, requests: int, sizes: tuple[int, int]
) -> tuple[dict[str, float], list[tuple[str, ...]]]:
    broker = Broker.from_url(url)
    broker.client.flushall()
    server = Server(url)
    figures: dict[str, float] = {}
    rows: list[tuple[str, ...]] = []

    def record(label: str, key: str, path: str) -> None:
        served, trip = server.time(path, requests)
        p50, p99 = statistics.median(served), percentile(served, 0.99)
        figures[f"{key}_p50_ms"], figures[f"{key}_p99_ms"] = round(p50, 2), round(p99, 2)
        rows.append((label, path, f"{p50:.2f}", f"{p99:.2f}", f"{statistics.median(trip):.2f}"))

    try:
        make_queues(broker, QUEUES)
        record(f"Work Queues page, {QUEUES:,} queues", "queues_page", "/work-queues")
        record(f"/api/work-queues, {QUEUES:,} queues", "queues_api", "/api/work-queues")
        for size in sizes:
            broker.client.flushall()
            fill(broker, size, str(uuid4()))
            label = f"{size // 1000}k"
            record(f"Flow Runs page, {size:,} runs", f"runs_page_{label}", "/flow-runs")
            record(
                f"Failed runs page, {size:,} runs",
                f"failed_runs_page_{label}",
                "/flow-runs?state=FAILED",
            )
    finally:
        server.stop()
        broker.close()
    small, large = (f"{size // 1000}k" for size in sizes)
    figures["runs_page_growth"] = round(
        figures[f"runs_page_{large}_p50_ms"] / figures[f"runs_page_{small}_p50_ms"], 2
    )
    wanted = [
        "queues_page_p50_ms",
        "queues_page_p99_ms",
        "queues_api_p50_ms",
        "queues_api_p99_ms",
        f"runs_page_{small}_p50_ms",
        f"runs_page_{large}_p50_ms",
        "runs_page_growth",
        f"failed_runs_page_{large}_p50_ms",
    ]
    return {key: figures[key] for key in wanted}, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 500_000])
    args = parser.parse_args()
    with redis_url(args.url) as url:
        figures, rows = run(url, args.requests, tuple(args.sizes))  # type: ignore[arg-type]
    table = Table(title="runq ui: server time per request")
    for column in ("page", "path", "server p50 ms", "server p99 ms", "round trip p50 ms"):
        table.add_column(column, justify="left" if column in ("page", "path") else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
