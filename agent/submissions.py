"""Where claimed runs are started: a bounded pool of threads, :class:`Submissions`.

Starting a run calls its infrastructure (a fork, a Docker API call, a Kubernetes Job
create), and one of those can hang for minutes. On the agent's own loop that would hold
up every other submission and every claim; here it holds up one worker. The pool is
bounded (the agent's own capacity still bounds what it claims), and its threads are
daemons: a submission that never returns cannot keep a stopping agent alive.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
from collections.abc import Callable

from .in_flight import InFlight

log = logging.getLogger("runq.agent")

Start = Callable[[InFlight], None]


class Submissions:
    """Runs ``start(flight)`` for each queued flight on one of ``workers`` threads."""

    def __init__(self, start: Start, workers: int) -> None:
        self._start = start
        self._workers = max(1, workers)
        self._queue: queue_module.Queue[InFlight | None] = queue_module.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = 0

    def start(self) -> None:
        for number in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"runq-submit-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def put(self, flight: InFlight) -> None:
        """Start ``flight`` as soon as a worker is free."""
        self._queue.put(flight)

    def pending(self) -> int:
        """Submissions queued or under way."""
        with self._lock:
            return self._queue.qsize() + self._running

    def stop(self, wait_seconds: float) -> None:
        """Take no more work; wait up to ``wait_seconds`` for submissions under way (a
        queued one not yet begun is dropped: its run is handed back)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue_module.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + wait_seconds
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (flight := self._queue.get()) is not None:
            with self._lock:
                self._running += 1
            try:
                self._start(flight)
            except Exception:
                log.exception("Unexpected error submitting flow run %r.", flight.run.name)
            finally:
                with self._lock:
                    self._running -= 1
