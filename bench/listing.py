"""Flow-run listings against the size of the history: they must cost what they return.

Run: ``.venv/bin/python bench/listing.py [--url redis://...] [--sizes 10000 500000]``.
Without --url it starts a private redis-server on a free port (see bench/throwaway.py).
For each size it fills one queue's history with that many terminal runs (COMPLETED,
20 of them FAILED, a tenth of them of deployment D) through the real scripts: bulk
enqueue, then pipelined set_state calls. Then it times, median of several calls,
``list_flow_runs(states=["FAILED"], limit=20)`` and ``list_flow_runs(deployment_id=D,
limit=20)`` and counts the Redis commands each makes (INFO commandstats delta). Prints a
table, then as its last line one JSON object:

- list_commands_10k / list_commands_500k: commands per listing (the larger of the two)
- list_ms_10k / list_ms_500k: milliseconds per listing (the larger median of the two)
- failed_ms_* / deployment_ms_*: each listing's median apart
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.throwaway import redis_url  # noqa: E402
from runq.broker import Broker  # noqa: E402

QUEUE = "history"
FAILED = 20
CALLS = 15
PIPELINE = 2000


def fill(broker: Broker, size: int, deployment: str) -> None:
    """``size`` terminal runs, FAILED evenly spread among them, through the scripts."""
    others = str(uuid4())
    runs = [
        {"deployment_id": deployment if i % 10 == 0 else others, "flow_name": "etl"}
        for i in range(size)
    ]
    ids = broker.enqueue_flow_runs(QUEUE, runs)
    failed = set(ids[:: max(1, size // FAILED)][:FAILED])
    keys = broker.keys.queue(QUEUE)
    for start in range(0, len(ids), PIPELINE):
        pipe = broker.client.pipeline(transaction=False)
        for run_id in ids[start : start + PIPELINE]:
            state = "FAILED" if run_id in failed else "COMPLETED"
            broker.scripts.set_state(
                keys,
                run_id=run_id,
                state_type=state,
                state_name=state.capitalize(),
                message="",
                token="",
                from_states=["SCHEDULED"],
                due_ms=None,
                lease_ms=30_000,
                retention_ms=86_400_000,
                client=pipe,
            )
        pipe.execute()


def commands(broker: Broker) -> int:
    stats = broker.client.info("commandstats")
    return sum(int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info")


def measure(broker: Broker, **query: object) -> tuple[float, int, int]:
    """(median ms, commands per call, rows) of one listing."""
    broker.list_flow_runs(**query)  # warm: scripts, caches
    times, counts, rows = [], [], 0
    for _ in range(CALLS):
        before = commands(broker)
        started = time.perf_counter()
        rows = len(broker.list_flow_runs(**query))
        times.append((time.perf_counter() - started) * 1000)
        counts.append(commands(broker) - before)  # INFO itself is left out
    return statistics.median(times), max(counts), rows


def run(url: str, sizes: list[int]) -> tuple[dict[str, float], list[tuple[str, ...]]]:
    broker = Broker.from_url(url)
    figures: dict[str, float] = {}
    rows: list[tuple[str, ...]] = []
    for size in sizes:
        broker.client.flushall()
        deployment = str(uuid4())
        started = time.perf_counter()
        fill(broker, size, deployment)
        fill_s = time.perf_counter() - started
        label = f"{size // 1000}k"
        failed_ms, failed_cmds, failed_rows = measure(broker, states=["FAILED"], limit=20)
        dep_ms, dep_cmds, dep_rows = measure(broker, deployment_id=deployment, limit=20)
        assert failed_rows == FAILED and dep_rows == 20, (failed_rows, dep_rows)
        figures[f"list_commands_{label}"] = max(failed_cmds, dep_cmds)
        figures[f"list_ms_{label}"] = round(max(failed_ms, dep_ms), 3)
        figures[f"failed_ms_{label}"] = round(failed_ms, 3)
        figures[f"deployment_ms_{label}"] = round(dep_ms, 3)
        memory = broker.client.info("memory")["used_memory_human"]
        rows.append(
            (
                f"{size:,}",
                "--state FAILED --limit 20",
                str(failed_rows),
                str(failed_cmds),
                f"{failed_ms:.2f}",
                f"{fill_s:.0f} s, {memory}",
            )
        )
        rows.append(
            (
                f"{size:,}",
                "--deployment D --limit 20",
                str(dep_rows),
                str(dep_cmds),
                f"{dep_ms:.2f}",
                "",
            )
        )
    broker.close()
    return figures, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 500_000])
    args = parser.parse_args()
    with redis_url(args.url) as url:
        figures, rows = run(url, args.sizes)
    table = Table(title="runq flow-run listings against history size")
    for column in ("runs in history", "listing", "rows", "commands", "median ms", "fill"):
        table.add_column(column, justify="left" if column == "listing" else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
