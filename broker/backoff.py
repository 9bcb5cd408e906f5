"""Backoff while Redis (or any service) is away, and the lines that say so.

Every long-running part of runq (agent, wake-up listener, scheduler, engine,
``flow-run logs --follow``, the Kubernetes watches) rides out an outage the same way: the
delay doubles from ``first`` to ``cap`` so a restart is noticed within a fraction of a
second while a long outage costs one line every ``cap`` seconds, each line names the URL
and the next delay, and one line says when Redis is back. The caller decides where the
lines go (a logger, or stderr when stdout is the program's output).

A caller that only waits (no notices) uses :meth:`Backoff.wait` and :meth:`Backoff.reset`;
with a ``stop`` event the wait is cut short the moment it is set.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .connection import describe_failure, mask_url
from .errors import BrokerUnavailable


@dataclass
class Backoff:
    """The retry delays and notices of one outage at a time."""

    url: str = ""
    first: float = 0.1
    cap: float = 5.0
    attempts: int = 0
    delay: float = 0.0
    #: When set, :meth:`wait` returns at once (an agent or a watch is stopping).
    stop: threading.Event | None = None

    def next_delay(self) -> float:
        """Count a failed attempt and return the seconds to wait before the next one:
        ``first``, then doubled each time up to ``cap``."""
        self.delay = min(self.delay * 2, self.cap) if self.attempts else self.first
        self.attempts += 1
        return self.delay

    def failed(self, error: Exception) -> tuple[float, str]:
        """Count a failed attempt: the seconds to wait, and the line that says so."""
        delay = self.next_delay()
        if not isinstance(error, BrokerUnavailable):  # BrokerUnavailable already names the URL
            error = BrokerUnavailable(describe_failure(self.url, error))
        return delay, f"{error} Retrying in {delay:.1f} s."

    def wait(self) -> bool:
        """Count a failed attempt and wait its delay, cut short by ``stop``.

        Returns:
            True when ``stop`` is set (the caller should give up), else False.
        """
        delay = self.next_delay()
        if self.stop is None:
            time.sleep(delay)
            return False
        return self.stop.wait(delay)

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self.attempts, self.delay = 0, 0.0

    def recovered(self) -> str | None:
        """After a success: the line saying Redis is back, once per outage (else None)."""
        attempts, self.attempts = self.attempts, 0
        if not attempts:
            return None
        return f"Redis at {mask_url(self.url)} is back after {attempts} failed attempt(s)."
