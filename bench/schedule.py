"""Scheduler passes over many deployments, and the memory each materialized run costs.

Run: ``.venv/bin/python bench/schedule.py [--url redis://...] [--deployments N]``.
Without --url it starts a private redis-server on a free port. N deployments (10,000 by
default) with an hourly cron in assorted time zones are written, then:

- first_pass_s: one full scheduler pass materializing all of them from nothing
- steady_pass_s: the next pass, when every deployment's horizon already holds (the
  steady state: a pass only visits deployments whose runs are running out)
- bytes_per_run: Redis memory (INFO used_memory) added per materialized run

Prints a table, then as its last line one JSON object of those figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from runq.broker import Broker, Deployment  # noqa: E402
from tests.redis_server import RedisServer, available_binaries  # noqa: E402

ZONES = ("UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata")


def write_deployments(broker: Broker, count: int, queues: int) -> None:
    """Store the deployments as `create_deployment` would, without materializing them
    (that is the first pass's job here), and mark each as due for a visit."""
    now = broker.server_time()
    scheduler = broker.scheduler()
    pipe = broker.client.pipeline(transaction=False)
    for i in range(count):
        deployment = Deployment(
            name=f"hourly-{i}",
            entrypoint="flows/etl.py:main",
            work_queue_name=f"queue-{i % queues}",
            parameters={"shard": i},
            schedule={
                "type": "cron",
                "cron": f"{i % 60} * * * *",
                "timezone": ZONES[i % len(ZONES)],
            },
            created=now,
            updated=now,
        )
        key = str(deployment.id)
        pipe.set(broker.keys.deployment(key), deployment.model_dump_json())
        pipe.hset(broker.keys.deployment_names, deployment.name, key)
        pipe.zadd(scheduler.due_key, {key: 0})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    for q in range(queues):
        broker.ensure_work_queue(f"queue-{q}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--queues", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="runq-schedule-"))
    server = None
    url = args.url
    if url is None:
        binaries = available_binaries()
        server = RedisServer(
            binaries["redis7"] or binaries["redis6"], workdir, extra_args=("--appendonly", "no")
        )
        server.start()
        url = server.url
    try:
        broker = Broker.from_url(url)
        broker.client.flushall()
        write_deployments(broker, args.deployments, args.queues)
        scheduler = broker.scheduler()
        memory_before = broker.client.info("memory")["used_memory"]
        started = time.perf_counter()
        first = scheduler.run_pass(limit=args.deployments)
        first_s = time.perf_counter() - started
        memory_after = broker.client.info("memory")["used_memory"]
        started = time.perf_counter()
        steady = scheduler.run_pass(limit=args.deployments)
        steady_s = time.perf_counter() - started
        broker.close()
    finally:
        if server:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "first_pass_s": round(first_s, 3),
        "steady_pass_s": round(steady_s, 4),
        "bytes_per_run": round((memory_after - memory_before) / max(1, first.created)),
    }
    table = Table(title=f"runq scheduler: {args.deployments} hourly cron deployments")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    table.add_row(
        "first full pass",
        f"{first_s:.2f} s",
        f"{first.created} runs for {first.deployments} deployments",
    )
    table.add_row(
        "steady-state pass",
        f"{steady_s * 1000:.1f} ms",
        f"{steady.deployments} deployments visited",
    )
    table.add_row("memory per run", f"{figures['bytes_per_run']} B", "record, schedule, indexes")
    Console().print(table)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
