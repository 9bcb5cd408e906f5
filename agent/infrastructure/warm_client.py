"""The agent's side of its warm engine: start it, hand it runs, hear how they end.

One :class:`WarmEngine` per agent owns one warm engine process (:mod:`.warm_engine`),
its child. Each run it forks comes back as a :class:`~.warm_handle.WarmHandle`, which the
agent uses as it uses a cold process.

If the warm engine dies or is killed, the agent notices when it happens (a thread waits
on its pidfd) and starts another at once, so the next run does not wait for its imports;
a submission that meets a dead one (end of stream on the socket) does the same. A
submission in flight at that moment never starts twice: the warm engine's child runs
only after the agent has been told its pid (see warm_engine.py), so a request the agent
got no answer to started nothing, and is sent again to the new warm engine (or, failing
that, started the cold way). Every call is thread-safe: the
agent submits from a pool of threads and polls from its loop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import InfrastructureError
from . import warm_wire as wire
from .warm_handle import WarmHandle

__all__ = ["WarmEngine", "WarmHandle", "start_up_env"]

log = logging.getLogger("runq.agent")

BOOT = "from runq.agent.infrastructure.warm_engine import main; main()"
#: Variables that shape how an interpreter starts (search path, preloads, locale,
#: allocator): a fork cannot honour a run's own value, so such a run starts cold.
START_UP_PREFIXES = ("PYTHON", "LD_", "FAKETIME", "LC_", "GLIBC_", "MALLOC_")
START_UP_NAMES = frozenset({"LANG"})
READY_SECONDS = 60.0  # for the imports of a new warm engine (a busy machine is slow)
REPLY_SECONDS = 10.0  # for the answer to one start request (a fork takes milliseconds)
RETRY_SECONDS = 10.0  # before trying again after a warm engine that would not start
CLOSE_SECONDS = 2.0  # for the warm engine to exit, and a submission to let go, at close
SLICE_SECONDS = 0.1  # how often a wait for the warm engine looks whether it was closed


def start_up_env(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` a running interpreter cannot change (see START_UP_PREFIXES)."""
    return {
        name: value
        for name, value in env.items()
        if name in START_UP_NAMES
        or (name.startswith(START_UP_PREFIXES) and name != "PYTHONUNBUFFERED")
    }


