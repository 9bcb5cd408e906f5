"""Helpers of the UI tests: a real ``runq ui`` process on a free port, and an HTTP client.

The server is started as operators start it (``python -m runq ui --port 0``); the port
it bound is read from its first line, and it is ready once ``/healthz`` answers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_helpers import wait_for  # noqa: F401 (the shared condition wait)

LISTENING = re.compile(r"on http://(\S+?):(\d+)/")
TOKEN = "t0ken-for-the-ui-tests-0123456789"


class UIServer:
    """One ``runq ui`` process; ``url`` once it serves."""

    def __init__(
        self,
        redis_url: str,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.log = workdir / f"ui-{os.getpid()}-{time.monotonic_ns()}.log"
        # prefix: a wrapper command, e.g. ("prlimit", "--nofile=256") for a descriptor limit
        command = [
            *prefix,
            sys.executable,
            "-m",
            "runq",
            "ui",
            "--port",
            "0",
            "--api",
            redis_url,
            *args,
        ]
        environment = {k: v for k, v in os.environ.items() if k != "RUNQ_UI_TOKEN"}
        environment.update(env or {})
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            cwd=workdir,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._found = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                match = LISTENING.search(line)
                if match and not self.url:
                    self.url = f"http://{match.group(1)}:{match.group(2)}"
                    self._found.set()
        self._found.set()

    def wait_ready(self, timeout: float = 90) -> UIServer:
        if not self._found.wait(timeout) or not self.url:
            self.stop()
            raise AssertionError(f"runq ui did not start: {''.join(self.lines)}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"runq ui at {self.url} never answered /healthz")

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class UIServers:
    """Starts servers for a test and stops every one after it."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url, self.workdir = redis_url, workdir
        self.started: list[UIServer] = []

    def start(
        self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> UIServer:
        server = UIServer(self.redis_url, self.workdir, *args, env=env, prefix=prefix)
        self.started.append(server)
        return server.wait_ready()

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """``runq ui ARGS`` expected to exit (a refusal): its exit code and output."""
        environment = {k: v for k, v in os.environ.items() if k != "RUNQ_UI_TOKEN"}
        return subprocess.run(
            [sys.executable, "-m", "runq", "ui", "--api", self.redis_url, *args],
            env={**environment, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def ui_servers(redis_url: str, tmp_path: Path) -> Iterator[UIServers]:
    servers = UIServers(redis_url, tmp_path)
    yield servers
    servers.stop_all()


class EventListener:
    """Reads ``/api/events`` in a thread until ``done(events)`` holds (or the stream ends)."""

    def __init__(self, url: str, done) -> None:  # type: ignore[no-untyped-def]
        self.events: list[dict[str, str]] = []
        self.hello = threading.Event()
        self._done = done
        self.thread = threading.Thread(target=self._listen, args=(url,), daemon=True)
        self.thread.start()
        assert self.hello.wait(120), "the event stream never said hello"

    def _listen(self, url: str) -> None:
        with httpx.stream("GET", url + "/api/events", timeout=30) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: hello"):
                    self.hello.set()
                elif line.startswith('data: {"queue"'):
                    self.events.append(json.loads(line[6:]))
                    if self._done(self.events):
                        return

    def wait(self, timeout: float = 120) -> list[dict[str, str]]:
        self.thread.join(timeout)
        return self.events
