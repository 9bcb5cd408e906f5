"""The agent's heartbeat thread (:class:`Heartbeats`); an engine's is runq.engine.heartbeat.

An agent renews the leases of the runs it holds (claimed, being submitted, or started
and watched) and says it lives, once per heartbeat interval. On a thread of its own this
never waits behind a slow submission or a long claim pass, so a run's lease is not lost
because its agent was busy elsewhere (fencing would keep that safe, but the run would be
delivered again for nothing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("runq.agent")


class Heartbeats:
    """Calls ``beat()`` now and then every ``interval`` seconds until stopped."""

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._beat()
            except Exception:  # never the end of heartbeats: the next one may work
                log.exception("Unexpected error in the heartbeat; it goes on.")
            self._stopped.wait(self._interval)