class WarmEngine:
    """One agent's warm engine process and the runs it forked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready = False
        self._ready_by = 0.0
        self._retry_at = 0.0
        self._calm_at = 0.0  # the watcher renews a dead warm engine at once from then on
        self._start_up: dict[str, str] = {}
        self._statuses: dict[tuple[int, int], int] = {}  # (generation, pid) -> status
        self._requests = 0
        self._closed = False
        #: Bumped each time a warm engine is gone: handles of the old one learn it here.
        self.generation = 0

    @property
    def pid(self) -> int | None:
        """The warm engine's pid (None while there is none)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the warm engine now (it imports in the background); idempotent."""
        with self._lock:
            if self._sock is None and not self._closed:
                self._spawn()

    def wait_ready(self) -> bool:
        """Wait for the warm engine's imports (starting it if needed); True once ready."""
        with self._lock:
            return self._wait_ready()

    def close(self) -> None:
        """Stop the warm engine (the runs it forked go on); the agent is leaving.

        Not behind the lock: a submission may hold it for up to READY_SECONDS waiting
        for a new warm engine's imports. The flag makes those waits give up; ending the
        socket's stream wakes them at once; the lock is then taken briefly to clean up
        (or left to the thread that holds it, which cleans up on its way out)."""
        self._closed = True
        sock, process = self._sock, self._process
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the warm engine sees EOF and exits
            except OSError:
                pass  # closed by another thread meanwhile
        if process is not None:
            if not self._ready:
                process.kill()  # still importing, so it forked nothing: no need to wait
            try:
                process.wait(timeout=CLOSE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._lock.acquire(timeout=CLOSE_SECONDS):
            try:
                self._lost(respawn=False)
            finally:
                self._lock.release()

    def closing(self) -> bool:
        """True once close() was called (from any thread: a method, so no check is stale)."""
        return self._closed

    # ---- starting runs ------------------------------------------------------------------

    def start_run(
        self, argv: list[str], env: dict[str, str], cwd: str, stdio: Sequence[int]
    ) -> WarmHandle | None:
        """Fork the engine ``argv`` with ``env`` in ``cwd``; None when the warm engine
        cannot take it (the caller starts it cold). InfrastructureError when the run
        itself cannot start (its working directory is missing, say)."""
        request: dict[str, Any] = {"op": "start", "argv": argv, "env": env, "cwd": cwd}
        try:
            wire.encode(request)
        except ValueError:
            return None  # too large for the wire: the cold path takes any size
        with self._lock:
            for _ in range(2):  # once more with a new warm engine if this one died meanwhile
                if not self._wait_ready() or start_up_env(env) != self._start_up:
                    return None
                try:
                    return self._request(request, stdio)
                except wire.WireError as error:
                    if not self._closed:
                        log.warning("The warm engine is gone (%s); starting a new one.", error)
                    self._lost(respawn=True)
        return None

    def _request(self, request: dict[str, Any], stdio: Sequence[int]) -> WarmHandle:
        assert self._sock is not None
        self._requests += 1
        number = self._requests
        wire.send(self._sock, {**request, "id": number}, stdio)
        deadline = time.monotonic() + REPLY_SECONDS
        while True:
            received = self._receive(deadline)
            if received is None:  # hung: once it is killed, an unconfirmed child never runs
                self._kill()
                received = self._answer_before_eof(number)
                if received is None:
                    raise wire.WireError("it did not answer a start request")
            message, fds = received
            if message.get("id") != number:
                self._note(message, fds)
                continue
            if message["op"] == "started" and len(fds) == 1:
                return WarmHandle(self, int(message["pid"]), fds[0], self.generation)
            wire.close_all(fds)
            raise InfrastructureError(f"cannot start the engine: {message.get('error', message)}")

    def _receive(self, deadline: float) -> tuple[dict[str, Any], list[int]] | None:
        """The next message before ``deadline`` (None: none came), in short slices so a
        close() meanwhile is seen at once (WireError then)."""
        assert self._sock is not None
        while True:
            if self._closed:
                raise wire.WireError("the agent is closing it")
            left = deadline - time.monotonic()
            received = wire.receive(self._sock, min(SLICE_SECONDS, max(0.0, left)))
            if received is not None or left <= SLICE_SECONDS:
                return received

    def _answer_before_eof(self, number: int) -> tuple[dict[str, Any], list[int]] | None:
        """What a killed warm engine still sent: the answer to request ``number``, if any."""
        assert self._sock is not None
        while True:
            try:
                received = wire.receive(self._sock, 0)
            except wire.WireError:
                return None
            if received is None:
                return None
            if received[0].get("id") == number:
                return received
            self._note(*received)

    # ---- hearing exits --------------------------------------------------------------------

    def status_of(self, generation: int, pid: int) -> int | None:
        """The exit status the warm engine reported for ``pid``, once (None: none yet)."""
        self.drain()
        return self._statuses.pop((generation, pid), None)

    def drain(self) -> None:
        """Read what the warm engine reported, if no other thread is reading right now."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._read_reports()
        except wire.WireError as error:
            if not self._closed:
                log.warning("The warm engine is gone (%s); starting a new one.", error)
            self._lost(respawn=True)
        finally:
            self._lock.release()

    def _read_reports(self) -> None:
        """Note what the warm engine sent, up to now (the lock is held); WireError at its end."""
        while self._sock is not None:
            received = wire.receive(self._sock, 0)
            if received is None:
                return
            self._note(*received)

    def _note(self, message: dict[str, Any], fds: list[int]) -> None:
        """Keep an exit status; anything else here is an answer nobody waits for."""
        wire.close_all(fds)
        if message.get("op") == "ready":
            self._ready = True
        elif message.get("op") == "exit":
            self._statuses[(self.generation, int(message["pid"]))] = int(message["status"])

    # ---- the warm engine process ----------------------------------------------------------

    def _spawn(self) -> None:
        agent_end, server_end = wire.socket_pair()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", BOOT, str(server_end.fileno())],
                pass_fds=(server_end.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,  # its own trouble reaches the agent's stderr
                start_new_session=True,  # a Ctrl-C aimed at the agent is the agent's
            )
        except OSError as error:
            agent_end.close()
            log.warning("Cannot start the warm engine (%s); runs start the cold way.", error)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return
        finally:
            server_end.close()
        self._sock, self._ready = agent_end, False
        self._ready_by = time.monotonic() + READY_SECONDS
        self._start_up = start_up_env(env)
        threading.Thread(
            target=self._watch, args=(self._process,), name="runq-warm-watch", daemon=True
        ).start()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Wait for this warm engine to end; if nobody else ended it (close, a submission
        that found it gone), replace it at once: the agent notices its death when it
        happens, and the next run does not pay for a new one's imports."""
        try:
            pidfd = os.pidfd_open(process.pid)
        except OSError:
            return  # gone already (a submission will see it), or no pidfds on this kernel
        try:
            wire.readable([pidfd], None)
        finally:
            os.close(pidfd)
        with self._lock:
            if self._closed or self._process is not process:
                return
            try:
                self._read_reports()  # what it said before it died: exit statuses, "ready"
            except wire.WireError:
                pass
            # One that died importing, or soon after the last renewal, is tried again by
            # a later submission (RETRY_SECONDS on): never a loop of failing starts.
            now, status = time.monotonic(), process.wait()
            renew, self._calm_at = self._ready and now >= self._calm_at, now + RETRY_SECONDS
            how = f"exited with status {status}"
            if status < 0:
                how = f"was killed by {signal.Signals(-status).name}"
            log.warning(
                "The warm engine (pid %d) %s; %s.",
                process.pid,
                how,
                "starting a new one" if renew else "runs start the cold way for now",
            )
            self._lost(respawn=renew)
            if not renew:
                self._retry_at = now + RETRY_SECONDS

    def _wait_ready(self) -> bool:
        """True once the warm engine has its imports done (starting one if there is none)."""
        if self._closed:
            return False
        if self._sock is None:
            if time.monotonic() < self._retry_at:
                return False
            self._spawn()
        while not self._ready and self._sock is not None:
            try:
                received = self._receive(self._ready_by)
            except wire.WireError as error:
                if self.closing():  # close() ended its stream: not a warm engine that failed
                    self._lost(respawn=False)
                    return False
                log.warning("The warm engine did not start (%s); runs start the cold way.", error)
                self._lost(respawn=False)
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return False
            if received is None:
                log.warning(
                    "The warm engine is not ready after %.0f s; stopping it.", READY_SECONDS
                )
                self._lost(respawn=False)
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return False
            self._note(*received)
        return self._ready

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _lost(self, *, respawn: bool) -> None:
        """The warm engine is gone (or must go): reap it, forget its socket, maybe renew."""
        if self._sock is not None:
            self._sock.close()
        self._sock, self._ready = None, False
        if self._process is not None:
            try:
                self._process.wait(timeout=5)  # it exits at the end of its socket
            except subprocess.TimeoutExpired:
                self._kill()
            self._process = None
        self.generation += 1
        if respawn and not self._closed:
            self._spawn()
