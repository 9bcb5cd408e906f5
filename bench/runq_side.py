"""The runq half of ``bench/versus_rq.py``: its agents and what it measures through them.

The counterpart of ``bench/rq_side.py``, run inside the benchmark's own process (runq's
venv). Agents are real ``runq agent start`` processes (the warm engine, the process
infrastructure) started without the scheduler loop, as RQ's worker has none by default;
the in-process figure uses an agent whose infrastructure completes each run at once
(bench/noop_infrastructure.py), served by running this file:
``python bench/runq_side.py URL QUEUE`` (until SIGTERM).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from noop_infrastructure import NoopInfrastructure  # noqa: E402
from versus_prefect import BenchError, Processes, say, wait_for  # noqa: E402
from versus_rq_jobs import STAMPS_ENV  # noqa: E402

from runq.broker import Broker  # noqa: E402
from runq.broker.states import TERMINAL_STATES, StateType  # noqa: E402

TIMEOUT = 120.0  # seconds for any one wait (for a batch of N jobs: this + N)


def until(what: str, done: Callable[[], bool], timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def grown(path: Path, size: int) -> Callable[[], bool]:
    """Whether a job has appended its start time to ``path`` (then ``size`` bytes long)."""
    return lambda: path.exists() and path.stat().st_size > size


@dataclass
class RunqSide:
    """runq's side: the broker of the benchmark and its deployments ``noop`` and ``stamp``
    (bench/versus_rq_jobs.py) on the shared redis-server."""

    procs: Processes
    url: str
    broker: Broker
    noop_id: Any  # batches name the deployment by id, as runq's fast path takes them

    def stamps(self, queue: str) -> Path:
        return self.procs.workdir / f"runq-{queue}.stamps"

    @contextlib.contextmanager
    def agents(
        self, queue: str, count: int, limit: int | None = None, noop: bool = False
    ) -> Iterator[None]:
        """``count`` agents on ``queue``, registered and warmed up (each ran a run already,
        so its warm engine is ready); stopped on exit."""
        env = {**os.environ, "RUNQ_API_URL": self.url, STAMPS_ENV: str(self.stamps(queue))}
        argv = [
            sys.executable,
            "-m",
            "runq",
            "agent",
            "start",
            "-q",
            queue,
            "--hide-welcome",
            "--no-scheduler",
        ]
        argv += ["--limit", str(limit)] if limit else []
        if noop:
            argv = [sys.executable, __file__, self.url, queue]
        names = [f"runq-agent-{queue}-{i}" for i in range(count)]
        self.broker.create_work_queue(queue)

        def alive() -> None:
            for name in names:
                self.procs.check(name)

        try:
            for name in names:
                self.procs.start(name, argv, env)
            wait_for(
                f"{count} runq agents on {queue}",
                lambda: len(self.broker.read_work_queue(queue).agents) >= count,
                alive,
            )
            seen: set[str | None] = set()
            for _ in range(10):  # until every agent ran one
                runs = [{"deployment_id": self.noop_id} for _ in range(max(2, count))]
                ids = self.broker.enqueue_flow_runs(queue, runs)
                until("the warm-up runs did not end", lambda: self.idle(queue), TIMEOUT, 0.05)
                seen |= {self.broker.read_flow_run(run_id).agent_id for run_id in ids}
                if len(seen) >= count:
                    break
            yield
        finally:
            for name in names:
                self.procs.stop(name)

    def idle(self, queue: str) -> bool:
        state = self.broker.read_work_queue(queue)
        return state.scheduled_runs == 0 and state.active_runs == 0

    def ended(self, run_id: str) -> bool:
        return self.broker.read_flow_run(run_id).state.type in TERMINAL_STATES

    def start_latency(self, queue: str, jobs: int) -> list[float]:
        """Milliseconds from just before ``create_flow_run`` of the ``stamp`` deployment to
        the start time its code wrote, one run at a time with the agent idle."""
        stamps, latencies, seen = self.stamps(queue), [], 0
        for i in range(jobs):
            time.sleep(random.uniform(0.05, 0.15))  # the agent is back to waiting
            enqueued = time.time()
            run_id = str(self.broker.create_flow_run(queue, deployment="stamp").id)
            until("a runq run did not start", grown(stamps, seen), TIMEOUT, 0.002)
            until("a runq run did not end", functools.partial(self.ended, run_id), TIMEOUT, 0.01)
            if (final := self.broker.read_flow_run(run_id).state.type) is not StateType.COMPLETED:
                raise BenchError(f"runq flow run {run_id} ended {final.value}")
            text = stamps.read_text(encoding="ascii")
            seen, line = len(text), text[seen:].strip()
            latencies.append((float(line) - enqueued) * 1000)
            if jobs <= 20 or (i + 1) % 20 == 0:
                say(f"  [runq] run {i + 1}/{jobs}: started {latencies[-1]:.1f} ms after its create")
        return latencies

    def drain(self, queue: str, jobs: int) -> float:
        """Runs per second: ``jobs`` no-op runs enqueued in one batch while the agents
        wait, to the last one ended (all must complete)."""
        started = time.perf_counter()
        ids = self.broker.enqueue_flow_runs(
            queue, [{"deployment_id": self.noop_id} for _ in range(jobs)]
        )
        until(f"{jobs} runq runs did not end", lambda: self.idle(queue), TIMEOUT + jobs, 0.05)
        seconds = time.perf_counter() - started
        completed = sum(
            self.broker.read_flow_run(run_id).state.type is StateType.COMPLETED for run_id in ids
        )
        if completed != jobs:
            raise BenchError(f"runq: only {completed} of {jobs} runs completed")
        say(f"  [runq] {jobs} runs ended in {seconds:.2f} s: {jobs / seconds:.1f}/s")
        return jobs / seconds

    def enqueue(self, queue: str, jobs: int, batch: int) -> dict[str, float]:
        """Creates per second from this process, no agent listening: one by one with the
        ``noop`` deployment, one by one without one, then in batches of ``batch``."""
        self.broker.create_work_queue(queue)
        rates, started = {}, time.perf_counter()
        for _ in range(jobs):
            self.broker.create_flow_run(queue, deployment="noop")
        rates["single"], started = jobs / (time.perf_counter() - started), time.perf_counter()
        for _ in range(jobs):
            self.broker.create_flow_run(queue)
        rates["bare"], started = jobs / (time.perf_counter() - started), time.perf_counter()
        for first in range(0, jobs, batch):
            runs = [{"deployment_id": self.noop_id} for _ in range(min(batch, jobs - first))]
            self.broker.enqueue_flow_runs(queue, runs)
        rates["batch"] = jobs / (time.perf_counter() - started)
        say(
            f"  [runq] {jobs} creates: {rates['single']:.0f}/s one by one with a deployment, "
            f"{rates['bare']:.0f}/s without, {rates['batch']:.0f}/s in batches of {batch}"
        )
        return rates


def serve_noop_agent(url: str, queue: str) -> None:
    """An agent whose infrastructure completes each run in-process, until SIGTERM."""
    from runq.agent.agent import Agent, AgentSettings

    noop = NoopInfrastructure(Broker.from_url(url))
    settings = AgentSettings(
        work_queues=[queue], prefetch_seconds=0, scheduler=False, warm_engine=False
    )
    agent = Agent(Broker.from_url(url), settings, lambda deployment, broker: noop)
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    agent.start()
    agent.run()


if __name__ == "__main__":
    serve_noop_agent(*sys.argv[1:3])
