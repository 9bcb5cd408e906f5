"""What the limits benchmark's phases share: a limit kept full, runs parked on it, agents
(a real ``runq agent start`` process, or an Agent on a thread of this process) and the
Redis command counter.

A full limit needs holders that stay in flight: they are claimed here on a queue no
agent serves, with an hour's lease, so nothing sweeps them and the agents' limit pass
(which checks every holder each second) sees live holders, as it would in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runq.agent.agent import Agent, AgentSettings
from runq.agent.claiming import InfrastructureFactory
from runq.broker import Broker, StateType, Waiting

HOLDERS_QUEUE = "bench-holders"  # served by no agent: its runs hold their slots
HOLD_SECONDS = 3600.0  # the holders' lease: longer than any phase
PARK_BATCH = 100


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it holds; its value. The timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def fill_limit(broker: Broker, name: str, limit: int) -> None:
    """Create limit ``name`` and hold all its ``limit`` slots with runs in flight."""
    broker.create_concurrency_limit(name, limit, description="benchmark: kept full")
    broker.enqueue_flow_runs(HOLDERS_QUEUE, [{"tags": [name]} for _ in range(limit)])
    runs = broker.claim(HOLDERS_QUEUE, "bench-holder", max_runs=limit, lease_seconds=HOLD_SECONDS)
    for run in runs:
        token = str(run.claim_token)
        if isinstance(broker.take_limit_slots(run, HOLDERS_QUEUE, token, {name}), Waiting):
            raise RuntimeError(f"limit {name!r} was full before its holders took it")
        broker.set_state(run.id, StateType.RUNNING, token=token, lease_seconds=HOLD_SECONDS)
    if broker.read_concurrency_limit(name).active != limit:
        raise RuntimeError(f"limit {name!r} is not full")


def park_runs(broker: Broker, queue: str, tag: str, count: int, timeout: float = 120) -> None:
    """Put ``count`` runs tagged ``tag`` on ``queue`` and see each parked on the (full)
    limit ``tag``: claimed and parked here as an agent does it, or by the agent serving
    ``queue`` if it claims them first (both take the same broker calls)."""
    before = broker.read_concurrency_limit(tag).waiting
    broker.enqueue_flow_runs(queue, [{"tags": [tag]} for _ in range(count)])
    deadline = time.monotonic() + timeout
    while broker.read_concurrency_limit(tag).waiting < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} runs were not parked on {tag!r} in {timeout:.0f} s")
        runs = broker.claim(queue, "bench-parker", max_runs=PARK_BATCH)
        for run in runs:
            outcome = broker.take_limit_slots(run, queue, str(run.claim_token), {tag})
            if not isinstance(outcome, Waiting):
                raise RuntimeError(f"a run took a slot of {tag!r}: the limit was not full")
        if not runs:
            time.sleep(0.02)  # the agent holds the rest for a moment: it parks them too


class CommandCounter:
    """Redis commands run over a window, from INFO commandstats: every command, those a
    script runs included, less the window's one INFO of this counter (the end sample's
    INFO is not counted yet when it reports)."""

    def __init__(self, broker: Broker) -> None:
        self.client = broker.client

    def totals(self) -> tuple[int, float]:
        stats: dict[str, Any] = self.client.info("commandstats")
        calls = sum(int(entry["calls"]) for entry in stats.values())
        usec = sum(float(entry["usec"]) for entry in stats.values())
        return calls, usec

    def over(self, seconds: float, tick: Callable[[float], None]) -> tuple[float, float]:
        """Commands per second and Redis CPU microseconds per second over ``seconds``,
        the caller doing nothing else (``tick`` gets each second that passed)."""
        calls_0, usec_0 = self.totals()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(1.0, seconds - elapsed))
            tick(min(1.0, seconds - elapsed))
        calls_1, usec_1 = self.totals()
        elapsed = time.monotonic() - started
        return (calls_1 - calls_0 - 1) / elapsed, (usec_1 - usec_0) / elapsed


class AgentProcess:
    """``python -m runq agent start -q QUEUE --api URL --hide-welcome`` in its own process
    group, logging to a file in ``workdir``; stopped (then killed, group and all) on exit."""

    def __init__(
        self, url: str, queue: str, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.url, self.queue, self.workdir = url, queue, workdir
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / f"agent-{queue}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AgentProcess:
        command = [sys.executable, "-m", "runq", "agent", "start", "-q", self.queue]
        command += ["--api", self.url, "--hide-welcome"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_registered()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_registered(self, timeout: float = 60) -> None:
        broker = Broker.from_url(self.url)
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        try:
            while not any(agent.pid == self.proc.pid for agent in broker.list_agents()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the agent on {self.queue!r} did not start:\n{tail}")
                time.sleep(0.05)
        finally:
            broker.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM (the agent hands back what it had not started), then SIGKILL to the
        whole group: its warm engine and anything else it left."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class ThreadAgent:
    """An :class:`Agent` of this process on its own thread (no scheduler, no metrics,
    no prefetch), stopped on exit."""

    def __init__(self, broker: Broker, queue: str, infrastructure: InfrastructureFactory) -> None:
        settings = AgentSettings(
            work_queues=[queue], prefetch_seconds=0, scheduler=False, metrics=False
        )
        self.agent = Agent(broker, settings, infrastructure)
        self.thread = threading.Thread(target=self.agent.run, name="bench-agent", daemon=True)

    def __enter__(self) -> Agent:
        self.agent.start()
        self.thread.start()
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.agent.request_stop()
        self.thread.join(timeout=30)
