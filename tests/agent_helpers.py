"""Helpers of the end-to-end agent tests: flows that record themselves, agent processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests.redis_server import RedisServer, available_binaries

FLOWS = """
import json, os, subprocess, sys, time


def record(path, **fields):
    with open(path, "a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), **fields}) + "\\n")


def hello(name: str = "world", times: int = 1) -> str:
    message = " ".join([f"Hello, {name}!"] * times)
    print(message)
    return message


def sleepy(seconds: float, record_to: str, tag: str = "") -> float:
    start = time.time()
    time.sleep(seconds)
    record(record_to, start=start, end=time.time(), tag=tag)
    return seconds


def mark(record_to: str, i: int) -> int:
    record(record_to, i=i)
    return i


def flaky(record_to: str) -> None:
    record(record_to, start=time.time())
    print("about to fail", file=sys.stderr)
    raise RuntimeError("boom")


def hung(record_to: str) -> None:
    # Deaf to SIGTERM and stuck in C code holding the GIL: its engine's threads stop too.
    import ctypes, signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(record_to, start=time.time())
    ctypes.PyDLL(None).sleep(300)


def deaf(record_to: str) -> None:
    # Deaf to SIGTERM, sleeping (its engine's threads run on).
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(record_to, start=time.time())
    time.sleep(300)


def with_grandchild(record_to: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    record(record_to, child=child.pid)
    time.sleep(300)
"""

FAST = {
    "RUNQ_LEASE_SECONDS": "2",
    "RUNQ_HEARTBEAT_SECONDS": "0.5",
    "RUNQ_AGENT_QUERY_INTERVAL": "1",
    "RUNQ_CANCEL_GRACE_SECONDS": "2",
}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One server for these slow tests: Redis 7 when installed, else 6.2."""
    binaries = available_binaries()
    binary = binaries["redis7"] or binaries["redis6"]
    server = RedisServer(binary, tmp_path_factory.mktemp("agent-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


class Agents:
    """Starts `runq agent start` processes and makes sure none outlives the test."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.procs: list[subprocess.Popen] = []

    def start(
        self,
        *queues: str,
        args: tuple[str, ...] = (),
        env: dict | None = None,
        wrap: list[str] = (),
    ) -> subprocess.Popen:
        command = [
            sys.executable,
            "-m",
            "runq",
            "agent",
            "start",
            "--hide-welcome",
            "--api",
            self.url,
        ]
        for queue in queues:
            command += ["-q", queue]
        proc = subprocess.Popen(
            [*wrap, *command, *args],
            cwd=self.workdir,
            env={**os.environ, **FAST, **(env or {})},
            stdout=open(self.workdir / f"agent-{len(self.procs)}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop_all reaches what a wrapper started
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # what a wrapper left running


@pytest.fixture
def agents(redis_url: str, workdir: Path) -> Iterator[Agents]:
    pool = Agents(redis_url, workdir)
    yield pool
    pool.stop_all()


def wait_for(
    condition: Callable[[], object], timeout: float = 120, what: str = "condition"
) -> object:
    """Poll ``condition`` until it holds and return its value. The timeout only bounds a
    failure: it is generous (a busy machine is slow), and a test never asserts on time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def state_of(broker: Broker, run_id) -> StateType:
    return broker.read_flow_run(run_id).state.type


def ended(broker: Broker, *run_ids) -> bool:
    return all(broker.read_flow_run(run_id).state.is_terminal for run_id in run_ids)


def deploy(broker: Broker, name: str, function: str, queue: str, **fields) -> None:
    broker.create_deployment(
        name=name, entrypoint=f"flows.py:{function}", work_queue_name=queue, **fields
    )


def engine_pid_when_running(broker: Broker, run_id, timeout: float = 30) -> int:
    """Wait for a process run to be RUNNING; the pid of its engine (from host:pid)."""

    def started():
        run = broker.read_flow_run(run_id)
        return run.state.type is StateType.RUNNING and run.infrastructure_id

    return int(str(wait_for(started, timeout, "the run to start")).rsplit(":", 1)[1])
