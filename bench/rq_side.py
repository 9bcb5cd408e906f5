"""The RQ half of ``bench/versus_rq.py``, run by the Python of RQ's own venv.

It imports only RQ, redis-py and the jobs module beside it (never runq), and talks to the
redis-server named on its command line. ``bench/versus_rq.py`` starts that server and the
RQ workers (``rq worker``: the default forking Worker, or SimpleWorker), then runs one
subcommand of this script per measurement; each prints progress on stderr and, as its
last stdout line, one JSON object. Nothing here is part of runq or of its tests.

Subcommands (each first waits until the queue has its ``--workers`` registered, then
warms them with a few no-op jobs that are not counted):
- ``info``: the versions of RQ and redis-py here, and whether hiredis is installed.
- ``start URL QUEUE --jobs N --stamps FILE``: one ``stamp`` job at a time with the worker
  idle (a random pause of 50-150 ms after the previous job ended): milliseconds from just
  before ``Queue.enqueue`` to the start time the job wrote into FILE.
- ``drain URL QUEUE --jobs N``: N no-op jobs enqueued in one ``enqueue_many`` while the
  workers wait; seconds from before that call to the last of them ended, from RQ's
  finished and failed registries (none may fail).
- ``enqueue URL QUEUE --jobs N --batch B``: N single ``Queue.enqueue`` calls from this
  process, then N jobs through ``enqueue_many`` in batches of B; per second each. No
  worker listens on QUEUE.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import rq
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from versus_rq_jobs import noop, stamp  # beside this file: on sys.path as the script's folder

ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}   [rq] {message}", file=sys.stderr, flush=True)


def wait_until(what: str, done: Callable[[], bool], timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def grown(path: Path, size: int) -> Callable[[], bool]:
    """Whether a job has appended its start time to ``path`` (then ``size`` bytes long)."""
    return lambda: path.exists() and path.stat().st_size > size


def ended(job: Job) -> bool:
    return job.get_status() in ENDED


def ended_count(queue: Queue) -> tuple[int, int]:
    """Jobs of ``queue`` finished and failed (the registries' sizes, without the clean-up
    that ``count`` runs first: reading must not add work to the measured system)."""
    finished = FinishedJobRegistry(queue=queue).get_job_count(cleanup=False)
    return finished, FailedJobRegistry(queue=queue).get_job_count(cleanup=False)


def drain_jobs(queue: Queue, jobs: int, timeout: float) -> float:
    """Seconds from before enqueueing ``jobs`` no-op jobs in one batch to all ended."""
    finished_before, failed_before = ended_count(queue)
    started = time.perf_counter()
    queue.enqueue_many([Queue.prepare_data(noop) for _ in range(jobs)])

    def all_ended() -> bool:
        finished, failed = ended_count(queue)
        return finished + failed - finished_before - failed_before >= jobs

    wait_until(f"{jobs} jobs did not end", all_ended, timeout, 0.02)
    seconds = time.perf_counter() - started
    if (failed := ended_count(queue)[1] - failed_before) > 0:
        raise RuntimeError(f"{failed} of {jobs} jobs failed (see the worker's log)")
    return seconds


def ready(queue: Queue, workers: int, timeout: float) -> None:
    """Wait for ``workers`` registered workers on ``queue``, then warm them up."""
    wait_until(
        f"{workers} RQ workers did not register",
        lambda: Worker.count(connection=queue.connection, queue=queue) >= workers,
        timeout,
        0.1,
    )
    drain_jobs(queue, 2 * workers, timeout)


def start_latency(queue: Queue, jobs: int, stamps: Path, timeout: float) -> list[float]:
    """Enqueue-to-code-start of ``jobs`` stamp jobs, one at a time, the worker idle."""
    latencies: list[float] = []
    seen = stamps.stat().st_size if stamps.exists() else 0
    for i in range(jobs):
        time.sleep(random.uniform(0.05, 0.15))  # the worker is back to waiting
        enqueued = time.time()
        job = queue.enqueue(stamp)
        wait_until("a job did not start", grown(stamps, seen), timeout, 0.002)
        wait_until("a job did not end", functools.partial(ended, job), timeout, 0.01)
        if (status := job.get_status()) != JobStatus.FINISHED:
            raise RuntimeError(f"job {job.id} ended {status}")
        text = stamps.read_text(encoding="ascii")
        seen, line = len(text), text[seen:].strip()
        if "\n" in line:
            raise RuntimeError("more than one job wrote a start time")
        latencies.append((float(line) - enqueued) * 1000)
        if jobs <= 20 or (i + 1) % 20 == 0:
            progress(f"job {i + 1}/{jobs}: started {latencies[-1]:.1f} ms after its enqueue")
    return latencies


def enqueue_rates(queue: Queue, jobs: int, batch: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(jobs):
        queue.enqueue(noop)
    single = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    for first in range(0, jobs, batch):
        queue.enqueue_many([Queue.prepare_data(noop) for _ in range(min(batch, jobs - first))])
    batched = jobs / (time.perf_counter() - started)
    progress(f"{jobs} enqueues: {single:.0f}/s one by one, {batched:.0f}/s in batches of {batch}")
    return {"single_per_s": single, "batch_per_s": batched}


def info() -> dict[str, Any]:
    return {
        "rq": rq.__version__,
        "redis_py": redis.__version__,
        "hiredis": importlib.util.find_spec("hiredis") is not None,
        "python": sys.version.split()[0],
    }


def run(args: argparse.Namespace) -> Any:
    if args.command == "info":
        return info()
    queue = Queue(args.queue, connection=redis.Redis.from_url(args.url))
    if args.command == "enqueue":
        return enqueue_rates(queue, args.jobs, args.batch)
    ready(queue, args.workers, args.timeout)
    if args.command == "start":
        return {"ms": start_latency(queue, args.jobs, args.stamps, args.timeout)}
    seconds = drain_jobs(queue, args.jobs, args.timeout)
    progress(f"{args.jobs} jobs ended in {seconds:.2f} s: {args.jobs / seconds:.1f}/s")
    return {"seconds": seconds, "per_s": args.jobs / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info")
    for name in ("start", "drain", "enqueue"):
        one = commands.add_parser(name)
        one.add_argument("url")
        one.add_argument("queue")
        one.add_argument("--jobs", type=int, required=True)
        one.add_argument("--workers", type=int, default=1)
        one.add_argument("--timeout", type=float, default=600, help="for each wait (seconds)")
        if name == "start":
            one.add_argument("--stamps", type=Path, required=True)
        if name == "enqueue":
            one.add_argument("--batch", type=int, required=True)
    args = parser.parse_args()
    try:
        result = run(args)
    except (RuntimeError, redis.RedisError) as error:
        print(f"rq_side: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
